//go:build unix

package hubbench

import "syscall"

// raiseOpenFiles lifts the soft open-files limit to the hard one: every
// device is a socket on each side, and 10 000 devices need more than the
// usual soft limit of 1024.
func raiseOpenFiles() {
	var lim syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil || lim.Cur >= lim.Max {
		return
	}
	lim.Cur = lim.Max
	_ = syscall.Setrlimit(syscall.RLIMIT_NOFILE, &lim)
}

// openFilesLimit is the soft open-files limit, 0 when unknown.
func openFilesLimit() uint64 {
	var lim syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil {
		return 0
	}
	return uint64(lim.Cur)
}

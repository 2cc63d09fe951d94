//go:build unix

package hub_test

import (
	"syscall"
	"testing"
)

// ensureOpenFiles raises the soft open-files limit towards need (at most to
// the hard limit) and skips the benchmark if that is still too low.
func ensureOpenFiles(b *testing.B, need uint64) {
	b.Helper()
	var lim syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil {
		b.Logf("getrlimit: %v; assuming enough file descriptors", err)
		return
	}
	if lim.Cur >= need {
		return
	}
	raised := lim
	raised.Cur = min(max(need, lim.Cur), lim.Max)
	if err := syscall.Setrlimit(syscall.RLIMIT_NOFILE, &raised); err == nil {
		lim = raised
	}
	if lim.Cur < need {
		b.Skipf("needs %d open files, soft limit is %d (hard %d); raise it with ulimit -n", need, lim.Cur, lim.Max)
	}
}

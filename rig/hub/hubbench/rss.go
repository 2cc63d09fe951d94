package hubbench

import (
	"bufio"
	"fmt"
	"os"
	"strconv"
	"strings"
)

// selfRSS is this process's resident set size in bytes (0 where /proc is missing).
func selfRSS() uint64 { return rssOf("self") }

// rssOf reads VmRSS of a process from /proc/PID/status.
func rssOf(pid string) uint64 {
	f, err := os.Open(fmt.Sprintf("/proc/%s/status", pid))
	if err != nil {
		return 0
	}
	defer f.Close()
	return parseVmRSS(bufio.NewScanner(f))
}

func parseVmRSS(s *bufio.Scanner) uint64 {
	for s.Scan() {
		line := s.Text()
		if !strings.HasPrefix(line, "VmRSS:") {
			continue
		}
		f := strings.Fields(line[len("VmRSS:"):])
		if len(f) == 0 {
			return 0
		}
		kb, err := strconv.ParseUint(f[0], 10, 64)
		if err != nil {
			return 0
		}
		return kb * 1024
	}
	return 0
}

// cpuOf is a process's user + system CPU time in clock ticks, from /proc/PID/stat.
func cpuOf(pid string) uint64 {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%s/stat", pid))
	if err != nil {
		return 0
	}
	return parseStatCPU(string(b))
}

// parseStatCPU takes utime and stime (fields 14 and 15) from a stat line;
// the command name in parentheses may hold spaces, so fields are counted
// after its closing parenthesis.
func parseStatCPU(s string) uint64 {
	i := strings.LastIndexByte(s, ')')
	if i < 0 {
		return 0
	}
	f := strings.Fields(s[i+1:])
	if len(f) < 13 {
		return 0
	}
	u, err1 := strconv.ParseUint(f[11], 10, 64)
	st, err2 := strconv.ParseUint(f[12], 10, 64)
	if err1 != nil || err2 != nil {
		return 0
	}
	return u + st
}

package harness

import (
	"fmt"
	"os"
	"strconv"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

// ProcStatus reads the numeric fields of /proc/<pid>/status: counts (Threads) as they are, sizes
// (VmRSS, VmHWM, RssAnon, RssFile, …) in KiB.
func ProcStatus(pid int) (map[string]int, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return nil, err
	}
	fields := map[string]int{}
	for _, line := range strings.Split(string(b), "\n") {
		k, v, ok := strings.Cut(line, ":")
		if !ok {
			continue
		}
		if n, err := strconv.Atoi(strings.TrimSuffix(strings.TrimSpace(v), " kB")); err == nil {
			fields[k] = n
		}
	}
	return fields, nil
}

// ProcMemory returns a process's VmRSS and VmHWM (its peak) in KiB.
func ProcMemory(t testing.TB, pid int) (rss, hwm int) {
	t.Helper()
	status, err := ProcStatus(pid)
	require.NoError(t, err)
	require.NotZero(t, status["VmRSS"], "no VmRSS in /proc/%d/status", pid)
	return status["VmRSS"], status["VmHWM"]
}

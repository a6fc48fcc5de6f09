package harness

import (
	"bufio"
	"fmt"
	"os"
	"testing"

	"github.com/stretchr/testify/require"
)

// ProcMemory returns a process's VmRSS and VmHWM (its peak) in KiB.
func ProcMemory(t testing.TB, pid int) (rss, hwm int) {
	t.Helper()
	f, err := os.Open(fmt.Sprintf("/proc/%d/status", pid))
	require.NoError(t, err)
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		var kib int
		if _, err := fmt.Sscanf(sc.Text(), "VmRSS: %d kB", &kib); err == nil {
			rss = kib
		}
		if _, err := fmt.Sscanf(sc.Text(), "VmHWM: %d kB", &kib); err == nil {
			hwm = kib
		}
	}
	require.NoError(t, sc.Err())
	require.NotZero(t, rss, "no VmRSS in /proc/%d/status", pid)
	return rss, hwm
}

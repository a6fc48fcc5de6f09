package kubernetes

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/podorder/podorder/test/harness"
)

// measureMemoryAtNodeScale reports the daemon's memory with the API on while a node's worth of
// ordered pods runs: pods of five containers (a chain c4 after c3 … after c0, each with a tcpSocket
// readinessProbe that podorder evaluates, and c0 after pod(app=scale-anchor):started, so that the
// namespace's pods are cached too), created ten at a time until all are Ready. The one-node cluster
// runs podorder's own pod as well, so pods stays under kubelet's 110.
func measureMemoryAtNodeScale(t *testing.T, b *bed, pods int) {
	const links, parallel = 5, 10
	pid := daemonPID(t)
	baseRSS, baseHWM := harness.ProcMemory(t, pid)
	b.apply(t, pod{Name: "scale-anchor", Labels: map[string]string{"app": "scale-anchor"}, Containers: []container{{Name: "a"}}})
	var names []string
	for first := 0; first < pods; first += parallel {
		var batch []string
		for i := first; i < min(first+parallel, pods); i++ {
			name := fmt.Sprintf("scale-%d", i)
			labels := map[string]string{"app": "scale"}
			annotations := map[string]string{"podorder.dev/after.c0": "pod(app=scale-anchor):started"}
			var cs []container
			for k := links - 1; k >= 0; k-- {
				c := fmt.Sprintf("c%d", k)
				if k > 0 {
					labels["podorder.dev/after."+c] = fmt.Sprintf("c%d", k-1)
				}
				cs = append(cs, container{Name: c, Args: []string{"--port", fmt.Sprint(8000 + k)}, Extra: tcpReady(8000 + k)})
			}
			b.apply(t, pod{Name: name, Labels: labels, Annotations: annotations, Containers: cs})
			batch = append(batch, name)
		}
		for _, name := range batch {
			b.c.WaitPodReady(t, "default", name, 3*time.Minute)
		}
		names = append(names, batch...)
	}
	rss, hwm := harness.ProcMemory(t, pid)
	status, err := harness.ProcStatus(pid)
	require.NoError(t, err)
	anon, file := status["RssAnon"], status["RssFile"]
	t.Logf("RESULT kubelet, daemon memory with the API on: %d pods × %d containers all Ready: VmRSS %.1f MiB (RssAnon %.1f MiB, its own; RssFile %.1f MiB, its binary's pages, shared with the page cache), VmHWM %.1f MiB (before the pods: VmRSS %.1f MiB, VmHWM %.1f MiB)",
		pods, links, float64(rss)/1024, float64(anon)/1024, float64(file)/1024, float64(hwm)/1024, float64(baseRSS)/1024, float64(baseHWM)/1024)
	b.c.Kubectl(t, append([]string{"delete", "pod", "--wait=true", "--timeout=300s", "scale-anchor"}, names...)...)
}

// daemonPID finds the podorder daemon of the DaemonSet among the node's processes; only one runs.
func daemonPID(t *testing.T) int {
	t.Helper()
	found := daemonPIDs()
	require.Len(t, found, 1, "one podorder daemon on the node")
	return found[0]
}

// daemonPIDs lists the node's podorder daemons: the image runs /podorder daemon with flags.
func daemonPIDs() []int {
	matches, _ := filepath.Glob("/proc/[0-9]*/cmdline")
	var found []int
	for _, m := range matches {
		cmd, err := os.ReadFile(m)
		if err != nil {
			continue
		}
		args := bytes.Split(bytes.TrimRight(cmd, "\x00"), []byte{0})
		if string(args[0]) != "/podorder" || len(args) < 2 || string(args[1]) != "daemon" {
			continue
		}
		if pid, err := strconv.Atoi(filepath.Base(filepath.Dir(m))); err == nil {
			found = append(found, pid)
		}
	}
	return found
}

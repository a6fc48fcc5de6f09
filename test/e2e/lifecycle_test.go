package e2e

import (
	"fmt"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/podorder/podorder/test/harness"
)

// A sidecar bound to main with stop-with gets its stop signal once main exits, drains and exits by
// itself: the stop is kubelet-like, not a SIGKILL.
func TestStopWithStopsTheBoundContainerGracefully(t *testing.T) {
	env, po := setup(t)
	pod := env.RunPod(t, harness.PodSpec{
		Name:   "job",
		Labels: map[string]string{"podorder.dev/stop-with.proxy": "main"},
		Containers: []harness.ContainerSpec{
			{Name: "proxy", Args: args("proxy", "--drain", "300ms")},
			{Name: "main", Args: args("main", "--exit-after", "1s", "--exit-code", "0")},
		},
	})
	proxy, main := pod.Container("proxy"), pod.Container("main")
	code, _, _ := env.WaitExited(t, proxy.ID, 30*time.Second)
	assert.Equal(t, int32(0), code, "the proxy exited by itself after its signal")
	mainExit := harness.WaitWorkloadEvent(t, main, "EXIT", 5*time.Second).At
	signal := harness.WaitWorkloadEvent(t, proxy, "SIGNAL", 5*time.Second).At
	exitLine := harness.WaitWorkloadEvent(t, proxy, "EXIT", 5*time.Second)
	exit := exitLine.At
	assert.True(t, signal.After(mainExit), "proxy was signalled %s before main exited", mainExit.Sub(signal))
	// The EXIT line itself says the proxy drained: the workload prints it only after its 300 ms
	// drain, and a SIGKILL would have left none (and exit code 137).
	assert.Equal(t, 0, exitLine.Code, "proxy drained and exited by itself")
	stopped := po.waitLog(t, "stopped", 1, 10*time.Second)
	assert.Equal(t, "main exited with code 0 (stop-with main:exited)", stopped[0]["reason"])
	assert.Equal(t, false, stopped[0]["killed"])
	t.Logf("RESULT stop-with: main exit → proxy stop signal %s; signal → proxy exit %s (drain 300ms)",
		signal.Sub(mainExit).Round(time.Millisecond), exit.Sub(signal).Round(time.Millisecond))
}

// A bound container that ignores its stop signal is killed at the end of its grace period, not
// before.
func TestStopWithKillsABoundContainerThatIgnoresItsSignalAfterTheGracePeriod(t *testing.T) {
	env, po := setup(t)
	pod := env.RunPod(t, harness.PodSpec{
		Name:   "stuck",
		Labels: map[string]string{"podorder.dev/stop-with.proxy": "main_succeeded", "podorder.dev/stop-grace.proxy": "2s"},
		Containers: []harness.ContainerSpec{
			{Name: "proxy", Args: args("proxy", "--ignore-term")},
			{Name: "main", Args: args("main", "--exit-after", "500ms")},
		},
	})
	proxy := pod.Container("proxy")
	code, _, _ := env.WaitExited(t, proxy.ID, 30*time.Second)
	assert.Equal(t, int32(137), code, "SIGKILL")
	signal := harness.WaitWorkloadEvent(t, proxy, "SIGNAL", 5*time.Second).At
	finished := time.Unix(0, env.ContainerStatus(t, proxy.ID).FinishedAt)
	// The grace counts from podorder's send, which it logs just before; the workload's SIGNAL line
	// comes some unknown time after.
	var sent time.Time
	for _, rec := range po.Logs(t, "stopping") {
		if rec["msg"] == "stopping" && rec["container"] == "proxy" {
			sent, _ = time.Parse(time.RFC3339Nano, fmt.Sprint(rec["time"]))
		}
	}
	require.False(t, sent.IsZero(), "podorder logged its stop of proxy")
	assert.GreaterOrEqual(t, finished.Sub(sent), 2*time.Second, "killed only after the 2 s grace")
	stopped := po.waitLog(t, "stopped", 1, 10*time.Second)
	assert.Equal(t, true, stopped[0]["killed"])
	t.Logf("RESULT stop-with, signal ignored: stop signal → SIGKILL exit %s (grace 2s)", finished.Sub(signal).Round(time.Millisecond))
}

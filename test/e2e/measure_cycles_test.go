package e2e

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/podorder/podorder/test/harness"
)

// fullCycles compares whole pod lifecycles — RunPodSandbox, CreateContainer, StartContainer, the
// container's first line, StopPodSandbox, RemovePodSandbox — of a pod without podorder keys, with
// no NRI plugin, with a plugin that does nothing (test/noopnri: what NRI itself costs) and with
// podorder, while other pods are held meanwhile (podorder probing for them in its variant). The
// variants run in blocks of 10 in the order A B C C B A, which cancels a linear drift; the first
// cycle after each switch is a warm-up that counts for none.
func (m *measurement) fullCycles(t *testing.T, n, heldPods int) {
	noop := startNoop(t, m.env)
	noop.stop(t)
	// Pods held for the whole measurement: their dependency never listens.
	for range heldPods {
		port := m.takePort(t)
		pod := m.env.RunPod(t, harness.PodSpec{Name: m.name("busy"),
			Labels:      map[string]string{"podorder.dev/after.app": "db", "podorder.dev/timeout.app": "30m"},
			Annotations: map[string]string{"podorder.dev/probe.db": fmt.Sprintf("tcp:%d", port)},
			Containers: []harness.ContainerSpec{{Name: "app", Args: args("app")},
				{Name: "db", Args: args("db", "--listen-after", "1h", "--port", fmt.Sprint(port))}}})
		defer func() { _ = m.env.TryStopPod(pod) }()
	}
	const block = 10
	variants := []string{"no NRI plugin", "a no-op NRI plugin", "podorder"}
	cycles := map[string][]time.Duration{}
	current := "podorder"
	use := func(v string) {
		if v == current {
			return
		}
		switch current {
		case "podorder":
			m.po.stop()
		case "a no-op NRI plugin":
			noop.stop(t)
		}
		switch v {
		case "podorder":
			m.po.start(t)
		case "a no-op NRI plugin":
			noop.start(t)
		}
		current = v
	}
	order := []int{0, 1, 2, 2, 1, 0}
	enough := func() bool {
		for _, v := range variants {
			if len(cycles[v]) < n {
				return false
			}
		}
		return true
	}
	for b := 0; !enough(); b++ {
		v := variants[order[b%len(order)]]
		use(v)
		m.cycle(t)
		for range block {
			cycles[v] = append(cycles[v], m.cycle(t))
		}
	}
	use("podorder")
	logTable(t, fmt.Sprintf("a whole pod lifecycle (run, create, start, first line, stop, remove), pod without podorder keys, %d pods held meanwhile (blocks of 10, A B C C B A)", heldPods),
		row{variant: variants[0], d: cycles[variants[0]]},
		row{variant: variants[1], d: cycles[variants[1]]},
		row{variant: variants[2], d: cycles[variants[2]]})
}

// cycle runs one pod without podorder keys from RunPodSandbox to RemovePodSandbox and returns how
// long that took.
func (m *measurement) cycle(t *testing.T) time.Duration {
	began := time.Now()
	pod := m.env.RunPod(t, harness.PodSpec{Name: m.name("cycle"), Containers: []harness.ContainerSpec{{Name: "app", Args: args("app")}}})
	started(t, pod.Container("app"))
	m.env.StopPod(t, pod)
	return time.Since(began)
}

// noopPlugin is test/noopnri, connected to the bed's containerd while it runs.
type noopPlugin struct {
	bin string
	env *harness.Env
	cmd *exec.Cmd
}

func startNoop(t *testing.T, env *harness.Env) *noopPlugin {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "noopnri")
	out, err := exec.Command("go", "build", "-o", bin, "github.com/podorder/podorder/test/noopnri").CombinedOutput()
	require.NoError(t, err, "build test/noopnri: %s", out)
	p := &noopPlugin{bin: bin, env: env}
	p.start(t)
	t.Cleanup(func() { p.stop(t) })
	return p
}

// start runs the plugin and waits until containerd says it is synchronized.
func (p *noopPlugin) start(t *testing.T) {
	t.Helper()
	const synced = `plugin \"20-noop\" connected and synchronized`
	before := strings.Count(p.log(t), synced)
	p.cmd = exec.Command(p.bin, "--nri-socket="+p.env.NRISocket)
	require.NoError(t, p.cmd.Start())
	require.Eventually(t, func() bool { return strings.Count(p.log(t), synced) > before }, 30*time.Second, 10*time.Millisecond,
		"containerd never synchronized the no-op plugin")
}

// stop ends the plugin and waits until containerd has closed its connection.
func (p *noopPlugin) stop(t *testing.T) {
	t.Helper()
	if p.cmd == nil {
		return
	}
	const closed = `connection to plugin \"20-noop\" closed`
	before := strings.Count(p.log(t), closed)
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	_ = p.cmd.Wait()
	p.cmd = nil
	require.Eventually(t, func() bool { return strings.Count(p.log(t), closed) > before }, 30*time.Second, 10*time.Millisecond,
		"containerd never closed the no-op plugin's connection")
}

func (p *noopPlugin) log(t *testing.T) string {
	b, err := os.ReadFile(p.env.LogPath())
	require.NoError(t, err)
	return string(b)
}

package plugin

import (
	"fmt"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/containerd/nri/pkg/api"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/podorder/podorder/hooks/tombstone"
	"github.com/podorder/podorder/plugin/podstate"
	"github.com/podorder/podorder/plugin/stopper"
)

// fakeProcesses records the signals sent to each PID.
type fakeProcesses struct {
	mu      sync.Mutex
	signals map[uint32][]syscall.Signal
	exited  map[uint32]bool
	killed  chan uint32
	// reused maps a PID to the container that now has it, when not the one the runtime said.
	reused map[uint32]string
}

func (f *fakeProcesses) Open(pid uint32, containerID string) (Process, error) {
	if owner, ok := f.reused[pid]; ok && owner != containerID {
		return nil, fmt.Errorf("open process %d of container %s: %w", pid, containerID, stopper.ErrNotContainer)
	}
	return &fakeProcess{f: f, pid: pid}, nil
}

func (f *fakeProcesses) sent(pid uint32) []syscall.Signal {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.signals[pid]
}

type fakeProcess struct {
	f   *fakeProcesses
	pid uint32
}

func (p *fakeProcess) Signal(sig syscall.Signal) error {
	p.f.mu.Lock()
	defer p.f.mu.Unlock()
	if p.f.exited[p.pid] {
		return stopper.ErrExited
	}
	p.f.signals[p.pid] = append(p.f.signals[p.pid], sig)
	if sig == syscall.SIGKILL && p.f.killed != nil {
		p.f.killed <- p.pid
	}
	return nil
}

func (p *fakeProcess) Close() error { return nil }

func newStopFixture(t *testing.T, labels map[string]string) (*fixture, *fakeProcesses, *fakeEvents) {
	f := newFixture(t, labels, nil)
	procs := &fakeProcesses{signals: map[uint32][]syscall.Signal{}, exited: map[uint32]bool{}, killed: make(chan uint32, 4)}
	ev := &fakeEvents{}
	f.p.cfg.Processes = procs
	f.p.cfg.Kube = &Kubernetes{Events: ev}
	return f, procs, ev
}

// run creates and starts a container whose process has pid, with the pod's grace in seconds.
func (f *fixture) run(t *testing.T, name string, pid uint32, grace string) *api.Container {
	t.Helper()
	c := &api.Container{Id: name + "-id", PodSandboxId: f.sb.Id, Name: name, Annotations: map[string]string{podGraceAnnotation: grace}}
	_, _, err := f.p.CreateContainer(f.ctx, f.sb, c)
	require.NoError(t, err)
	c.Pid = pid
	f.start(t, c)
	return c
}

func (f *fixture) exit(t *testing.T, c *api.Container, code int32) {
	t.Helper()
	c.ExitCode = code
	c.StartedAt = 1
	_, err := f.p.StopContainer(f.ctx, f.sb, c)
	require.NoError(t, err)
}

func TestStopWithSignalsTheBoundContainerWhenTheTriggerFires(t *testing.T) {
	tests := map[string]struct {
		stopWith string
		mainExit int32
		want     []syscall.Signal
	}{
		"exited, code 0":    {"main", 0, []syscall.Signal{syscall.SIGTERM}},
		"exited, code 1":    {"main", 1, []syscall.Signal{syscall.SIGTERM}},
		"succeeded, code 0": {"main_succeeded", 0, []syscall.Signal{syscall.SIGTERM}},
		"succeeded, code 1": {"main_succeeded", 1, nil},
		"failed, code 0":    {"main_failed", 0, nil},
		"failed, code 137":  {"main_failed", 137, []syscall.Signal{syscall.SIGTERM}},
		"other container":   {"worker", 0, nil},
	}
	for name, tt := range tests {
		t.Run(name, func(t *testing.T) {
			f, procs, ev := newStopFixture(t, map[string]string{"podorder.dev/stop-with.proxy": tt.stopWith})
			main := f.run(t, "main", 100, "30")
			f.run(t, "proxy", 200, "30")
			f.run(t, "worker", 300, "30")
			f.exit(t, main, tt.mainExit)
			assert.Equal(t, tt.want, procs.sent(200))
			assert.Empty(t, procs.sent(100), "the trigger itself is never signalled")
			if tt.want != nil {
				assert.Contains(t, ev.all(), "PodorderStopping: stopping container proxy: main exited with code")
				assert.Contains(t, ev.all(), "SIGTERM now, SIGKILL after 30s")
			}
		})
	}
}

func TestAResynchronizedContainerIsStoppedOnlyIfItsPIDIsStillItsOwn(t *testing.T) {
	tests := map[string]struct {
		pidNowOf  string
		want      []syscall.Signal
		wantEvent string
	}{
		"the PID is the container's":      {"proxy-id", []syscall.Signal{syscall.SIGTERM}, "SIGTERM now, SIGKILL after 30s"},
		"the PID was reused by a process": {"", nil, "PodorderStopping: podorder cannot stop container proxy when its stop-with fires"},
	}
	for name, tt := range tests {
		t.Run(name, func(t *testing.T) {
			f, procs, ev := newStopFixture(t, map[string]string{"podorder.dev/stop-with.proxy": "main"})
			procs.reused = map[uint32]string{200: tt.pidNowOf}
			running := func(name string, pid uint32) *api.Container {
				return &api.Container{Id: name + "-id", PodSandboxId: f.sb.Id, Name: name, Pid: pid, CreatedAt: 1, StartedAt: 1,
					State: api.ContainerState_CONTAINER_RUNNING, Annotations: map[string]string{podGraceAnnotation: "30"}}
			}
			// The runtime's snapshot at a resynchronization: proxy's PID may be stale by now.
			main := running("main", 100)
			_, err := f.p.Synchronize(f.ctx, []*api.PodSandbox{f.sb}, []*api.Container{main, running("proxy", 200)})
			require.NoError(t, err)

			f.exit(t, main, 0)
			assert.Equal(t, tt.want, procs.sent(200))
			assert.Contains(t, ev.all(), tt.wantEvent)
		})
	}
}

func TestAStopReportsHowItEnded(t *testing.T) {
	f, procs, ev := newStopFixture(t, map[string]string{"podorder.dev/stop-with.proxy": "main", "podorder.dev/stop-signal.proxy": "SIGINT"})
	main := f.run(t, "main", 100, "30")
	proxy := f.run(t, "proxy", 200, "30")
	f.exit(t, main, 0)
	assert.Equal(t, []syscall.Signal{syscall.SIGINT}, procs.sent(200))
	f.exit(t, proxy, 0)
	assert.Contains(t, ev.all(), "PodorderStopped: container proxy stopped: exited ")
	assert.Contains(t, ev.all(), "after SIGINT with code 0; cause: main exited with code 0 (stop-with main:exited)")

	// A second exit of main (a restart) with proxy gone signals nothing more.
	procs.exited[200] = true
	f.exit(t, main, 0)
	assert.Equal(t, []syscall.Signal{syscall.SIGINT}, procs.sent(200))
}

func TestAStoppedContainerThatIgnoresItsSignalIsKilledAfterTheGracePeriod(t *testing.T) {
	f, procs, ev := newStopFixture(t, map[string]string{"podorder.dev/stop-with.proxy": "main"})
	main := f.run(t, "main", 100, "30")
	proxy := f.run(t, "proxy", 200, "0") // the pod's grace: 0 s
	f.exit(t, main, 0)
	select {
	case pid := <-procs.killed:
		assert.Equal(t, uint32(200), pid)
	case <-time.After(10 * time.Second):
		t.Fatal("no SIGKILL after the grace period")
	}
	assert.Equal(t, []syscall.Signal{syscall.SIGTERM, syscall.SIGKILL}, procs.sent(200))
	f.exit(t, proxy, 137)
	assert.Contains(t, ev.all(), "PodorderStopped: container proxy stopped: killed with SIGKILL")
	assert.Contains(t, ev.all(), "with code 137", "a non-zero exit is a warning naming the Job recipe")
	assert.Contains(t, ev.all(), "make proxy exit 0 on SIGTERM")
}

func TestAHeldContainerBoundWithStopWithHasItsHoldEndedInsteadOfASignal(t *testing.T) {
	f, procs, ev := newStopFixture(t, map[string]string{"podorder.dev/stop-with.proxy": "main", "podorder.dev/after.proxy": "db"})
	main := f.run(t, "main", 100, "30")
	f.run(t, "proxy", 200, "30")
	require.Nil(t, f.tomb(t, "proxy").ReleasedAt, "proxy waits for db")
	f.exit(t, main, 0)
	assert.Empty(t, procs.sent(200), "runc init, not proxy's process, runs while held")
	assert.Contains(t, f.tomb(t, "proxy").HoldFailed, "stopped by podorder: main exited with code 0")
	assert.Contains(t, ev.all(), "it was still held, so its hold ends now")
}

func TestStopWithIsRefusedWhenPodorderCannotStopContainers(t *testing.T) {
	f := newFixture(t, map[string]string{"podorder.dev/stop-with.proxy": "main"}, nil)
	_, _, err := f.create(t, "proxy")
	require.Error(t, err)
	assert.Contains(t, err.Error(), "podorder.dev/stop-with.proxy needs podorder to stop containers")
}

func TestADependedOnContainerGetsTheHookForItsPreStopAndIsWokenWhileThePodIsDeleted(t *testing.T) {
	f, _, _ := newStopFixture(t, map[string]string{"podorder.dev/after.api": "db"})
	_, adj, err := f.create(t, "db")
	require.NoError(t, err)
	require.NotNil(t, adj, "db is waited for: its preStop hook needs the hook, the store and a wake FIFO")
	assert.Empty(t, adj.GetHooks().GetStartContainer(), "but it is not held")
	var dests []string
	for _, m := range adj.GetMounts() {
		dests = append(dests, m.Destination)
	}
	assert.ElementsMatch(t, []string{HookPath, StorePath, WakePath}, dests)

	f.p.PodObserved(f.sb.Uid, podstate.Observation{Terminating: true})
	assert.True(t, tombstone.Terminating(f.store.PodDir(f.sb.Uid)), "the preStop hooks see the deletion")
}

func (f *fakeEvents) all() string { return strings.Join(f.reasons, "\n") }

package plugin

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/containerd/nri/pkg/api"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/podorder/podorder/hooks/tombstone"
	"github.com/podorder/podorder/plugin/decl"
	"github.com/podorder/podorder/plugin/kubeapi"
	"github.com/podorder/podorder/plugin/podstate"
)

// panickingEvents fails the first Event with a panic, as a bug in any effect would.
type panickingEvents struct{ calls int }

func (p *panickingEvents) Event(kubeapi.PodRef, bool, string, string) {
	p.calls++
	if p.calls == 1 {
		panic("boom")
	}
}

func TestAPanicInAHandlerFailsOnlyThatRequest(t *testing.T) {
	f := newFixture(t, map[string]string{"podorder.dev/after.app": "db_started"}, nil)
	f.p.cfg.Kube = &Kubernetes{Events: &panickingEvents{}}
	_, adj, err := f.create(t, "app")
	require.Error(t, err, "the request that panicked fails")
	assert.Nil(t, adj)
	assert.Contains(t, err.Error(), "podorder: internal error in CreateContainer for pod ns/web, container app: boom")
	assert.Contains(t, f.logs.String(), "handler panicked")

	// The daemon goes on, and its lock was released.
	app2 := &api.Container{Id: "app-2", PodSandboxId: f.sb.Id, Name: "app"}
	adj, _, err = f.p.CreateContainer(f.ctx, f.sb, app2)
	require.NoError(t, err)
	require.NotNil(t, adj)
	f.start(t, app2)
	db, _, err := f.create(t, "db")
	require.NoError(t, err)
	f.start(t, db)
	assert.NotNil(t, f.tomb(t, "app").ReleasedAt)
}

func TestAHostNetworkPodCannotDeclareAProbeThePodorderNetnsCannotReach(t *testing.T) {
	f := newFixture(t, map[string]string{"podorder.dev/after.app": "db"}, map[string]string{"podorder.dev/probe.db": "tcp:5432"})
	// hostNetwork: the sandbox's spec names its other namespaces but no network one of its own.
	f.sb.Linux = &api.LinuxPodSandbox{Namespaces: []*api.LinuxNamespace{{Type: "pid"}, {Type: "ipc"}, {Type: "mount"}}}
	_, _, err := f.create(t, "db")
	require.Error(t, err)
	assert.Contains(t, err.Error(), "podorder.dev/probe.db cannot be run for a hostNetwork pod")
	assert.Contains(t, err.Error(), "give db a readinessProbe")

	// What podorder can do is taken when it first sees a pod: ask with a pod it has not seen.
	f.p.cfg.ProbeHostNetwork = true
	f.sb.Uid = "uid-2"
	_, _, err = f.create(t, "db")
	assert.NoError(t, err, "allowed when podorder runs in the node's network namespace")
}

func TestOnlyContainersWaitedOnForReadinessAreProbed(t *testing.T) {
	f := newFixture(t, map[string]string{"podorder.dev/after.app": "db_started"},
		map[string]string{"podorder.dev/probe.db": "tcp:5432", "podorder.dev/probe.lonely": "tcp:6000"})
	db, _, err := f.create(t, "db")
	require.NoError(t, err)
	f.start(t, db)
	lonely, _, err := f.create(t, "lonely")
	require.NoError(t, err)
	f.start(t, lonely)
	assert.Empty(t, f.prober.started, "nobody waits for db or lonely to be ready: no probe runs")
	assert.NotNil(t, f.tomb(t, "lonely").ReadyAt, "ready as kubelet would say without a probe")
}

// refusingProber is a node whose probe capacity is used up.
type refusingProber struct{}

func (refusingProber) StartPod(string, string, string, *decl.Probe, func()) (func(), error) {
	return nil, errors.New("node probe limit of 512 reached")
}

func TestAProbeTheNodeCannotRunFallsBackToTheOtherReadinessSources(t *testing.T) {
	f := newFixture(t, map[string]string{"podorder.dev/after.app": "db"}, map[string]string{"podorder.dev/probe.db": "tcp:5432"})
	f.p.prober = refusingProber{}
	app, _, err := f.create(t, "app")
	require.NoError(t, err)
	f.start(t, app)
	db, _, err := f.create(t, "db")
	require.NoError(t, err)
	f.start(t, db)
	assert.Contains(t, f.logs.String(), "cannot probe")
	assert.NotNil(t, f.tomb(t, "app").ReleasedAt, "held until a readiness source passes, never forever")
}

func TestTheDaemonNeverReleasesAfterItsDeadline(t *testing.T) {
	f := newFixture(t, map[string]string{"podorder.dev/after.app": "db_started", "podorder.dev/timeout.app": "10s"}, nil)
	clock := time.Now()
	f.p.now = func() time.Time { return clock }
	app, _, err := f.create(t, "app")
	require.NoError(t, err)
	f.start(t, app)
	deadline := f.tomb(t, "app").HoldDeadline
	require.NotNil(t, deadline)
	assert.True(t, clock.Add(10*time.Second-podstate.DeadlineMargin).Equal(*deadline), "taken at StartContainer, before the hook's clock starts")

	clock = clock.Add(10*time.Second - podstate.DeadlineMargin)
	db, _, err := f.create(t, "db")
	require.NoError(t, err)
	f.start(t, db)
	assert.Nil(t, f.tomb(t, "app").ReleasedAt, "the hook may already have given up: a release now could be counted without its process")
}

func TestAReleaseBeforeTheRuntimesStartReturnsCountsOnlyOnceItHas(t *testing.T) {
	// runc < 1.2.8 runs the hook inside `runc start`: PostStartContainer comes only after the release.
	f := newFixture(t, map[string]string{"podorder.dev/after.app": "db_started", "podorder.dev/after.web": "app_started"}, nil)
	db, _, err := f.create(t, "db")
	require.NoError(t, err)
	f.start(t, db)
	app, _, err := f.create(t, "app")
	require.NoError(t, err)
	web, _, err := f.create(t, "web")
	require.NoError(t, err)
	require.NoError(t, f.p.StartContainer(f.ctx, f.sb, web))
	require.NoError(t, f.p.StartContainer(f.ctx, f.sb, app))
	assert.NotNil(t, f.tomb(t, "app").ReleasedAt, "released without waiting for the blocked start")
	assert.False(t, f.tomb(t, "app").State().Released, "but not counted as started before the runtime's start returned")
	assert.Nil(t, f.tomb(t, "web").ReleasedAt)
	require.NoError(t, f.p.PostStartContainer(f.ctx, f.sb, app))
	assert.NotNil(t, f.tomb(t, "web").ReleasedAt)
}

func TestHostileDeclarationsCostBoundedWorkUnderTheLock(t *testing.T) {
	// 26,000 selectors used to cost 55 s under NRI's lock, 26,000 tombstones and as many informers.
	var sb strings.Builder
	for i := range 26000 {
		fmt.Fprintf(&sb, "pod(app=v%d),", i)
	}
	f, _, w := newKubeFixture(t, nil, map[string]string{"podorder.dev/after.app": sb.String()})
	_, adj, err := f.create(t, "app")
	require.Error(t, err)
	assert.Nil(t, adj)
	assert.Contains(t, err.Error(), "more than the 2048 podorder reads")
	assert.Less(t, len(err.Error()), 1024, "the message quotes the value cut short")
	assert.Empty(t, w.updates, "no watch started")
	names, err := f.store.Pods()
	require.NoError(t, err)
	for _, uid := range names {
		entries, _ := f.store.Read(uid, "app")
		assert.Nil(t, entries)
	}

	// At the limits, the work is bounded by the caps.
	deps := make([]string, decl.MaxDependencies)
	for i := range deps {
		if i < decl.MaxPodDependencies {
			deps[i] = fmt.Sprintf("pod(app=v%d)", i)
		} else {
			deps[i] = fmt.Sprintf("c%d", i)
		}
	}
	f, _, w = newKubeFixture(t, nil, map[string]string{"podorder.dev/after.app": strings.Join(deps, ",")})
	f.p.cfg.Kube.Specs = nil
	_, adj, err = f.create(t, "app")
	require.NoError(t, err)
	require.NotNil(t, adj)
	assert.Len(t, w.updates, decl.MaxPodDependencies)
}

func TestAStoreRemovedUnderTheDaemonIsRewrittenAndItsBlindHoldsAreNeverReleased(t *testing.T) {
	f := newFixture(t, map[string]string{"podorder.dev/after.app": "db_started"}, nil)
	app, _, err := f.create(t, "app")
	require.NoError(t, err)
	f.start(t, app)
	require.NoError(t, os.RemoveAll(f.store.Root))

	db, _, err := f.create(t, "db")
	require.NoError(t, err, "the pod's directory is made again for the new container")
	f.start(t, db)
	assert.Contains(t, f.logs.String(), "the tombstone store was removed under podorder")
	assert.Equal(t, "app-id", f.tomb(t, "app").ID, "every tombstone of the pod is written again")
	assert.Nil(t, f.tomb(t, "app").ReleasedAt, "app's hook reads the removed directory: a release would never reach it")
	assert.Contains(t, f.logs.String(), "held since before the store was removed")

	// kubelet restarts app after its hook timed out; the new attempt sees the new directory.
	app.ExitCode = 255
	_, err = f.p.StopContainer(f.ctx, f.sb, app)
	require.NoError(t, err)
	app2 := &api.Container{Id: "app-2", PodSandboxId: f.sb.Id, Name: "app", Annotations: map[string]string{"io.kubernetes.container.restartCount": "1"}}
	_, _, err = f.p.CreateContainer(f.ctx, f.sb, app2)
	require.NoError(t, err)
	f.start(t, app2)
	assert.NotNil(t, f.tomb(t, "app").ReleasedAt)
}

func TestAHookedContainerWithoutItsTombstoneAtResyncCountsOnlyOnceItOutlivedItsHold(t *testing.T) {
	// podorder restarted after the store was removed: a held container whose tombstone is gone may
	// still be held (blind) or long released; only outliving its hold proves its process runs.
	f := newFixture(t, map[string]string{"podorder.dev/after.app": "db_started", "podorder.dev/timeout.app": "1s"}, nil)
	_, adj, err := f.create(t, "app")
	require.NoError(t, err)
	require.NoError(t, os.RemoveAll(f.store.Root))
	restarted := New(Config{HookBinary: "/hook", BlockingStartAfter: time.Hour}, f.store, f.prober, f.p.log)
	// Ends web's blind-hold timer's business with the test.
	t.Cleanup(func() { _ = restarted.RemovePodSandbox(f.ctx, f.sb) })
	long := time.Now().Add(-time.Minute).UnixNano()
	app := &api.Container{Id: "app-id", PodSandboxId: f.sb.Id, Name: "app", State: api.ContainerState_CONTAINER_RUNNING,
		CreatedAt: long, StartedAt: long, Hooks: adj.Hooks}
	fresh := time.Now().UnixNano()
	web := &api.Container{Id: "web-id", PodSandboxId: f.sb.Id, Name: "web", State: api.ContainerState_CONTAINER_RUNNING,
		CreatedAt: fresh, StartedAt: fresh, Hooks: adj.Hooks}
	f.sb.Labels["podorder.dev/after.web"] = "app_started"
	_, err = restarted.Synchronize(f.ctx, []*api.PodSandbox{f.sb}, []*api.Container{app, web})
	require.NoError(t, err)
	assert.Eventually(t, func() bool {
		ts, _ := f.store.Read(f.sb.Uid, "app")
		return ts != nil && ts.ReleasedAt != nil
	}, 5*time.Second, 10*time.Millisecond, "app has run a minute past its 1 s hold: its hook let it go")
	assert.Nil(t, f.tomb(t, "web").ReleasedAt, "web was created just now: it may still be held, so it is not released")
}

// BenchmarkCreateContainerOfANewPodWorstCase measures the work one CreateContainer of a new pod costs
// under NRI's node-wide lock when the pod declares the most podorder accepts, and when it declares a
// 256 KiB annotation that is refused: both must stay far below NRI's 2 s timeout.
func BenchmarkCreateContainerOfANewPodWorstCase(b *testing.B) {
	atLimits := map[string]string{}
	deps := make([]string, decl.MaxDependencies)
	for i := range deps {
		deps[i] = fmt.Sprintf("c%d:started", i)
	}
	atLimits["podorder.dev/after.app"] = strings.Join(deps, ", ")
	for i := range decl.MaxProbes {
		atLimits[fmt.Sprintf("podorder.dev/probe.c%d", i)] = "http:8080/" + strings.Repeat("p", 1000)
	}
	for i := len(atLimits); i < decl.MaxKeys; i++ {
		atLimits[fmt.Sprintf("podorder.dev/timeout.c%d", i)] = "1m"
	}
	var huge strings.Builder
	for i := 0; huge.Len() < 256<<10; i++ {
		fmt.Fprintf(&huge, "pod(app=v%d),", i)
	}
	for _, bc := range []struct {
		name        string
		annotations map[string]string
		wantErr     bool
	}{
		{"declarations at every limit", atLimits, false},
		{"a refused 256 KiB annotation", map[string]string{"podorder.dev/after.app": huge.String()}, true},
	} {
		b.Run(bc.name, func(b *testing.B) {
			store := tombstone.Store{Root: b.TempDir()}
			p := New(Config{HookBinary: "/hook"}, store, nil, slog.New(slog.NewTextHandler(&bytes.Buffer{}, &slog.HandlerOptions{Level: slog.LevelError})))
			c := &api.Container{Id: "app-id", PodSandboxId: "sb", Name: "app"}
			n := 0
			b.ReportAllocs()
			for b.Loop() {
				n++
				sb := &api.PodSandbox{Id: "sb", Uid: fmt.Sprintf("u%d", n), Namespace: "ns", Name: "web", Annotations: bc.annotations,
					Linux: &api.LinuxPodSandbox{Namespaces: []*api.LinuxNamespace{{Type: "network", Path: "/x"}}}}
				if _, _, err := p.CreateContainer(context.Background(), sb, c); (err != nil) != bc.wantErr {
					b.Fatal(err)
				}
				if err := p.RemovePodSandbox(context.Background(), sb); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

func TestAnUndoneCreationNeverCountsAsCompleted(t *testing.T) {
	// A validator or another plugin refused migrate after podorder's CreateContainer: containerd
	// undoes it with a StopContainer of a container that never started, exit code 0.
	f := newFixture(t, map[string]string{"podorder.dev/after.app": "migrate_completed"}, nil)
	app, _, err := f.create(t, "app")
	require.NoError(t, err)
	f.start(t, app)
	migrate, _, err := f.create(t, "migrate")
	require.NoError(t, err)
	migrate.State = api.ContainerState_CONTAINER_UNKNOWN
	_, err = f.p.StopContainer(f.ctx, f.sb, migrate)
	require.NoError(t, err)
	assert.Nil(t, f.tomb(t, "app").ReleasedAt, "migrate never ran: it did not complete")
	ts, err := f.store.Read(f.sb.Uid, "migrate")
	require.NoError(t, err)
	assert.Nil(t, ts, "the undone attempt is forgotten")

	// kubelet retries; this attempt runs and exits 0.
	retry := &api.Container{Id: "migrate-2", PodSandboxId: f.sb.Id, Name: "migrate"}
	_, _, err = f.p.CreateContainer(f.ctx, f.sb, retry)
	require.NoError(t, err)
	f.start(t, retry)
	retry.StartedAt = time.Now().UnixNano()
	_, err = f.p.StopContainer(f.ctx, f.sb, retry)
	require.NoError(t, err)
	assert.NotNil(t, f.tomb(t, "app").ReleasedAt)
}

func TestAnUndoneRestartLeavesThePreviousAttemptNewest(t *testing.T) {
	f := newFixture(t, map[string]string{"podorder.dev/after.app": "db_started"}, nil)
	db, _, err := f.create(t, "db")
	require.NoError(t, err)
	f.start(t, db)
	db2 := &api.Container{Id: "db-2", PodSandboxId: f.sb.Id, Name: "db", Annotations: map[string]string{"io.kubernetes.container.restartCount": "1"}}
	_, _, err = f.p.CreateContainer(f.ctx, f.sb, db2)
	require.NoError(t, err)
	_, err = f.p.StopContainer(f.ctx, f.sb, db2)
	require.NoError(t, err)
	assert.Equal(t, "db-id", f.tomb(t, "db").ID, "the running attempt is the newest again")
	app, _, err := f.create(t, "app")
	require.NoError(t, err)
	f.start(t, app)
	assert.NotNil(t, f.tomb(t, "app").ReleasedAt)
}

func TestWritingAHeldContainersOwnTombstoneWakesItsHook(t *testing.T) {
	// The hook waits for its own tombstone: the write that releases it must wake it, not only the
	// hooks of the other containers (a lost wake-up cost a second, the hook's re-check period).
	f := newFixture(t, map[string]string{"podorder.dev/after.app": "db_started"}, nil)
	app, _, err := f.create(t, "app")
	require.NoError(t, err)
	fifo, err := os.OpenFile(tombstone.WakeFile(f.store.WakeDir(f.sb.Uid, "app")), os.O_RDWR, 0)
	require.NoError(t, err)
	defer fifo.Close()
	// StartContainer writes app's hold deadline into app's own tombstone, and nothing else.
	require.NoError(t, f.p.StartContainer(f.ctx, f.sb, app))
	require.NoError(t, fifo.SetReadDeadline(time.Now().Add(5*time.Second)))
	n, err := fifo.Read(make([]byte, 64))
	require.NoError(t, err, "app's hook is woken by a write of its own tombstone")
	assert.Positive(t, n)
}

func TestAPodAdoptedAtResyncGoesWithItsLastContainer(t *testing.T) {
	// After a containerd restart, containerd 2.4 sends no RemovePodSandbox for the pods it had.
	f := newFixture(t, map[string]string{"podorder.dev/after.app": "db_started"}, nil)
	app := &api.Container{Id: "app-id", PodSandboxId: f.sb.Id, Name: "app", State: api.ContainerState_CONTAINER_RUNNING, CreatedAt: 1, StartedAt: 2}
	db := &api.Container{Id: "db-id", PodSandboxId: f.sb.Id, Name: "db", State: api.ContainerState_CONTAINER_RUNNING, CreatedAt: 1, StartedAt: 2}
	_, err := f.p.Synchronize(f.ctx, []*api.PodSandbox{f.sb}, []*api.Container{app, db})
	require.NoError(t, err)
	require.NoError(t, f.p.RemoveContainer(f.ctx, f.sb, app))
	_, err = os.Stat(f.store.PodDir(f.sb.Uid))
	require.NoError(t, err, "db is still there")
	require.NoError(t, f.p.RemoveContainer(f.ctx, f.sb, db))
	_, err = os.Stat(f.store.PodDir(f.sb.Uid))
	assert.True(t, os.IsNotExist(err), "the last container's removal removes the pod's tombstones")

	// A pod created while podorder runs keeps its tombstones until RemovePodSandbox.
	g := newFixture(t, map[string]string{"podorder.dev/after.app": "db_started"}, nil)
	c, _, err := g.create(t, "db")
	require.NoError(t, err)
	require.NoError(t, g.p.RemoveContainer(g.ctx, g.sb, c))
	_, err = os.Stat(g.store.PodDir(g.sb.Uid))
	assert.NoError(t, err)
}

func TestAPodTheAPIDeletedLosesItsTombstones(t *testing.T) {
	f := newFixture(t, map[string]string{"podorder.dev/after.app": "db_started"}, nil)
	_, _, err := f.create(t, "app")
	require.NoError(t, err)
	f.p.PodDeleted("some-other-uid")
	_, err = os.Stat(f.store.PodDir(f.sb.Uid))
	require.NoError(t, err)
	f.p.PodDeleted(f.sb.Uid)
	_, err = os.Stat(f.store.PodDir(f.sb.Uid))
	assert.True(t, os.IsNotExist(err))
}

// The step that releases app writes db's ready record and app's release, then wakes app's hook
// once: a hook woken between the two writes would read its old tombstone and sleep again.
func TestAReleasingStepWakesTheHookOnceAfterAllItsWrites(t *testing.T) {
	f := newFixture(t, map[string]string{"podorder.dev/after.app": "db"}, map[string]string{"podorder.dev/probe.db": "tcp:5432"})
	app, _, err := f.create(t, "app")
	require.NoError(t, err)
	f.start(t, app)
	db, _, err := f.create(t, "db")
	require.NoError(t, err)
	f.start(t, db)
	fifo, err := os.OpenFile(tombstone.WakeFile(f.store.WakeDir(f.sb.Uid, "app")), os.O_RDWR|syscall.O_NONBLOCK, 0)
	require.NoError(t, err)
	defer fifo.Close()
	pending := func() int { // the wake-ups waiting in the FIFO, consumed
		n := 0
		require.NoError(t, fifo.SetReadDeadline(time.Now()))
		for {
			k, err := fifo.Read(make([]byte, 64))
			n += k
			if err != nil {
				return n
			}
		}
	}
	pending() // the earlier steps'

	// app's hook: woken, it reads its own tombstone, as hooks.Wait does.
	seen := make(chan *tombstone.Tombstone, 1)
	require.NoError(t, fifo.SetReadDeadline(time.Now().Add(5*time.Second)))
	go func() {
		if _, err := fifo.Read(make([]byte, 1)); err != nil {
			seen <- nil
			return
		}
		ts, _ := f.store.Read(f.sb.Uid, "app")
		seen <- ts
	}()
	f.prober.started[5432]()
	ts := <-seen
	require.NotNil(t, ts, "app's hook is woken")
	assert.NotNil(t, ts.ReleasedAt, "the hook, once woken, reads its release")
	assert.Zero(t, pending(), "one wake-up for the step, however many of its writes concern app")
}

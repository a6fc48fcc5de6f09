package plugin

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"maps"
	"os"
	"testing"
	"time"

	"github.com/containerd/nri/pkg/api"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/podorder/podorder/hooks/tombstone"
	"github.com/podorder/podorder/plugin/decl"
)

// fakeProber records the probes started, by port, and the pod each is for; a test passes one by
// calling its ready func. refuse makes StartPod fail as a node at its cap does.
type fakeProber struct {
	started map[int]func()
	probes  map[int]*decl.Probe
	owners  map[int]string // "namespace/uid"
	netns   map[int]string // where each probe looks
	refuse  error
}

func (f *fakeProber) StartPod(namespace, podUID, netns string, p *decl.Probe, ready func()) (func(), error) {
	if f.refuse != nil {
		return nil, f.refuse
	}
	f.started[p.Port] = ready
	if f.netns == nil {
		f.netns = map[int]string{}
	}
	f.netns[p.Port] = netns
	if f.owners == nil {
		f.owners = map[int]string{}
	}
	f.owners[p.Port] = namespace + "/" + podUID
	if f.probes == nil {
		f.probes = map[int]*decl.Probe{}
	}
	f.probes[p.Port] = p
	return func() { delete(f.started, p.Port) }, nil
}

type fixture struct {
	p      *Plugin
	store  tombstone.Store
	prober *fakeProber
	logs   *bytes.Buffer
	sb     *api.PodSandbox
	ctx    context.Context
}

func newFixture(t *testing.T, labels, annotations map[string]string) *fixture {
	t.Helper()
	logs := &bytes.Buffer{}
	f := &fixture{
		store:  tombstone.Store{Root: t.TempDir()},
		prober: &fakeProber{started: map[int]func(){}},
		logs:   logs,
		ctx:    context.Background(),
		sb: &api.PodSandbox{Id: "sb1", Uid: "uid-1", Namespace: "ns", Name: "web", Labels: labels, Annotations: annotations,
			Linux: &api.LinuxPodSandbox{Namespaces: []*api.LinuxNamespace{{Type: "network", Path: "/var/run/netns/cni-1"}}}},
	}
	f.p = New(Config{HookBinary: "/hook", BlockingStartAfter: time.Hour}, f.store, f.prober, slog.New(slog.NewTextHandler(logs, nil)))
	return f
}

func (f *fixture) create(t *testing.T, name string) (*api.Container, *api.ContainerAdjustment, error) {
	t.Helper()
	c := &api.Container{Id: name + "-id", PodSandboxId: f.sb.Id, Name: name}
	adj, _, err := f.p.CreateContainer(f.ctx, f.sb, c)
	return c, adj, err
}

func (f *fixture) start(t *testing.T, c *api.Container) {
	t.Helper()
	require.NoError(t, f.p.StartContainer(f.ctx, f.sb, c))
	require.NoError(t, f.p.PostStartContainer(f.ctx, f.sb, c))
}

func (f *fixture) tomb(t *testing.T, name string) *tombstone.Tombstone {
	t.Helper()
	ts, err := f.store.Read(f.sb.Uid, name)
	require.NoError(t, err)
	require.NotNil(t, ts, "no tombstone for %s", name)
	return ts
}

func TestPodWithoutKeysIsNotTouched(t *testing.T) {
	f := newFixture(t, map[string]string{"app": "web"}, nil)
	c, adj, err := f.create(t, "app")
	require.NoError(t, err)
	assert.Nil(t, adj)
	f.start(t, c)
	_, err = os.Stat(f.store.PodDir(f.sb.Uid))
	assert.True(t, os.IsNotExist(err), "no tombstone directory for a pod without podorder keys")
}

func TestDependentDeclaredFirstIsHeldUntilItsDependencyIsReady(t *testing.T) {
	f := newFixture(t, map[string]string{"podorder.dev/after.app": "db"}, map[string]string{"podorder.dev/probe.db": "tcp:5432"})
	app, adj, err := f.create(t, "app")
	require.NoError(t, err)
	require.NotNil(t, adj, "app is held")
	_, err = os.Stat(tombstone.WakeFile(f.store.WakeDir(f.sb.Uid, "app")))
	require.NoError(t, err, "a held container has a wake FIFO")
	f.start(t, app)
	assert.Nil(t, f.tomb(t, "app").ReleasedAt, "held while db does not exist")

	db, adj, err := f.create(t, "db")
	require.NoError(t, err)
	assert.Empty(t, adj.GetHooks().GetStartContainer(), "db waits for nothing")
	f.start(t, db)
	assert.NotNil(t, f.tomb(t, "db").ReleasedAt)
	assert.Nil(t, f.tomb(t, "app").ReleasedAt, "db runs but its probe has not passed")
	require.Contains(t, f.prober.started, 5432)

	f.prober.started[5432]()
	assert.NotNil(t, f.tomb(t, "db").ReadyAt)
	assert.NotNil(t, f.tomb(t, "app").ReleasedAt, "released once db is ready")
	assert.Contains(t, f.logs.String(), "msg=released")
}

func TestCompletedDependencyReleasesOnExitZeroOnly(t *testing.T) {
	f := newFixture(t, map[string]string{"podorder.dev/after.app": "migrate_completed"}, nil)
	app, _, _ := f.create(t, "app")
	f.start(t, app)
	m, _, _ := f.create(t, "migrate")
	f.start(t, m)
	assert.Nil(t, f.tomb(t, "app").ReleasedAt)
	m.ExitCode = 1
	_, err := f.p.StopContainer(f.ctx, f.sb, m)
	require.NoError(t, err)
	assert.Nil(t, f.tomb(t, "app").ReleasedAt, "exit 1 never releases")
	assert.Contains(t, f.tomb(t, "app").HoldFailed, "migrate exited with code 1", "the hook is told to give up at once")

	m2 := &api.Container{Id: "migrate-2", PodSandboxId: f.sb.Id, Name: "migrate", Annotations: map[string]string{"io.kubernetes.container.restartCount": "1"}}
	_, _, err = f.p.CreateContainer(f.ctx, f.sb, m2)
	require.NoError(t, err)
	assert.EqualValues(t, 1, f.tomb(t, "migrate").Attempt, "a restart gets a fresh tombstone")
	app.ExitCode = 255 // the hook gave up
	_, err = f.p.StopContainer(f.ctx, f.sb, app)
	require.NoError(t, err)
	app2 := &api.Container{Id: "app-2", PodSandboxId: f.sb.Id, Name: "app", Annotations: map[string]string{"io.kubernetes.container.restartCount": "1"}}
	_, _, err = f.p.CreateContainer(f.ctx, f.sb, app2)
	require.NoError(t, err)
	f.start(t, app2)
	f.start(t, m2)
	assert.Nil(t, f.tomb(t, "app").ReleasedAt)
	_, err = f.p.StopContainer(f.ctx, f.sb, m2)
	require.NoError(t, err)
	assert.Equal(t, "app-2", f.tomb(t, "app").ID)
	assert.NotNil(t, f.tomb(t, "app").ReleasedAt, "the restarted app is released once migrate's new attempt completed")
}

func TestStopOfAnOlderAttemptDoesNotTouchTheNewest(t *testing.T) {
	f := newFixture(t, map[string]string{"podorder.dev/after.app": "db_started"}, nil)
	db, _, _ := f.create(t, "db")
	f.start(t, db)
	db2 := &api.Container{Id: "db-2", PodSandboxId: f.sb.Id, Name: "db"}
	_, _, err := f.p.CreateContainer(f.ctx, f.sb, db2)
	require.NoError(t, err)
	db.ExitCode = 137
	_, err = f.p.StopContainer(f.ctx, f.sb, db)
	require.NoError(t, err)
	assert.Nil(t, f.tomb(t, "db").ExitedAt)
	assert.Equal(t, "db-2", f.tomb(t, "db").ID)
}

func TestInvalidDeclarationsFailCreateContainerWithTheReason(t *testing.T) {
	tests := []struct {
		name        string
		labels      map[string]string
		annotations map[string]string
		container   string
		want        string
	}{
		{"cycle", map[string]string{"podorder.dev/after.a": "b", "podorder.dev/after.b": "a"}, nil, "a",
			"podorder: pod ns/web, container a: dependency cycle a → b → a"},
		{"unknown name known from kubectl apply", map[string]string{"podorder.dev/after.app": "dbx"},
			map[string]string{decl.LastAppliedAnnotation: `{"kind":"Pod","spec":{"containers":[{"name":"db"},{"name":"app"}]}}`}, "app",
			"container app waits for dbx, which is not in the pod; containers are: db, app"},
		{"malformed label", map[string]string{"podorder.dev/after.app": "db_soon"}, nil, "app", `unknown condition "soon"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := newFixture(t, tt.labels, tt.annotations)
			_, adj, err := f.create(t, tt.container)
			require.Error(t, err)
			assert.Nil(t, adj)
			assert.Contains(t, err.Error(), tt.want)
			assert.Contains(t, f.logs.String(), "msg=rejected")
		})
	}
}

func TestSynchronizeAfterRestartReleasesOnlyWhatIsMetAndSweepsGonePods(t *testing.T) {
	f := newFixture(t, map[string]string{"podorder.dev/after.app": "db_started"}, nil)
	app, adj, _ := f.create(t, "app")
	require.NotNil(t, adj)
	f.start(t, app)
	_, err := f.store.EnsurePod("gone-pod")
	require.NoError(t, err)

	// A new daemon: nothing in memory, the store on disk, and the runtime's view.
	restarted := New(Config{HookBinary: "/hook", BlockingStartAfter: time.Hour}, f.store, f.prober, slog.New(slog.NewTextHandler(f.logs, nil)))
	app.State = api.ContainerState_CONTAINER_RUNNING
	app.StartedAt = time.Now().UnixNano()
	app.Hooks = adj.Hooks
	_, err = restarted.Synchronize(f.ctx, []*api.PodSandbox{f.sb}, []*api.Container{app})
	require.NoError(t, err)
	assert.Nil(t, f.tomb(t, "app").ReleasedAt, "db has not started: never release early")
	_, err = os.Stat(f.store.PodDir("gone-pod"))
	assert.True(t, os.IsNotExist(err), "tombstones of pods the runtime no longer has are swept")

	db := &api.Container{Id: "db-id", PodSandboxId: f.sb.Id, Name: "db", State: api.ContainerState_CONTAINER_RUNNING, StartedAt: time.Now().UnixNano(), CreatedAt: 1}
	_, err = restarted.Synchronize(f.ctx, []*api.PodSandbox{f.sb}, []*api.Container{app, db})
	require.NoError(t, err)
	assert.NotNil(t, f.tomb(t, "app").ReleasedAt, "db started while podorder was away")
}

// BenchmarkCreateContainer measures the CreateContainer handler, which runs under containerd's
// node-wide NRI lock, for the first container of a pod the plugin has never seen: every iteration
// gets a fresh sandbox (new UID, new label map), so the declarations are parsed, validated and the
// pod's store directory, tombstone and wake FIFO are created, as for a real new pod. The pod is
// removed (RemovePodSandbox) outside the timed region, so the plugin's map and the store stay at a
// node's size instead of growing with b.N.
func BenchmarkCreateContainer(b *testing.B) {
	held := map[string]string{"podorder.dev/after.app": "db.cache_started.migrate_completed"}
	for _, bc := range []struct {
		name   string
		labels map[string]string
		tmpfs  bool
	}{
		{"new pod without podorder keys", map[string]string{"app": "web"}, false},
		{"new pod, held container, store on disk", held, false},
		// /run, the store's default home, is a tmpfs on most nodes.
		{"new pod, held container, store on tmpfs", held, true},
	} {
		b.Run(bc.name, func(b *testing.B) {
			root := b.TempDir()
			if bc.tmpfs {
				var err error
				if root, err = os.MkdirTemp("/dev/shm", "podorder-bench-"); err != nil {
					b.Skip("no tmpfs at /dev/shm")
				}
				b.Cleanup(func() { os.RemoveAll(root) })
			}
			store := tombstone.Store{Root: root}
			p := New(Config{HookBinary: "/hook"}, store, nil, slog.New(slog.NewTextHandler(&bytes.Buffer{}, &slog.HandlerOptions{Level: slog.LevelError})))
			ctx := context.Background()
			// Building the sandbox is the runtime's work, not podorder's: it happens while the timer
			// is stopped, with the previous pod's removal.
			i := 0
			fresh := func() (*api.PodSandbox, *api.Container) {
				i++
				uid := fmt.Sprintf("uid-%d", i)
				sb := &api.PodSandbox{Id: "sb-" + uid, Uid: uid, Namespace: "ns", Name: "web-" + uid, Labels: maps.Clone(bc.labels)}
				return sb, &api.Container{Id: "app-" + uid, PodSandboxId: sb.Id, Name: "app"}
			}
			sb, c := fresh()
			b.ReportAllocs()
			for b.Loop() {
				if _, _, err := p.CreateContainer(ctx, sb, c); err != nil {
					b.Fatal(err)
				}
				b.StopTimer()
				if err := p.RemovePodSandbox(ctx, sb); err != nil {
					b.Fatal(err)
				}
				sb, c = fresh()
				b.StartTimer()
			}
		})
	}
}

package plugin

import (
	"errors"
	"log/slog"
	"os"
	"testing"
	"time"

	"github.com/containerd/nri/pkg/api"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// fakeSignals records the notify sockets opened and the path watches started.
type fakeSignals struct {
	sockets map[string]*fakeSocket // by directory
	files   map[string]*fakeFile   // by path
	refuse  error
}

type fakeSocket struct {
	pid    uint32
	ready  func()
	closed bool
}

func (s *fakeSocket) Arm(pid uint32, ready func()) error { s.pid, s.ready = pid, ready; return nil }
func (s *fakeSocket) Close()                             { s.closed = true }

type fakeFile struct {
	pid     uint32
	ready   func()
	stopped bool
}

func (f *fakeSignals) OpenNotify(_, dir string) (NotifySocket, error) {
	if f.refuse != nil {
		return nil, f.refuse
	}
	s := &fakeSocket{}
	f.sockets[dir] = s
	return s, nil
}

func (f *fakeSignals) WatchFile(_ string, pid uint32, path string, ready func()) (func(), error) {
	if f.refuse != nil {
		return nil, f.refuse
	}
	w := &fakeFile{pid: pid, ready: ready}
	f.files[path] = w
	return func() { w.stopped = true }, nil
}

func withSignals(t *testing.T, labels, annotations map[string]string) (*fixture, *fakeSignals) {
	f := newFixture(t, labels, annotations)
	s := newFakeSignals()
	f.p.cfg.Signals = s
	return f, s
}

func newFakeSignals() *fakeSignals {
	return &fakeSignals{sockets: map[string]*fakeSocket{}, files: map[string]*fakeFile{}}
}

func envOf(adj *api.ContainerAdjustment, key string) (string, bool) {
	for _, kv := range adj.GetEnv() {
		if kv.Key == key {
			return kv.Value, true
		}
	}
	return "", false
}

func TestANotifyContainerGetsItsAttemptsSocketAndReleasesItsDependentsOnREADY1(t *testing.T) {
	f, s := withSignals(t, map[string]string{"podorder.dev/after.app": "db", "podorder.dev/readiness.db": "notify"}, nil)
	app, _, err := f.create(t, "app")
	require.NoError(t, err)
	f.start(t, app)
	db, adj, err := f.create(t, "db")
	require.NoError(t, err)
	env, ok := envOf(adj, "NOTIFY_SOCKET")
	require.True(t, ok, "db gets a NOTIFY_SOCKET")
	assert.Equal(t, "/.podorder/notify/notify", env)
	dir := f.store.NotifyDir(f.sb.Uid, db.Id)
	var mounted *api.Mount
	for _, m := range adj.GetMounts() {
		if m.Destination == NotifyPath {
			mounted = m
		}
	}
	require.NotNil(t, mounted)
	assert.Equal(t, dir, mounted.Source, "the attempt's own directory, not the pod's")
	assert.Contains(t, mounted.Options, "ro")
	require.Contains(t, s.sockets, dir)
	sock := s.sockets[dir]

	db.Pid = 4242
	f.start(t, db)
	assert.EqualValues(t, 4242, sock.pid, "senders are checked against db's process")
	assert.Nil(t, f.tomb(t, "app").ReleasedAt, "db runs, but has not said READY=1")
	sock.ready()
	assert.NotNil(t, f.tomb(t, "db").ReadyAt)
	assert.NotNil(t, f.tomb(t, "app").ReleasedAt)
	assert.True(t, sock.closed, "the socket goes once it has done its job")
	_, err = os.Stat(dir)
	assert.True(t, os.IsNotExist(err), "and so does its directory")
}

func TestASocketThatCannotBeOpenedLeavesTheContainerUnchangedAndFallsBack(t *testing.T) {
	f, s := withSignals(t, map[string]string{"podorder.dev/after.app": "db", "podorder.dev/readiness.db": "notify"}, nil)
	s.refuse = errors.New("the node's limit of 512 notify sockets is reached")
	app, _, err := f.create(t, "app")
	require.NoError(t, err)
	f.start(t, app)
	db, adj, err := f.create(t, "db")
	require.NoError(t, err, "a refused socket never fails the container")
	_, ok := envOf(adj, "NOTIFY_SOCKET")
	assert.False(t, ok)
	f.start(t, db)
	assert.Contains(t, f.logs.String(), "cannot watch the readiness signal")
	assert.NotNil(t, f.tomb(t, "app").ReleasedAt, "without the API, db's release is its readiness, as for a refused probe")
}

func TestAFileContainerIsWatchedFromItsStartUntilItsExit(t *testing.T) {
	f, s := withSignals(t, map[string]string{"podorder.dev/after.app": "db"}, map[string]string{"podorder.dev/readiness.db": "file:/run/ready"})
	app, _, err := f.create(t, "app")
	require.NoError(t, err)
	f.start(t, app)
	db, adj, err := f.create(t, "db")
	require.NoError(t, err)
	_, ok := envOf(adj, "NOTIFY_SOCKET")
	assert.False(t, ok, "a file needs no socket")
	db.Pid = 77
	f.start(t, db)
	require.Contains(t, s.files, "/run/ready")
	w := s.files["/run/ready"]
	assert.EqualValues(t, 77, w.pid)
	assert.Nil(t, f.tomb(t, "app").ReleasedAt)
	db.ExitCode, db.StartedAt = 1, 1
	_, err = f.p.StopContainer(f.ctx, f.sb, db)
	require.NoError(t, err)
	assert.True(t, w.stopped, "the watch ends with the attempt")
	w.ready()
	assert.Nil(t, f.tomb(t, "app").ReleasedAt, "a late signal of an exited attempt counts for nothing")
}

// createdContainer is a container the first daemon created, with the adjustment it gave it.
type createdContainer struct {
	c   *api.Container
	adj *api.ContainerAdjustment
}

// notifyHeldBeforeRestart creates and starts app, held until db's READY=1, then db (process 4242).
func notifyHeldBeforeRestart(t *testing.T) (*fixture, []createdContainer) {
	t.Helper()
	f, _ := withSignals(t, map[string]string{"podorder.dev/after.app": "db", "podorder.dev/readiness.db": "notify"}, nil)
	var created []createdContainer
	for _, name := range []string{"app", "db"} {
		c, adj, err := f.create(t, name)
		require.NoError(t, err)
		if name == "db" {
			c.Pid = 4242
		}
		f.start(t, c)
		created = append(created, createdContainer{c, adj})
	}
	return f, created
}

// restart hands f's store to a new daemon, with nothing in memory, and synchronizes it with the
// runtime's view of the containers: running, with what the first daemon's adjustments gave them.
// It returns the new daemon's signals.
func (f *fixture) restart(t *testing.T, created []createdContainer) *fakeSignals {
	t.Helper()
	restarted := New(Config{HookBinary: "/hook", BlockingStartAfter: time.Hour}, f.store, f.prober, slog.New(slog.NewTextHandler(f.logs, nil)))
	s := newFakeSignals()
	restarted.cfg.Signals = s
	var cs []*api.Container
	for _, cr := range created {
		cr.c.State, cr.c.StartedAt, cr.c.Hooks, cr.c.Mounts = api.ContainerState_CONTAINER_RUNNING, time.Now().UnixNano(), cr.adj.Hooks, cr.adj.Mounts
		cs = append(cs, cr.c)
	}
	_, err := restarted.Synchronize(f.ctx, []*api.PodSandbox{f.sb}, cs)
	require.NoError(t, err)
	return s
}

func TestANotifySocketIsBoundAgainAfterADaemonRestartAndItsREADY1Counts(t *testing.T) {
	f, created := notifyHeldBeforeRestart(t)
	db := created[1].c
	dir := f.store.NotifyDir(f.sb.Uid, db.Id)

	s := f.restart(t, created)
	require.Contains(t, s.sockets, dir, "bound again in the directory db has mounted")
	sock := s.sockets[dir]
	assert.EqualValues(t, 4242, sock.pid, "senders are checked against db's process still")
	assert.Nil(t, f.tomb(t, "app").ReleasedAt)

	sock.ready()
	assert.NotNil(t, f.tomb(t, "db").ReadyAt)
	assert.NotNil(t, f.tomb(t, "app").ReleasedAt, "a READY=1 after the restart releases app")
	assert.True(t, sock.closed)
}

func TestANotifySocketWhoseDirectoryIsGoneAfterARestartFallsBack(t *testing.T) {
	f, created := notifyHeldBeforeRestart(t)
	db := created[1].c
	require.NoError(t, os.RemoveAll(f.store.NotifyDir(f.sb.Uid, db.Id)))

	s := f.restart(t, created)
	assert.Empty(t, s.sockets, "a directory made anew would not be the one db has mounted")
	assert.Contains(t, f.logs.String(), "the directory mounted into it at its creation is gone")
	assert.NotNil(t, f.tomb(t, "app").ReleasedAt, "without the API, db's release is its readiness, as for a refused socket")
}

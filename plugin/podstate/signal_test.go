package podstate

import (
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/podorder/podorder/plugin/decl"
)

// admitted creates a new attempt of container at s seconds through Admit, as the shell does, and
// returns it with the admission and the effects of Added.
func (f *fixture) admitted(name string, s float64) (*Attempt, Admission, []string) {
	adm, err := f.pod.Admit(Created{Name: name, ID: fmt.Sprintf("%s-%v", name, s), At: at(s), Grace: 30 * time.Second})
	require.NoError(f.t, err)
	return adm.A, adm, summary(f.pod.Added(adm.A))
}

// notifyPod is app waiting for db to be ready, db ready on its own READY=1, on a node as shipped;
// db also has a readinessProbe, which must not count.
func notifyPod(t *testing.T) *fixture {
	spec := []decl.Container{{Name: "app"}, {Name: "db", ReadinessProbe: true, ReadinessCheck: &decl.Probe{Kind: "tcp", Port: 5432, Readiness: true}}}
	return newPod(t, map[string]string{"podorder.dev/after.app": "db", "podorder.dev/readiness.db": "notify"}, shipped, spec...)
}

func TestANotifyDependencyIsReadyOnlyOnItsOwnSignal(t *testing.T) {
	f := notifyPod(t)
	app, _, _ := f.admitted("app", 0)
	f.pod.Starting(app, 10, at(0))
	db, adm, _ := f.admitted("db", 1)
	assert.True(t, adm.Notify, "db gets a notify socket of its own")
	assert.Contains(t, summary(f.pod.Starting(db, 42, at(1))), "watch db 42", "the signal is checked against db's process")
	effects := summary(f.pod.Started(db, at(1)))
	assert.NotContains(t, effects, "probe db", "no podorder probe: the signal alone decides")
	assert.Nil(t, db.TS.ReadyAt, "released but not signalled")
	f.pod.kubeletReady(db, at(2))
	assert.Nil(t, db.TS.ReadyAt, "kubelet's verdict is not db's READY=1")
	assert.Nil(t, app.TS.ReleasedAt)

	effects = summary(f.pod.SignalSeen(db, at(3)))
	assert.Subset(t, effects, []string{"end signal db", "write db", "write app", "wake app", "ended app released"})
	require.NotNil(t, db.TS.ReadyAt)
	assert.Equal(t, at(3), *db.TS.ReadyAt)
	assert.Equal(t, at(3), *app.TS.ReleasedAt)
	assert.Empty(t, summary(f.pod.SignalSeen(db, at(4))), "a second READY=1 changes nothing")
	assert.NotContains(t, summary(f.pod.Exited(db, 0, false, at(5))), "end signal db", "the socket ended with the signal already")
}

func TestASignalSeenBeforeTheReleaseCountsOnlyFromTheRelease(t *testing.T) {
	f := newPod(t, map[string]string{"podorder.dev/after.app": "db", "podorder.dev/after.db": "cache_started", "podorder.dev/readiness.db": "notify"}, Node{})
	app, _, _ := f.admitted("app", 0)
	f.pod.Starting(app, 10, at(0))
	db, _, _ := f.admitted("db", 0)
	f.pod.Starting(db, 11, at(0))
	f.pod.Started(db, at(0))
	require.True(t, db.Holding())
	f.pod.SignalSeen(db, at(1)) // e.g. a process exec'd into the held container
	assert.Nil(t, db.TS.ReadyAt, "a held container is never ready")
	cache, _, _ := f.admitted("cache", 2)
	f.pod.Starting(cache, 12, at(2))
	f.pod.Started(cache, at(2))
	require.NotNil(t, db.TS.ReadyAt)
	assert.Equal(t, at(2), *db.TS.ReadyAt, "ready at its release")
	assert.Equal(t, at(2), *app.TS.ReleasedAt)
}

func TestASignalOfAnOlderAttemptNeverCountsForTheNewOne(t *testing.T) {
	f := notifyPod(t)
	app, _, _ := f.admitted("app", 0)
	f.pod.Starting(app, 10, at(0))
	old, _, _ := f.admitted("db", 1)
	f.pod.Starting(old, 41, at(1))
	f.pod.Started(old, at(1))
	assert.Contains(t, summary(f.pod.Exited(old, 1, false, at(2))), "end signal db", "the old attempt's socket goes with it")
	db, _, added := f.admitted("db", 3)
	assert.NotContains(t, added, "end signal db", "ended once")
	assert.Empty(t, summary(f.pod.SignalSeen(old, at(4))), "a READY=1 checked for the old attempt")
	assert.Contains(t, summary(f.pod.Starting(db, 42, at(4))), "watch db 42")
	f.pod.Started(db, at(4))
	assert.Nil(t, db.TS.ReadyAt)
	assert.Nil(t, app.TS.ReleasedAt)
	f.pod.SignalSeen(db, at(5))
	assert.Equal(t, at(5), *app.TS.ReleasedAt)
}

func TestARefusedSignalFallsBackToTheOtherSourcesWithAnEvent(t *testing.T) {
	f := notifyPod(t)
	app, _, _ := f.admitted("app", 0)
	f.pod.Starting(app, 10, at(0))
	db, _, _ := f.admitted("db", 1)
	effects := summary(f.pod.SignalRefused(db, errors.New("the node's 512 notify sockets are in use"), at(1)))
	assert.Subset(t, effects, []string{"event " + ReasonSignalRefused, "end signal db"})
	assert.NotContains(t, summary(f.pod.Starting(db, 42, at(1))), "watch db 42")
	f.pod.Started(db, at(1))
	assert.Nil(t, db.TS.ReadyAt, "db has a readinessProbe: kubelet judges it now")
	f.pod.kubeletReady(db, at(2))
	assert.Equal(t, at(2), *app.TS.ReleasedAt)
}

func TestNobodyWaitingForReadinessCostsNoSocketAndNoWatch(t *testing.T) {
	f := newPod(t, map[string]string{"podorder.dev/after.app": "db_started", "podorder.dev/readiness.db": "notify"}, shipped)
	db, adm, _ := f.admitted("db", 0)
	assert.False(t, adm.Notify)
	assert.Empty(t, summary(f.pod.Starting(db, 42, at(0))))
}

func TestAFileSignalIsWatchedFromTheStartAndEndsAtTheExit(t *testing.T) {
	f := newPod(t, map[string]string{"podorder.dev/after.app": "db"}, shipped)
	f.pod.Decl = decl.Parse(map[string]string{"podorder.dev/after.app": "db"}, map[string]string{"podorder.dev/readiness.db": "file:/run/ready"})
	app, _, _ := f.admitted("app", 0)
	f.pod.Starting(app, 10, at(0))
	db, adm, _ := f.admitted("db", 0)
	assert.False(t, adm.Notify, "a file needs no socket")
	assert.Equal(t, []string{"watch db 42"}, summary(f.pod.Starting(db, 42, at(0))))
	f.pod.Started(db, at(0))
	assert.Contains(t, f.pod.missing(app), "db is running but has not signalled ready (readiness file:/run/ready, the path does not exist in the container yet)")
	assert.Contains(t, summary(f.pod.Exited(db, 1, false, at(1))), "end signal db")
	assert.Empty(t, summary(f.pod.SignalSeen(db, at(2))), "an exited attempt is never ready")
	assert.Nil(t, db.TS.ReadyAt)
}

func TestAnAttemptAdoptedAfterARestartFallsBackForItsSignalWasNotWatched(t *testing.T) {
	f := newPod(t, map[string]string{"podorder.dev/after.app": "db", "podorder.dev/readiness.db": "notify"}, Node{})
	db, effects := f.pod.Adopt(Created{Name: "db", ID: "db-1", At: at(0)}, false, true)
	assert.True(t, db.SignalRefused, "its socket's reader went with the daemon")
	assert.Contains(t, fmt.Sprint(effects), "readiness signal not watched after podorder restarted")
	f.pod.Added(db)
	assert.Empty(t, summary(f.pod.Starting(db, 42, at(0))), "nothing to watch")
}

// restartedWithDBRunning is notifyPod after a daemon restart: app held waiting for db, db released
// and running as process 42 but not signalled yet, both known to the new daemon only from their
// tombstones.
func restartedWithDBRunning(t *testing.T) (g *fixture, app, db *Attempt) {
	f := notifyPod(t)
	oldApp, _, _ := f.admitted("app", 0)
	f.pod.Starting(oldApp, 10, at(0))
	f.pod.Started(oldApp, at(0))
	oldDB, _, _ := f.admitted("db", 1)
	f.pod.Starting(oldDB, 42, at(1))
	f.pod.Started(oldDB, at(1))
	require.NotNil(t, oldDB.TS.ReleasedAt)
	require.Nil(t, oldDB.TS.ReadyAt)

	g = notifyPod(t)
	g.pod.Loaded(oldApp.TS)
	g.pod.Loaded(oldDB.TS)
	return g, g.pod.Attempts["app"], g.pod.Attempts["db"]
}

func TestASignalStillAwaitedAtADaemonRestartIsWatchedAgain(t *testing.T) {
	g, app, db := restartedWithDBRunning(t)
	found := Found{Started: true, Running: true, PID: 42, NotifyMounted: true, CreatedAt: at(1), StartedAt: at(1)}
	assert.Contains(t, summary(g.pod.Resynced(db, found, at(5))), "watch db 42", "its socket is bound again, checked against the same process")
	assert.Empty(t, summary(g.pod.Resynced(db, found, at(6))), "watched once, whatever the resynchronizations")
	g.pod.Resumed(at(6))
	g.pod.kubeletReady(db, at(7))
	assert.Nil(t, db.TS.ReadyAt, "kubelet's verdict is still not db's READY=1")
	assert.Nil(t, app.TS.ReleasedAt)
	assert.Subset(t, summary(g.pod.SignalSeen(db, at(8))), []string{"end signal db", "ended app released"})
	require.NotNil(t, app.TS.ReleasedAt)
	assert.Equal(t, at(8), *app.TS.ReleasedAt, "released by the READY=1 sent after the restart")
}

func TestASignalThatCannotBeWatchedAgainAfterARestartFallsBack(t *testing.T) {
	tests := map[string]struct {
		found Found
		why   string
	}{
		"created without its notify socket": {
			found: Found{Started: true, Running: true, PID: 42, CreatedAt: at(1), StartedAt: at(1)},
			why:   "it was created without its notify socket",
		},
		"the runtime names no process": {
			found: Found{Started: true, Running: true, NotifyMounted: true, CreatedAt: at(1), StartedAt: at(1)},
			why:   "the runtime names no process of it",
		},
	}
	for name, tt := range tests {
		t.Run(name, func(t *testing.T) {
			g, app, db := restartedWithDBRunning(t)
			effects := g.pod.Resynced(db, tt.found, at(5))
			assert.Contains(t, summary(effects), "event "+ReasonSignalRefused)
			assert.Contains(t, fmt.Sprint(effects), tt.why)
			assert.True(t, db.SignalRefused)
			g.pod.kubeletReady(db, at(6))
			assert.Equal(t, at(6), *app.TS.ReleasedAt, "kubelet's verdict decides instead")
		})
	}
}

func TestASignalOfAnAttemptNotStartedAtARestartIsWatchedFromItsStart(t *testing.T) {
	f := notifyPod(t)
	oldDB, _, _ := f.admitted("db", 1)
	g := notifyPod(t)
	g.pod.Loaded(oldDB.TS)
	db := g.pod.Attempts["db"]
	assert.Empty(t, summary(g.pod.Resynced(db, Found{NotifyMounted: true, CreatedAt: at(1)}, at(2))), "no process yet")
	assert.Contains(t, summary(g.pod.Starting(db, 42, at(3))), "watch db 42")
}

func TestASignalAlreadySeenBeforeARestartIsNotWatchedAgain(t *testing.T) {
	f := notifyPod(t)
	app, _, _ := f.admitted("app", 0)
	f.pod.Starting(app, 10, at(0))
	oldDB, _, _ := f.admitted("db", 1)
	f.pod.Starting(oldDB, 42, at(1))
	f.pod.Started(oldDB, at(1))
	f.pod.SignalSeen(oldDB, at(2))
	require.NotNil(t, oldDB.TS.ReadyAt)
	g := notifyPod(t)
	g.pod.Loaded(oldDB.TS)
	found := Found{Started: true, Running: true, PID: 42, NotifyMounted: true, CreatedAt: at(1), StartedAt: at(1)}
	assert.Empty(t, summary(g.pod.Resynced(g.pod.Attempts["db"], found, at(5))))
}

func TestAFileSignalStillAwaitedAtADaemonRestartIsWatchedAgainWithoutAnySocket(t *testing.T) {
	labels, annotations := map[string]string{"podorder.dev/after.app": "db"}, map[string]string{"podorder.dev/readiness.db": "file:/run/ready"}
	f := newPod(t, labels, shipped)
	f.pod.Decl = decl.Parse(labels, annotations)
	old, _, _ := f.admitted("db", 0)
	g := newPod(t, labels, shipped)
	g.pod.Decl = decl.Parse(labels, annotations)
	g.pod.Loaded(old.TS)
	found := Found{Started: true, Running: true, PID: 42, CreatedAt: at(0), StartedAt: at(0)}
	assert.Contains(t, summary(g.pod.Resynced(g.pod.Attempts["db"], found, at(1))), "watch db 42", "a path needs no mount")
}

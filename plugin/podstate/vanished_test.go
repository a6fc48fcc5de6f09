package podstate

import (
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// containerd 2.4 lists no exited container to NRI at a resynchronization: an attempt that exited
// while podorder was away is known only by its absence (found by the kubelet churn campaign: a
// dependent of a crashed `started` dependency was released after a DaemonSet rollout).

func TestAnAttemptTheRuntimeNoLongerListsCountsAsExitedWithAnUnknownCode(t *testing.T) {
	tests := []struct {
		name      string
		condition string
	}{
		{"started", "db_started"},
		{"completed", "db_completed"},
		{"ready", "db"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := newPod(t, map[string]string{"podorder.dev/after.app": tt.condition}, Node{})
			db, _ := f.run("db", 0)
			// podorder away; db exits; podorder comes back and creates no event for db but its absence.
			effects := summary(f.pod.Listed(nil, at(5)))
			assert.Contains(t, effects, "forget db")
			require.NotNil(t, db.TS.ExitedAt)
			assert.True(t, db.TS.ExitCodeUnknown)
			app, _ := f.run("app", 6)
			assert.Nil(t, app.TS.ReleasedAt, "a dependency whose process is gone holds its dependents, whatever its condition")
			assert.Contains(t, f.pod.missing(app), "exit code podorder does not know")
		})
	}
}

func TestTheAPIsExitCodeEndsAnUnknownExit(t *testing.T) {
	f := newPod(t, map[string]string{"podorder.dev/after.app": "migrate_completed"}, Node{API: true})
	migrate, _ := f.run("migrate", 0)
	app, _ := f.run("app", 1)
	f.pod.Listed([]string{app.TS.ID}, at(5))
	require.True(t, migrate.TS.ExitCodeUnknown)
	assert.Nil(t, app.TS.ReleasedAt)

	// Another container's exit, or readiness alone, changes nothing.
	f.pod.Observed(Observation{Exited: []ExitedContainer{{Name: "other", ID: "other-1", Code: 0}}}, at(6))
	assert.Nil(t, app.TS.ReleasedAt)
	effects := summary(f.pod.Observed(Observation{Exited: []ExitedContainer{{Name: "migrate", ID: migrate.TS.ID, Code: 0}}}, at(7)))
	assert.Contains(t, effects, "event PodorderReleased")
	assert.False(t, migrate.TS.ExitCodeUnknown)
	assert.NotNil(t, app.TS.ReleasedAt, "migrate completed, as the API says")
}

func TestAnExitCodeTheAPIShowedBeforeTheResynchronizationIsUsedAtOnce(t *testing.T) {
	f := newPod(t, map[string]string{"podorder.dev/after.app": "migrate_completed"}, Node{API: true})
	migrate, _ := f.run("migrate", 0)
	app, _ := f.run("app", 1)
	f.pod.Observed(Observation{Exited: []ExitedContainer{{Name: "migrate", ID: migrate.TS.ID, Code: 3}}}, at(4))
	f.pod.Listed([]string{app.TS.ID}, at(5))
	assert.False(t, migrate.TS.ExitCodeUnknown)
	assert.Equal(t, int32(3), migrate.TS.ExitCode)
	assert.Nil(t, app.TS.ReleasedAt)
	assert.Contains(t, f.pod.missing(app), "exited with code 3")
}

func TestAnAttemptNeverStartedThatTheRuntimeNoLongerListsIsUndone(t *testing.T) {
	f := newPod(t, map[string]string{"podorder.dev/after.app": "db_started"}, Node{})
	f.create("db", 0)
	f.pod.Listed(nil, at(5))
	assert.NotContains(t, f.pod.Attempts, "db", "removed unstarted: forgotten")
}

func TestAnAttemptThatRanWhilePodorderWasAwayIsTakenFromTheAPI(t *testing.T) {
	f := newPod(t, map[string]string{"podorder.dev/after.app": "migrate_completed"}, Node{API: true})
	app, _ := f.run("app", 0)
	// migrate was created, ran and exited 0 while podorder was away: no NRI event, no runtime list.
	ran := ExitedContainer{Name: "migrate", ID: "m-7", Code: 0, Current: true, StartedAt: at(1), FinishedAt: at(2)}
	old := ran
	old.Current = false
	f.pod.Observed(Observation{Exited: []ExitedContainer{old}}, at(3))
	assert.Nil(t, app.TS.ReleasedAt, "a last state is not the newest attempt")
	effects := summary(f.pod.Observed(Observation{Exited: []ExitedContainer{ran}}, at(3)))
	assert.Contains(t, effects, "write migrate")
	assert.NotNil(t, app.TS.ReleasedAt, "migrate completed, as kubelet reports")
	assert.Equal(t, "m-7", f.pod.Attempts["migrate"].TS.ID)
}

func TestTheAPIsTerminatedAttemptNeverReplacesOneThatRuns(t *testing.T) {
	f := newPod(t, map[string]string{"podorder.dev/after.app": "migrate_completed"}, Node{API: true})
	migrate, _ := f.run("migrate", 0)
	app, _ := f.run("app", 1)
	// kubelet's status still shows the previous attempt as current, while podorder's runs.
	f.pod.Observed(Observation{Exited: []ExitedContainer{{Name: "migrate", ID: "m-old", Code: 0, Current: true, StartedAt: at(-5), FinishedAt: at(-4)}}}, at(2))
	assert.Same(t, migrate, f.pod.Attempts["migrate"])
	assert.Nil(t, app.TS.ReleasedAt)
}

func TestABlindHoldStaysBlindAcrossADaemonRestart(t *testing.T) {
	labels := map[string]string{"podorder.dev/after.app": "db", "podorder.dev/after.web": "app_started"}
	f := newPod(t, labels, Node{})
	app, _ := f.run("app", 0)
	f.pod.StoreRecreated()
	require.True(t, app.TS.Blind)

	// A new daemon loads the tombstones podorder wrote, then db becomes ready.
	g := newPod(t, labels, Node{})
	g.pod.Loaded(app.TS)
	effects := summary(g.pod.Resumed(at(1)))
	assert.Contains(t, effects, "blind app", "its end is armed again")
	g.run("db", 2)
	web, _ := g.run("web", 3)
	assert.Nil(t, g.pod.Attempts["app"].TS.ReleasedAt, "never released: its hook cannot see it")
	assert.Nil(t, web.TS.ReleasedAt, "so web, waiting for app to start, is not released either")
}

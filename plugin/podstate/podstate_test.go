package podstate

import (
	"fmt"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/podorder/podorder/hooks/tombstone"
	"github.com/podorder/podorder/plugin/decl"
)

var t0 = time.Date(2026, 11, 26, 12, 0, 0, 0, time.UTC)

// at is a moment s seconds into a test.
func at(s float64) time.Time { return t0.Add(time.Duration(s * float64(time.Second))) }

// summary renders effects as short lines a test can compare: "write app", "wake db",
// "event PodorderReleased", "signal proxy SIGTERM", "kill proxy after 30s", "probe db", "end probe db".
func summary(effects []Effect) []string {
	var out []string
	for _, e := range effects {
		switch e := e.(type) {
		case Write:
			out = append(out, "write "+e.A.Name())
		case Remove:
			out = append(out, "remove "+e.Container)
		case Wake:
			out = append(out, "wake "+e.Container)
		case Record:
			out = append(out, "event "+e.Reason)
		case StartProbe:
			out = append(out, "probe "+e.A.Name())
		case EndProbe:
			out = append(out, "end probe "+e.A.Name())
		case WatchSignal:
			out = append(out, fmt.Sprintf("watch %s %d", e.A.Name(), e.PID))
		case EndSignal:
			out = append(out, "end signal "+e.A.Name())
		case Signal:
			out = append(out, "signal "+e.A.Name()+" "+decl.SignalName(e.Signal))
		case ArmKill:
			out = append(out, fmt.Sprintf("kill %s after %s", e.A.Name(), e.After))
		case ArmBlindEnd:
			out = append(out, "blind "+e.A.Name())
		case MarkTerminating:
			out = append(out, "terminating")
		case Forget:
			out = append(out, "forget "+e.A.Name())
		case HoldEnded:
			out = append(out, "ended "+e.A.Name()+" "+e.Outcome)
		case Track:
			out = append(out, fmt.Sprintf("track %s %d", e.A.Name(), e.PID))
		case ArmRuntimeCheck:
			out = append(out, "runtime check "+e.A.Name())
		case RuntimeFinding:
			out = append(out, fmt.Sprintf("runtime blocking=%v", e.Blocking))
		}
	}
	return out
}

// fixture is a pod built from labels, with containers added, started and released by name.
type fixture struct {
	t   *testing.T
	pod *Pod
}

// newPod builds a pod from labels on a node that can do what node says; spec, when given, is what
// the API shows of its containers.
func newPod(t *testing.T, labels map[string]string, node Node, spec ...decl.Container) *fixture {
	return &fixture{t: t, pod: New("uid", "ns", "web", decl.Parse(labels, nil), node, spec, nil)}
}

// create adds a new attempt of container at s seconds, held when it declares dependencies.
func (f *fixture) create(name string, s float64) *Attempt {
	hold, err := f.pod.Decl.For(name)
	require.NoError(f.t, err)
	created := at(s)
	ts := &tombstone.Tombstone{Container: name, ID: name + "-" + fmt.Sprint(s), CreatedAt: &created}
	if hold != nil && len(hold.After) > 0 {
		ts.WaitsFor, ts.HoldTimeout = hold.After, tombstone.Duration(hold.Timeout)
	}
	a := &Attempt{TS: ts, Declared: hold, Wakes: ts.Held() || f.pod.Decl.DependedOn(name), Grace: 30 * time.Second}
	f.pod.Added(a)
	return a
}

// newAttempt builds, without adding it, a new held attempt of container at s seconds.
func (f *fixture) newAttempt(name string, s float64) *Attempt {
	hold, err := f.pod.Decl.For(name)
	require.NoError(f.t, err)
	created := at(s)
	ts := &tombstone.Tombstone{Container: name, ID: name + "-" + fmt.Sprint(s), CreatedAt: &created,
		WaitsFor: hold.After, HoldTimeout: tombstone.Duration(hold.Timeout)}
	return &Attempt{TS: ts, Declared: hold, Wakes: true, Grace: 30 * time.Second}
}

// run creates and starts container at s seconds and returns the effects of its start.
func (f *fixture) run(name string, s float64) (*Attempt, []string) {
	a := f.create(name, s)
	e := f.pod.Starting(a, 0, at(s))
	return a, summary(append(e, f.pod.Started(a, at(s))...))
}

func TestAChainIsReleasedInOrderInOneStep(t *testing.T) {
	f := newPod(t, map[string]string{"podorder.dev/after.a": "b", "podorder.dev/after.b": "c_started"}, Node{})
	a, _ := f.run("a", 0)
	b, _ := f.run("b", 1)
	assert.Nil(t, a.TS.ReleasedAt)
	assert.Nil(t, b.TS.ReleasedAt)
	_, effects := f.run("c", 2)
	assert.Subset(t, effects, []string{"write b", "event PodorderReleased", "write a", "wake a", "wake b", "ended a released", "ended b released"})
	require.NotNil(t, a.TS.ReleasedAt)
	assert.Equal(t, at(2), *a.TS.ReleasedAt, "b has no readiness source, so it is ready once released")
}

func TestNothingIsReleasedAtOrAfterTheHoldDeadline(t *testing.T) {
	f := newPod(t, map[string]string{"podorder.dev/after.app": "db_started", "podorder.dev/timeout.app": "10s"}, Node{})
	app, _ := f.run("app", 0)
	require.Equal(t, at(10).Add(-DeadlineMargin), *app.TS.HoldDeadline, "the deadline is taken at the runtime's start")
	db := f.create("db", 20)
	f.pod.Starting(db, 0, at(20))
	effects := summary(f.pod.Started(db, at(20)))
	assert.NotContains(t, effects, "event PodorderReleased")
	assert.Contains(t, summary(f.pod.Exited(app, HookFailedExitCode, false, at(21))), "ended app timeout")
	assert.Nil(t, app.TS.ReleasedAt, "the hook gave up at its own deadline: a release now would be counted for a process that never runs")
}

func TestReadyNeedsTheReleaseAndEverySourceThatApplies(t *testing.T) {
	// kubelet judges db, which has a readinessProbe; the others' readiness is their release.
	spec := []decl.Container{{Name: "app"}, {Name: "db", ReadinessProbe: true}, {Name: "cache"}}
	f := newPod(t, map[string]string{"podorder.dev/after.app": "db", "podorder.dev/after.db": "cache_started"}, Node{API: true}, spec...)
	app, _ := f.run("app", 0)
	db, _ := f.run("db", 0)
	f.pod.kubeletReady(db, at(1))
	assert.Nil(t, db.TS.ReadyAt, "kubelet calls a held container ready: never enough while it is held")
	assert.Nil(t, app.TS.ReleasedAt)
	f.run("cache", 2)
	require.NotNil(t, db.TS.ReleasedAt)
	// kubelet reports a status only when it changes: its word stands once db's process runs.
	assert.Equal(t, at(2), *db.TS.ReadyAt)
	assert.Equal(t, at(2), *app.TS.ReleasedAt)

	// Without kubelet's word, a released container with a readinessProbe is not ready.
	g := newPod(t, map[string]string{"podorder.dev/after.app": "db"}, Node{API: true}, spec...)
	app, _ = g.run("app", 0)
	db, _ = g.run("db", 0)
	assert.Nil(t, db.TS.ReadyAt)
	g.pod.kubeletReady(db, at(3))
	assert.Equal(t, at(3), *app.TS.ReleasedAt)
}

func TestAReadinessProbePodorderRunsIsPassedByItsVerdictOrKubelets(t *testing.T) {
	waitsForDB := map[string]string{"podorder.dev/after.app": "db"}
	tests := map[string]struct {
		labels map[string]string
		event  func(p *Pod, db *Attempt) []Effect
		ready  bool
		// effects must be among the event's effects.
		effects []string
	}{
		"kubelet's verdict while podorder's probe has not decided": {
			labels: waitsForDB,
			event:  func(p *Pod, db *Attempt) []Effect { return p.kubeletReady(db, at(1)) },
			ready:  true, effects: []string{"end probe db", "event PodorderReleased", "write app"},
		},
		"podorder's probe passing before kubelet's verdict": {
			labels: waitsForDB,
			event:  func(p *Pod, db *Attempt) []Effect { return p.ProbePassed(db, at(1)) },
			ready:  true, effects: []string{"event PodorderReleased", "write app"},
		},
		"kubelet's verdict on a container still held": {
			labels: map[string]string{"podorder.dev/after.app": "db", "podorder.dev/after.db": "cache_started"},
			event:  func(p *Pod, db *Attempt) []Effect { return p.kubeletReady(db, at(1)) },
		},
		"kubelet's verdict while a podorder.dev/probe has not passed": {
			labels: map[string]string{"podorder.dev/after.app": "db", "podorder.dev/probe.db": "tcp:8080"},
			event:  func(p *Pod, db *Attempt) []Effect { return p.kubeletReady(db, at(1)) },
		},
	}
	for name, tt := range tests {
		t.Run(name, func(t *testing.T) {
			check := &decl.Probe{Kind: "tcp", Port: 5432, Readiness: true}
			f := newPod(t, tt.labels, Node{Probes: true, API: true},
				decl.Container{Name: "app", ReadinessProbe: true, ReadinessCheck: check},
				decl.Container{Name: "db", ReadinessProbe: true, ReadinessCheck: check},
				decl.Container{Name: "cache", ReadinessProbe: true, ReadinessCheck: check})
			app, _ := f.run("app", 0)
			db, _ := f.run("db", 0)
			effects := summary(tt.event(f.pod, db))
			assert.Equal(t, tt.ready, db.TS.ReadyAt != nil, "db ready")
			assert.Equal(t, tt.ready, app.TS.ReleasedAt != nil, "app released")
			assert.Subset(t, effects, tt.effects)
			if tt.ready {
				assert.False(t, db.Probing, "a ready container needs no probe")
				// Sticky: neither source's later word changes a readiness already decided.
				f.pod.kubeletReady(db, at(2))
				f.pod.ProbePassed(db, at(2))
				assert.Equal(t, at(1), *db.TS.ReadyAt)
			}
		})
	}
}

func TestAProbeRunsOnlyWhileSomeoneIsHeldWaitingForReadiness(t *testing.T) {
	tests := map[string]struct {
		labels map[string]string
		probed bool
	}{
		"waited for ready":   {map[string]string{"podorder.dev/after.app": "db", "podorder.dev/probe.db": "tcp:5432"}, true},
		"waited for started": {map[string]string{"podorder.dev/after.app": "db_started", "podorder.dev/probe.db": "tcp:5432"}, false},
	}
	for name, tt := range tests {
		t.Run(name, func(t *testing.T) {
			f := newPod(t, tt.labels, Node{Probes: true})
			app, _ := f.run("app", 0)
			_, effects := f.run("db", 1)
			if !tt.probed {
				assert.NotContains(t, effects, "probe db")
				return
			}
			assert.Contains(t, effects, "probe db")
			// app gives up (its hook timed out): nobody waits any more, so the probe ends.
			assert.Contains(t, summary(f.pod.Exited(app, HookFailedExitCode, false, at(2))), "end probe db")
			// Its next attempt waits again: the probe resumes.
			assert.Contains(t, summary(f.pod.Added(f.newAttempt("app", 3))), "probe db")
		})
	}
}

func TestADependencyStartedBeforeAnyoneWaitsIsProbedOnceSomeoneDoes(t *testing.T) {
	f := newPod(t, map[string]string{"podorder.dev/after.app": "db", "podorder.dev/probe.db": "tcp:5432"}, Node{Probes: true})
	db, effects := f.run("db", 0)
	assert.NotContains(t, effects, "probe db", "nobody waits for db yet")
	app := f.create("app", 1)
	assert.True(t, db.Probing, "app's creation started db's probe")
	f.pod.Starting(app, 0, at(1))
	assert.Contains(t, summary(f.pod.ProbePassed(db, at(2))), "write app", "the pass releases app")
	assert.False(t, db.Probing)
}

func TestAWriteWakesTheWrittenHoldItselfAndWaitingHolds(t *testing.T) {
	f := newPod(t, map[string]string{"podorder.dev/after.app": "db_started", "podorder.dev/after.web": "db_started"}, Node{})
	f.run("web", 0)
	app := f.create("app", 0)
	assert.Subset(t, summary(f.pod.Starting(app, 0, at(1))), []string{"write app", "wake app", "wake web"})
}

func TestAnUndoneCreationRestoresThePreviousAttempt(t *testing.T) {
	f := newPod(t, map[string]string{"podorder.dev/after.app": "db_completed"}, Node{})
	db1, _ := f.run("db", 0)
	f.pod.Exited(db1, 0, false, at(1))
	db2 := f.create("db", 2)
	effects := summary(f.pod.Exited(db2, 0, true, at(2)))
	assert.Contains(t, effects, "write db")
	assert.Same(t, db1, f.pod.Attempts["db"], "the completed attempt is the newest again")
	app, _ := f.run("app", 3)
	assert.NotNil(t, app.TS.ReleasedAt, "db completed: its undone restart exited 0 without running and does not count")
}

func TestStopWithSignalsThenKillsAfterTheGracePeriodAndReportsTheStop(t *testing.T) {
	f := newPod(t, map[string]string{"podorder.dev/stop-with.proxy": "main", "podorder.dev/stop-grace.proxy": "5s"}, Node{})
	main, _ := f.run("main", 0)
	proxy, _ := f.run("proxy", 0)
	effects := f.pod.Exited(main, 0, false, at(10))
	assert.Subset(t, summary(effects), []string{"event PodorderStopping", "signal proxy SIGTERM", "kill proxy after 5s"})
	assert.NotContains(t, summary(effects), "signal main SIGTERM")

	var st *Stop
	for _, e := range effects {
		if k, ok := e.(ArmKill); ok {
			st = k.Stop
		}
	}
	require.NotNil(t, st)
	assert.Equal(t, []string{"signal proxy SIGKILL"}, summary(f.pod.GraceEnded(proxy, st)))
	assert.Empty(t, summary(f.pod.GraceEnded(proxy, st)), "killed once")
	done := summary(f.pod.Exited(proxy, 137, false, at(15)))
	assert.Subset(t, done, []string{"forget proxy", "event PodorderStopped"})
}

func TestStopWithEndsAHoldInsteadOfSignallingAndDoesNothingWhileThePodIsDeleted(t *testing.T) {
	f := newPod(t, map[string]string{"podorder.dev/stop-with.proxy": "main", "podorder.dev/after.proxy": "db"}, Node{})
	main, _ := f.run("main", 0)
	proxy, _ := f.run("proxy", 0)
	effects := summary(f.pod.Exited(main, 1, false, at(1)))
	assert.NotContains(t, effects, "signal proxy SIGTERM", "a held container's own process never ran")
	assert.Contains(t, proxy.TS.HoldFailed, "stopped by podorder: main exited with code 1")

	g := newPod(t, map[string]string{"podorder.dev/stop-with.proxy": "main"}, Node{})
	main, _ = g.run("main", 0)
	g.run("proxy", 0)
	assert.Equal(t, []string{"terminating"}, summary(g.pod.terminating()), "nothing to wake: no one waits for anyone")
	assert.NotContains(t, summary(g.pod.Exited(main, 0, false, at(1))), "signal proxy SIGTERM", "kubelet stops a deleted pod's containers")
}

func TestWhileThePodIsDeletedAnExitWakesTheRunningDependenciesPreStop(t *testing.T) {
	f := newPod(t, map[string]string{"podorder.dev/after.api": "db"}, Node{})
	f.run("db", 0)
	api, _ := f.run("api", 1)
	require.NotNil(t, api.TS.ReleasedAt)
	assert.Equal(t, []string{"terminating", "wake api", "wake db"}, summary(f.pod.terminating()))
	assert.Contains(t, summary(f.pod.Exited(api, 0, false, at(2))), "wake db", "db's preStop waits for api's exit")
}

func TestPodDependencyStandInFollowsItsAnswer(t *testing.T) {
	labels := map[string]string{}
	p := New("uid", "ns", "web", decl.Parse(labels, map[string]string{"podorder.dev/after.app": "pod(app=db):ready"}), Node{}, nil, nil)
	f := &fixture{t: t, pod: p}
	hold, err := p.Decl.For("app")
	require.NoError(t, err)
	name := hold.Pods[0].Name
	created := at(0)
	p.Added(&Attempt{TS: &tombstone.Tombstone{Container: name, ID: name, PodSelector: hold.Pods[0].String(), CreatedAt: &created}})
	app, _ := f.run("app", 0)
	assert.Nil(t, app.TS.ReleasedAt)
	assert.Contains(t, summary(p.PodDependencyChanged(name, hold.Pods[0].Condition, true, at(1))), "event PodorderReleased")
	assert.Empty(t, summary(p.PodDependencyChanged(name, hold.Pods[0].Condition, true, at(2))), "no change, no effect")
}

func TestTheConditionNamesWhatEachHeldContainerWaitsForAndTurnsTrueAtRelease(t *testing.T) {
	f := newPod(t, map[string]string{"podorder.dev/after.web": "api", "podorder.dev/stop-with.web": "api"}, Node{})
	first := f.pod.ConditionUpdate(at(0))
	require.Len(t, first, 1)
	assert.True(t, first[0].(SetCondition).Condition.Released, "no container yet: nothing held")
	web, _ := f.run("web", 1)
	held := f.pod.ConditionUpdate(at(1))
	require.Len(t, held, 1)
	c := held[0].(SetCondition).Condition
	assert.False(t, c.Released)
	assert.Equal(t, ConditionHeld, c.Reason)
	assert.Equal(t, "web waits for api (ready) since 12:00:01 (api has not been created yet)", c.Message)

	api, _ := f.run("api", 2)
	require.NotNil(t, web.TS.ReleasedAt)
	u := f.pod.ConditionUpdate(at(2))
	require.Len(t, u, 1)
	assert.True(t, u[0].(SetCondition).Condition.Released)
	assert.Empty(t, f.pod.ConditionUpdate(at(3)), "unchanged: nothing to write")

	// api dies; web is stopped with it and its next attempt is held again.
	f.pod.Exited(api, 137, false, at(4))
	f.pod.Exited(web, 0, false, at(5))
	f.run("web", 6)
	u = f.pod.ConditionUpdate(at(6))
	require.Len(t, u, 1)
	c = u[0].(SetCondition).Condition
	assert.False(t, c.Released)
	assert.Equal(t, at(6), c.Since, "a new transition")
	assert.Contains(t, c.Message, "web waits for api (ready) since 12:00:06 (api exited with code 137")
}

func TestASnapshotSaysWhoIsHeldForWhatAndForHowMuchLonger(t *testing.T) {
	f := newPod(t, map[string]string{"podorder.dev/after.app": "db", "podorder.dev/timeout.app": "1m"}, Node{})
	f.run("app", 0)
	s := f.pod.Snapshot(at(10))
	require.Len(t, s.Containers, 1)
	app := s.Containers[0]
	assert.Equal(t, "held", app.State)
	assert.Equal(t, 50*time.Second, app.TimeoutLeft, "the daemon's deadline: 1m from the start, less its margin, rounded")
	assert.Equal(t, []DependencyReport{{Dependency: "db (ready)", State: "db has not been created yet"}}, app.WaitsFor)
	assert.False(t, s.Released)

	f.run("db", 11)
	s = f.pod.Snapshot(at(12))
	assert.True(t, s.Released)
	assert.Equal(t, []string{"ready", "ready"}, []string{s.Containers[0].State, s.Containers[1].State})
}

func TestTheConditionMessageIsBoundedWhateverThePodDeclares(t *testing.T) {
	var deps []string
	for i := range 32 {
		deps = append(deps, fmt.Sprintf("z%02d-%s", i, strings.Repeat("x", 46)))
	}
	labels := map[string]string{}
	for i := range 60 {
		labels[fmt.Sprintf("podorder.dev/after.c%02d", i)] = strings.Join(deps, ".")
	}
	f := newPod(t, labels, Node{})
	for i := range 60 {
		f.run(fmt.Sprintf("c%02d", i), 1)
	}
	c := f.pod.Condition()
	assert.False(t, c.Released)
	assert.LessOrEqual(t, len(c.Message), MaxConditionMessage)
	assert.True(t, strings.HasPrefix(c.Message, "c00 waits for z00-xxx"), c.Message)
	assert.Regexp(t, `; and \d+ more held containers$`, c.Message, "the containers not described are counted")
}

func TestCapMessage(t *testing.T) {
	long := strings.Repeat("é", MaxConditionMessage)
	tests := map[string]struct {
		in       string
		more     int
		want     string
		wantSize int
	}{
		"short, all described": {in: "a waits for b", want: "a waits for b"},
		"short, some not":      {in: "a waits for b", more: 3, want: "a waits for b; and 3 more held containers"},
		"long, cut on a rune":  {in: long, wantSize: MaxConditionMessage},
		"long, some not":       {in: long, more: 2, wantSize: MaxConditionMessage},
	}
	for name, tt := range tests {
		t.Run(name, func(t *testing.T) {
			got := capMessage(tt.in, tt.more)
			assert.True(t, utf8.ValidString(got), "cut on a rune boundary")
			assert.LessOrEqual(t, len(got), MaxConditionMessage)
			if tt.want != "" {
				assert.Equal(t, tt.want, got)
			}
			if tt.more > 0 {
				assert.True(t, strings.HasSuffix(got, fmt.Sprintf("; and %d more held containers", tt.more)))
			}
			if tt.wantSize > 0 {
				assert.GreaterOrEqual(t, len(got), tt.wantSize-3, "as much as fits")
			}
		})
	}
}

func TestCrossNamespaceRulesNameTheSourceAndTheTarget(t *testing.T) {
	rules, err := ParseCrossNamespaceRules("team-a=shared, *=public")
	require.NoError(t, err)
	assert.True(t, rules.Allows("team-a", "shared"))
	assert.False(t, rules.Allows("team-b", "shared"), "a rule for team-a does not let every namespace watch shared")
	assert.True(t, rules.Allows("team-b", "public"))
	assert.True(t, rules.Allows("x", "x"))
	for _, bad := range []string{"shared", "a=", "=b", "a=*"} {
		_, err := ParseCrossNamespaceRules(bad)
		assert.ErrorContains(t, err, "write <source namespace>=<target namespace>", bad)
	}
}

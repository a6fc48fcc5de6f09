package checker

import (
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

var t0 = time.Date(2026, 12, 5, 10, 0, 0, 0, time.UTC)

// at is t0 plus ms milliseconds.
func at(ms int) time.Time { return t0.Add(time.Duration(ms) * time.Millisecond) }

var cfg = Config{
	ExitTolerance:  100 * time.Millisecond,
	StartRace:      50 * time.Millisecond,
	Liveness:       2100 * time.Millisecond,
	WakeBound:      500 * time.Millisecond,
	DeadlineMargin: 500 * time.Millisecond,
	End:            at(60_000),
}

// run is a container attempt created at 0 and started at 10-20 ms; change what the case needs.
func run(id string, change func(a *Attempt)) Attempt {
	a := Attempt{ID: id, CreateAt: at(0), CreateEnd: at(10), StartAt: at(10), StartEnd: at(20), Hooked: true}
	if change != nil {
		change(&a)
	}
	return a
}

// app waits for deps and started at startMS, 10 ms after podorder released it.
func app(startMS int, deps ...Dep) Container {
	return Container{Name: "app", Deps: deps, Timeout: 20 * time.Second, Attempts: []Attempt{run("app", func(a *Attempt) {
		a.Start, a.Released = at(startMS), at(startMS-10)
	})}}
}

func dep(name string, attempts ...Attempt) Container {
	return Container{Name: name, Attempts: attempts}
}

func judgeApp(t *testing.T, c Config, containers ...Container) Finding {
	t.Helper()
	r := Check(c, []Pod{{Name: "p", Containers: containers}})
	require.Len(t, r.Findings, 1, "one held attempt")
	return r.Findings[0]
}

func TestCheckJudgesEachConditionByTheDependencysOwnLines(t *testing.T) {
	tests := []struct {
		name    string
		app     Container
		deps    []Container
		want    Verdict
		wantWhy string
	}{
		{"started: the dependency printed START before", app(500, Dep{"db", Started}),
			[]Container{dep("db", run("db", func(a *Attempt) { a.Start = at(400) }))}, Checked, "met"},
		{"started: a held dependency counted at its runtime start, its START a second later", app(500, Dep{"db", Started}),
			[]Container{dep("db", run("db", func(a *Attempt) { a.Start = at(1500) }))}, Violation, "db (started): its newest attempt db started 1s later"},
		{"started: not held, the dependency's line 5 ms after its runtime start", app(500, Dep{"db", Started}),
			[]Container{dep("db", run("db", func(a *Attempt) { a.Start = at(505) }))}, Suspect, "within the runtime's start"},
		{"started: the dependency never ran", app(500, Dep{"db", Started}),
			[]Container{dep("db", run("db", nil))}, Violation, "never printed START"},
		{"started: the dependency crashed long before", app(5000, Dep{"db", Started}),
			[]Container{dep("db", run("db", func(a *Attempt) { a.Start, a.Exit, a.ExitCode = at(100), at(600), 1 }))}, Violation, "exited (code 1)"},
		{"started: the dependency crashed within the NRI lag", app(650, Dep{"db", Started}),
			[]Container{dep("db", run("db", func(a *Attempt) { a.Start, a.Exit, a.ExitCode = at(100), at(600), 1 }))}, Suspect, "within the NRI lag"},
		{"started: the dependency crashed within the NRI lag, but podorder knew before releasing", app(650, Dep{"db", Started}),
			[]Container{dep("db", run("db", func(a *Attempt) { a.Start, a.Exit, a.ExitCode, a.ExitRecorded = at(100), at(600), 1, at(610) }))},
			Violation, "podorder recorded the exit (code 1) of its newest attempt db 30ms before it released the dependent"},
		{"started: a dependency that exited 0 still counts", app(800, Dep{"db", Started}),
			[]Container{dep("db", run("db", func(a *Attempt) { a.Start, a.Exit = at(100), at(600) }))}, Checked, "met"},
		{"ready: listened before", app(500, Dep{"db", Ready}),
			[]Container{dep("db", run("db", func(a *Attempt) { a.Start, a.Listen = at(100), at(400) }))}, Checked, "met"},
		{"ready: listened after", app(500, Dep{"db", Ready}),
			[]Container{dep("db", run("db", func(a *Attempt) { a.Start, a.Listen = at(100), at(700) }))}, Violation, "listened 200ms later"},
		{"ready: killed (no EXIT line) before", app(5000, Dep{"db", Ready}),
			[]Container{dep("db", run("db", func(a *Attempt) { a.Start, a.Listen, a.Finished, a.FinishedCode = at(100), at(400), at(900), 137 }))}, Violation, "exited (code 137)"},
		{"completed: exited 0 before", app(500, Dep{"job", Completed}),
			[]Container{dep("job", run("job", func(a *Attempt) { a.Start, a.Exit = at(100), at(400) }))}, Checked, "met"},
		{"completed: exited 1", app(500, Dep{"job", Completed}),
			[]Container{dep("job", run("job", func(a *Attempt) { a.Start, a.Exit, a.ExitCode = at(100), at(400), 1 }))}, Violation, "exited with code 1"},
		{"completed: still running", app(500, Dep{"job", Completed}),
			[]Container{dep("job", run("job", func(a *Attempt) { a.Start = at(100) }))}, Violation, "had not exited"},
		{"one of two dependencies not met", app(500, Dep{"a", Ready}, Dep{"b", Ready}),
			[]Container{dep("a", run("a", func(a *Attempt) { a.Listen = at(100) })), dep("b", run("b", func(a *Attempt) { a.Listen = at(2000) }))},
			Violation, "b (ready)"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := judgeApp(t, cfg, append([]Container{tt.app}, tt.deps...)...)
			assert.Equal(t, tt.want, f.Verdict, "%v", f.Why)
			assert.Contains(t, f.Why[0], tt.wantWhy)
		})
	}
}

func TestCheckJudgesARestartedDependencyByItsNewestAttemptOnly(t *testing.T) {
	crashed := run("db0", func(a *Attempt) { a.Start, a.Exit, a.ExitCode = at(100), at(600), 1 })
	restarted := run("db1", func(a *Attempt) {
		a.CreateAt, a.CreateEnd, a.StartAt, a.StartEnd, a.Start = at(3000), at(3010), at(3010), at(3020), at(4500)
	})
	f := judgeApp(t, cfg, app(3100, Dep{"db", Started}), dep("db", crashed, restarted))
	assert.Equal(t, Violation, f.Verdict, "released on the previous attempt: %v", f.Why)
	assert.Contains(t, f.Why[0], "its newest attempt db1 started 1.4s later")

	f = judgeApp(t, cfg, app(4600, Dep{"db", Started}), dep("db", crashed, restarted))
	assert.Equal(t, Checked, f.Verdict, "%v", f.Why)
}

func TestCheckAcceptsEitherAttemptWhileTheNewOnesCreationIsInProgress(t *testing.T) {
	running := run("db0", func(a *Attempt) { a.Start = at(100) })
	creating := run("db1", func(a *Attempt) { a.CreateAt, a.CreateEnd = at(400), at(900) })
	f := judgeApp(t, cfg, app(500, Dep{"db", Started}), dep("db", running, creating))
	assert.Equal(t, Checked, f.Verdict, "%v", f.Why)
}

func TestCheckHoldsPodorderToItsOwnRecords(t *testing.T) {
	db := dep("db", run("db", func(a *Attempt) { a.Start, a.Listen = at(100), at(300) }))
	tests := []struct {
		name    string
		app     func(a *Attempt)
		want    Verdict
		wantWhy string
	}{
		{"a hook that never held: started without a release", func(a *Attempt) { a.Start, a.Released = at(50), time.Time{} }, Violation, "never recorded its release"},
		{"a wake-up never sent: started at the hook's own re-read", func(a *Attempt) { a.Released, a.Start = at(320), at(1010) }, Violation, "liveness: its process started 690ms after podorder released it"},
		{"a release after the hold's deadline", func(a *Attempt) { a.Released, a.Start = at(19_600), at(19_610) }, Violation, "after its hold's deadline"},
		{"a release recorded for a hold that never started and never ended", func(a *Attempt) { a.Released = at(400) }, Violation, "has not started by the end"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := Container{Name: "app", Deps: []Dep{{"db", Ready}}, Timeout: 20 * time.Second, Attempts: []Attempt{run("app", tt.app)}}
			if tt.name == "a release after the hold's deadline" {
				c.Attempts[0].Finished = at(25_000)
			}
			f := judgeApp(t, cfg, c, db)
			assert.Equal(t, tt.want, f.Verdict, "%v", f.Why)
			assert.Contains(t, f.Why[0], tt.wantWhy)
		})
	}
}

func TestCheckReportsAHoldThatOutlastsItsMetDependencies(t *testing.T) {
	db := dep("db", run("db", func(a *Attempt) { a.Start, a.Listen = at(100), at(300) }))
	timedOut := Container{Name: "app", Deps: []Dep{{"db", Ready}}, Timeout: 20 * time.Second,
		Attempts: []Attempt{run("app", func(a *Attempt) { a.Finished, a.FinishedCode = at(20_100), 255 })}}

	f := judgeApp(t, cfg, timedOut, db)
	assert.Equal(t, Violation, f.Verdict)
	assert.Contains(t, f.Why[0], "liveness: held 19.21s after its dependencies were all met")

	neverReady := dep("db", run("db", func(a *Attempt) { a.Start = at(100) }))
	f = judgeApp(t, cfg, timedOut, neverReady)
	assert.Equal(t, TimedOut, f.Verdict, "%v", f.Why)

	down := cfg
	down.Outages = []Window{{From: at(0), To: at(19_000), What: "podorder down"}}
	f = judgeApp(t, down, timedOut, db)
	assert.Equal(t, TimedOut, f.Verdict, "podorder could act for only 1 s of the hold: %v", f.Why)

	removed := cfg
	removed.StoreRemoved = []time.Time{at(5000)}
	f = judgeApp(t, removed, timedOut, db)
	assert.Equal(t, TimedOut, f.Verdict, "a hold across the store's removal ends at its timeout: %v", f.Why)

	late := app(2600, Dep{"db", Ready})
	f = judgeApp(t, cfg, late, db)
	assert.Equal(t, Violation, f.Verdict, "released 2.3 s after db listened")
	assert.Contains(t, f.Why[0], "then released")
}

func TestCheckExcusesAnUnheldContainerOnlyWhenPodorderDiedDuringItsCreation(t *testing.T) {
	unheld := Container{Name: "app", Deps: []Dep{{"db", Started}}, Timeout: 20 * time.Second,
		Attempts: []Attempt{run("app", func(a *Attempt) { a.Hooked, a.Start = false, at(30) })}}
	db := dep("db", run("db", nil))

	f := judgeApp(t, cfg, unheld, db)
	assert.Equal(t, Violation, f.Verdict)
	assert.Equal(t, []string{"created without podorder's hook"}, f.Why)

	killed := cfg
	killed.Kills = []Window{{From: at(5), To: at(800), What: "podorder kill -9"}}
	f = judgeApp(t, killed, unheld, db)
	assert.Equal(t, Skipped, f.Verdict)
}

func TestCheckCountsEveryHeldAttemptOnceAndSaysWhatEachSkipWas(t *testing.T) {
	db := dep("db", run("db", func(a *Attempt) { a.Start, a.Listen = at(100), at(300) }))
	refused := Container{Name: "web", Deps: []Dep{{"db", Ready}}, Timeout: time.Second,
		Attempts: []Attempt{{Failed: "create: CreateContainer web in pod p: rpc error: code = Unknown desc = plugin \"podorder\" is required"}}}
	ghost := Container{Name: "ghost", Deps: []Dep{{"db", Ready}}, Missing: []string{"nothere"}, Timeout: 3 * time.Second,
		Attempts: []Attempt{run("ghost", func(a *Attempt) { a.Finished, a.FinishedCode = at(3100), 255 })}}
	r := Check(cfg, []Pod{{Name: "p", Containers: []Container{app(500, Dep{"db", Ready}), db, refused, ghost}}})
	assert.Equal(t, "checked 1, skipped 1, timed-out 1, suspect 0, violations 0", r.Result())
	assert.Equal(t, []string{`skipped 1: never ran: create failed: plugin "podorder" is required`}, r.Breakdown())
}

func TestCheckJudgesAStartThatFailedUnderARuntimeRestartByWhatRan(t *testing.T) {
	db := dep("db", run("db", func(a *Attempt) { a.Start, a.Listen = at(100), at(300) }))
	failed := func(start int) Container {
		return Container{Name: "app", Deps: []Dep{{"db", Ready}}, Timeout: 20 * time.Second, Attempts: []Attempt{run("app", func(a *Attempt) {
			a.Failed = "start: StartContainer app in pod p: rpc error: code = Unavailable desc = error reading from server: EOF"
			if start > 0 {
				a.Start, a.Released = at(start), at(start-10)
			}
		})}}
	}
	tests := []struct {
		name string
		app  Container
		want Verdict
	}{
		{"its process never ran: skipped", failed(0), Skipped},
		{"its process ran after db listened: checked", failed(500), Checked},
		{"its process ran before db listened: a violation", failed(200), Violation},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := judgeApp(t, cfg, tt.app, db)
			assert.Equal(t, tt.want, f.Verdict, "%v", f.Why)
		})
	}
}

func TestCheckCountsAHoldEndedByItsPodsDeletionAsChecked(t *testing.T) {
	db := dep("db", run("db", func(a *Attempt) { a.Start = at(100) }))
	killed := Container{Name: "app", Deps: []Dep{{"db", Ready}}, Timeout: 20 * time.Second,
		Attempts: []Attempt{run("app", func(a *Attempt) { a.Finished, a.FinishedCode = at(1500), 137 })}}
	early := app(200, Dep{"db", Ready})
	tests := []struct {
		name    string
		app     Container
		deleted time.Time
		want    Verdict
		wantWhy string
	}{
		{"held, then its pod deleted", killed, at(1400), Checked, "held until its pod was deleted"},
		{"held, never deleted, never met: timed out", killed, time.Time{}, TimedOut, "never started"},
		{"started early, then its pod deleted: still a violation", early, at(1400), Violation, "never listened"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := Check(cfg, []Pod{{Name: "p", Containers: []Container{tt.app, db}, Deleted: tt.deleted}})
			require.Len(t, r.Findings, 1)
			assert.Equal(t, tt.want, r.Findings[0].Verdict, "%v", r.Findings[0].Why)
			assert.Contains(t, r.Findings[0].Why[0], tt.wantWhy)
		})
	}
}

func TestCheckTellsADependencyThatBrokeAfterTheReleaseFromAnEarlyRelease(t *testing.T) {
	// db runs from 100 ms, crashes at 2 s, and its next attempt is created at 2.1 s and never starts.
	db := dep("db",
		run("db-0", func(a *Attempt) { a.Start, a.Exit, a.ExitCode = at(100), at(2000), 1 }),
		run("db-1", func(a *Attempt) {
			a.CreateAt, a.CreateEnd, a.StartAt, a.StartEnd = at(2100), at(2110), at(2110), at(2120)
		}))
	released := func(rel, start int) Container {
		return Container{Name: "app", Deps: []Dep{{"db", Started}}, Timeout: 20 * time.Second, Attempts: []Attempt{run("app", func(a *Attempt) {
			a.Released, a.Start = at(rel), at(start)
		})}}
	}
	tests := []struct {
		name    string
		app     Container
		want    Verdict
		wantWhy string
	}{
		{"released while db ran, started after db crashed", released(1900, 2300), Suspect, "held at podorder's release, not at the process's start 400ms later"},
		{"released after db's next attempt was created: early", released(2200, 2210), Violation, "never printed START"},
		{"released and started while db ran", released(1500, 1510), Checked, "met"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := judgeApp(t, cfg, tt.app, db)
			assert.Equal(t, tt.want, f.Verdict, "%v", f.Why)
			assert.Contains(t, f.Why[0], tt.wantWhy)
		})
	}
}

func TestAStoreRemovalExcusesOnlyHoldsCreatedBeforeIt(t *testing.T) {
	db := dep("db", run("db", func(a *Attempt) { a.Start, a.Listen = at(100), at(300) }))
	timedOut := Container{Name: "app", Deps: []Dep{{"db", Ready}}, Timeout: 20 * time.Second,
		Attempts: []Attempt{run("app", func(a *Attempt) { a.Finished, a.FinishedCode = at(20_100), 255 })}}
	tests := []struct {
		name    string
		removed int
		want    Verdict
	}{
		{"removed between its creation and its start's return: blind, excused", 15, TimedOut},
		{"removed during the hold", 5000, TimedOut},
		{"removed before its creation: it mounts the new store, not excused", -100, Violation},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := cfg
			c.StoreRemoved = []time.Time{at(tt.removed)}
			f := judgeApp(t, c, timedOut, db)
			assert.Equal(t, tt.want, f.Verdict, "%v", f.Why)
		})
	}
}

func TestAHeldStartedDependencyReleasedInTheSameStepIsASuspectWhateverItsWake(t *testing.T) {
	held := func(released, start int) Container {
		return dep("db", run("db", func(a *Attempt) { a.Released, a.Start = at(released), at(start) }))
	}
	app := app(510, Dep{"db", Started}) // released at 500
	tests := []struct {
		name    string
		db      Container
		want    Verdict
		wantWhy string
	}{
		{"released together, its process 300 ms later", held(500, 800), Suspect, "released in the same step"},
		{"released together, its process never within the wake bound", held(500, 1200), Violation, "started 690ms later"},
		{"released after its dependent: early", held(520, 530), Violation, "started 20ms later"},
		{"never released (counted at its runtime start)", dep("db", run("db", func(a *Attempt) { a.Start = at(800) })), Violation, "started 290ms later"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := judgeApp(t, cfg, app, tt.db)
			assert.Equal(t, tt.want, f.Verdict, "%v", f.Why)
			assert.Contains(t, strings.Join(f.Why, "; "), tt.wantWhy)
		})
	}
}

func TestAnExitPodorderCouldNotSeeIsNoCompletionWithoutTheAPI(t *testing.T) {
	// migrate exited 0 at 1 s, during a runtime restart; podorder never recorded the exit.
	migrate := dep("migrate", run("migrate", func(a *Attempt) { a.Start, a.Exit = at(100), at(1000) }))
	timedOut := Container{Name: "app", Deps: []Dep{{"migrate", Completed}}, Timeout: 20 * time.Second,
		Attempts: []Attempt{run("app", func(a *Attempt) { a.Finished, a.FinishedCode = at(20_100), 255 })}}
	restart := cfg
	restart.Outages = []Window{{From: at(900), To: at(1500), What: "containerd restart"}}
	tests := []struct {
		name string
		cfg  func(Config) Config
		want Verdict
	}{
		{"no API: the code is unknown to podorder, the hold ends at its timeout", func(c Config) Config { return c }, TimedOut},
		{"with the API: kubelet tells the code, so a hold that never ends is a liveness violation", func(c Config) Config { c.ExitCodesFromAPI = true; return c }, Violation},
		{"no API, the exit seen: a liveness violation", func(c Config) Config { c.Outages = nil; return c }, Violation},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := judgeApp(t, tt.cfg(restart), timedOut, migrate)
			assert.Equal(t, tt.want, f.Verdict, "%v", f.Why)
		})
	}
}

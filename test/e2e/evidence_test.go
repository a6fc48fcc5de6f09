package e2e

import (
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/podorder/podorder/plugin/podstate"
	"github.com/podorder/podorder/plugin/probe"
	"github.com/podorder/podorder/test/checker"
	"github.com/podorder/podorder/test/harness"
)

// What the checker tolerates in this bed (containerd v2.4.2, runc v1.3.6, 2 cores). Each run's
// RESULT line reports what it saw of the first and the last.
const (
	// exitTolerance is the NRI lag: how long after a workload's EXIT line podorder records its exit
	// (containerd tells NRI after the process is gone). Measured here over two 16-pod churns, 126
	// exits under faults: p50 7 ms, p99 146 ms, max 146 ms; the proof campaign's are under 70 ms.
	// A dependency that exited within it before its dependent started is suspect, not passed. A
	// run that measures a longer lag allows that instead (churn.check).
	exitTolerance = 250 * time.Millisecond
	// startRace: a "started" dependency that is not held counts from its runtime start, a moment
	// before its first line. Within it: suspect. (A held one counts from its release, and its
	// first line may trail its dependents' by its own wake: checker.sameStep.)
	startRace = 100 * time.Millisecond
	// wakeBound is the longest from podorder's release record to the held process's first line
	// (seen here: p50 9 ms, max 49 ms over 51 releases of a churn); a hook that was not woken sees
	// its release only at its own re-read, up to 1 s later.
	wakeBound = 500 * time.Millisecond
)

// checkerConfig is the checker's configuration for a run that ended now.
func checkerConfig() checker.Config {
	return checker.Config{
		ExitTolerance:  exitTolerance,
		StartRace:      startRace,
		Liveness:       2*time.Second + probe.DefaultMaxInterval,
		WakeBound:      wakeBound,
		DeadlineMargin: podstate.DeadlineMargin,
		End:            time.Now(),
	}
}

// podorderRecords are podorder's own records of each container attempt, by container ID.
type podorderRecords struct {
	released, exited map[string]time.Time
}

func readRecords(t testing.TB, po *Podorder) podorderRecords {
	r := podorderRecords{released: map[string]time.Time{}, exited: map[string]time.Time{}}
	for _, msg := range []string{"released", "exited"} {
		into := r.released
		if msg == "exited" {
			into = r.exited
		}
		for _, rec := range po.Logs(t, msg) {
			// A "released" with a reason is podorder inferring, after a hold's end, that a hook it
			// lost track of let its container go: not a decision to hold it to.
			if rec["msg"] != msg || rec["reason"] != nil {
				continue
			}
			id := fmt.Sprint(rec["container_id"])
			at, err := time.Parse(time.RFC3339Nano, fmt.Sprint(rec["time"]))
			if _, seen := into[id]; err == nil && !seen {
				into[id] = at
			}
		}
	}
	return r
}

// measured is what a run showed of the machinery's delays.
type measured struct {
	// exitLags: for every attempt that printed EXIT, how much later podorder recorded its exit.
	exitLags []time.Duration
	// wakes: for every held attempt that started, how much later than podorder's release record.
	wakes []time.Duration
	// exitTolerance is the NRI lag the checker allowed, and wakeBound the longest release → first
	// line: the constants, or the longest exit lag measured in the run if longer.
	exitTolerance, wakeBound time.Duration
}

func (m *measured) add(o measured) {
	m.exitLags = append(m.exitLags, o.exitLags...)
	m.wakes = append(m.wakes, o.wakes...)
	m.exitTolerance = max(m.exitTolerance, o.exitTolerance)
	m.wakeBound = max(m.wakeBound, o.wakeBound)
}

// evidence collects what the run left behind into the checker's input, and the delays seen.
func evidence(t *testing.T, env *harness.Env, po *Podorder, pods []*churnPod) ([]checker.Pod, measured) {
	t.Helper()
	recs := readRecords(t, po)
	var out []checker.Pod
	var m measured
	for _, p := range pods {
		cp := checker.Pod{Name: p.name, Deleted: p.deletedAt()}
		for _, c := range p.containers {
			cc := checker.Container{Name: c.name, Timeout: c.timeout}
			for _, d := range c.deps {
				cc.Deps = append(cc.Deps, checker.Dep{Container: d.container, Condition: d.condition})
			}
			if c.ghost {
				cc.Missing = []string{"ghost"}
			}
			for _, a := range c.attempts {
				ca := attemptEvidence(t, env, a, recs)
				if at, ok := recs.exited[a.ID]; ok && !ca.Exit.IsZero() {
					m.exitLags = append(m.exitLags, at.Sub(ca.Exit))
				}
				if !ca.Start.IsZero() && !ca.Released.IsZero() && len(cc.Deps) > 0 {
					m.wakes = append(m.wakes, ca.Start.Sub(ca.Released))
				}
				cc.Attempts = append(cc.Attempts, ca)
			}
			cp.Containers = append(cp.Containers, cc)
		}
		out = append(out, cp)
	}
	return out, m
}

func attemptEvidence(t *testing.T, env *harness.Env, a *harness.Container, recs podorderRecords) checker.Attempt {
	ca := checker.Attempt{ID: a.ID, CreateAt: a.CreateAt, CreateEnd: a.CreateAt.Add(a.CreateTook)}
	switch {
	case a.CreateErr != nil:
		ca.Failed = "create: " + a.CreateErr.Error()
		return ca
	case a.StartErr != nil:
		// Kept going: a start that failed because containerd restarted under the call may still
		// have run the process, which the checker then judges like any other.
		ca.Failed = "start: " + a.StartErr.Error()
	}
	ca.StartAt, ca.StartEnd = a.StartAt, a.StartAt.Add(a.StartTook)
	ca.Hooked = strings.Contains(runtimeSpec(t, env, a.ID), "/.podorder/hook")
	ca.Released, ca.ExitRecorded = recs.released[a.ID], recs.exited[a.ID]
	if st := env.ContainerStatus(t, a.ID); st.State == runtimeapi.ContainerState_CONTAINER_EXITED && st.FinishedAt != 0 {
		ca.Finished, ca.FinishedCode = time.Unix(0, st.FinishedAt), int(st.ExitCode)
	}
	lines, _ := harness.ReadLog(a.LogPath)
	for _, l := range lines {
		ev, err := harness.ParseWorkloadEvent(l)
		if err != nil {
			continue
		}
		switch ev.Kind {
		case "START":
			ca.Start = ev.At
		case "LISTEN":
			ca.Listen = ev.At
		case "EXIT":
			ca.Exit, ca.ExitCode = ev.At, ev.Code
		}
	}
	return ca
}

// summary describes delays: how many, median, 99th percentile and maximum.
func summary(ds []time.Duration) string {
	if len(ds) == 0 {
		return "none seen"
	}
	s := slices.Clone(ds)
	slices.Sort(s)
	q := func(f float64) time.Duration { return s[int(f*float64(len(s)-1)+0.5)].Round(time.Millisecond) }
	return fmt.Sprintf("%d, p50 %s, p99 %s, max %s", len(s), q(0.5), q(0.99), q(1))
}

// logReport logs the checker's RESULT line (prefixed with what ran), the delays seen and its
// breakdown.
func logReport(t *testing.T, what string, r checker.Report, m measured) {
	t.Helper()
	t.Logf("RESULT %s checker: %s", what, r.Result())
	t.Logf("RESULT %s delays: NRI exit lag (EXIT line → podorder's record) %s, tolerance %s; release record → first line %s, bound %s",
		what, summary(m.exitLags), m.exitTolerance, summary(m.wakes), m.wakeBound)
	for _, l := range r.Breakdown() {
		t.Logf("  %s", l)
	}
}

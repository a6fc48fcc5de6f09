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

// checkerConfig is the checker's configuration for a run that ended now.
func checkerConfig() checker.Config {
	return checker.Config{
		ExitTolerance:  checker.DefaultExitTolerance,
		StartRace:      checker.DefaultStartRace,
		Liveness:       2*time.Second + probe.DefaultMaxInterval,
		WakeBound:      checker.DefaultWakeBound,
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
		cp := checker.Pod{Name: p.name, Deleted: p.deleted} // the campaign is over: nothing writes it now
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

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

// What the checker tolerates in this bed (containerd v2.4.2, runc v1.3.6, 2 cores).
const (
	// exitTolerance is the NRI lag: how long after a workload's EXIT line podorder records its exit.
	// Measured here (churnLag reports it every run): p50 6 ms, p99 40 ms, max 110 ms over 300 exits
	// of the 16-pod churn; 250 ms leaves room for a loaded CI machine. A dependency that exited
	// within it before its dependent started is suspect, not passed.
	exitTolerance = 250 * time.Millisecond
	// startRace: a "started" dependency that is held itself is released in the same step as its
	// dependents and both hooks are woken together, so its first line may come a little after
	// theirs (seen here: up to 3 ms). Within it: suspect.
	startRace = 100 * time.Millisecond
	// wakeBound is the longest from podorder's release record to the held process's first line
	// (seen here: 10-40 ms; the hook's own re-read, which a lost wake-up falls back to, comes 1 s
	// after the previous one).
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
			if rec["msg"] != msg {
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

// evidence collects what the run left behind into the checker's input, and the NRI lags seen: for
// every attempt that printed EXIT, how much later podorder recorded its exit.
func evidence(t *testing.T, env *harness.Env, po *Podorder, pods []*churnPod) ([]checker.Pod, []time.Duration) {
	t.Helper()
	recs := readRecords(t, po)
	var out []checker.Pod
	var lags []time.Duration
	for _, p := range pods {
		cp := checker.Pod{Name: p.name}
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
				if !ca.Exit.IsZero() {
					if at, ok := recs.exited[a.ID]; ok {
						lags = append(lags, at.Sub(ca.Exit))
					}
				}
				cc.Attempts = append(cc.Attempts, ca)
			}
			cp.Containers = append(cp.Containers, cc)
		}
		out = append(out, cp)
	}
	return out, lags
}

func attemptEvidence(t *testing.T, env *harness.Env, a *harness.Container, recs podorderRecords) checker.Attempt {
	ca := checker.Attempt{ID: a.ID, CreateAt: a.CreateAt, CreateEnd: a.CreateAt.Add(a.CreateTook)}
	switch {
	case a.CreateErr != nil:
		ca.Failed = "create: " + a.CreateErr.Error()
		return ca
	case a.StartErr != nil:
		ca.Failed = "start: " + a.StartErr.Error()
		return ca
	}
	ca.StartAt, ca.StartEnd = a.StartAt, a.StartAt.Add(a.StartTook)
	ca.Hooked = strings.Contains(runtimeSpec(t, env, a.ID), "/.podorder/hook")
	ca.Released = recs.released[a.ID]
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

// lagSummary describes the NRI lags seen.
func lagSummary(lags []time.Duration) string {
	if len(lags) == 0 {
		return "no exits seen"
	}
	s := slices.Clone(lags)
	slices.Sort(s)
	q := func(f float64) time.Duration { return s[int(f*float64(len(s)-1))].Round(time.Millisecond) }
	return fmt.Sprintf("%d exits, p50 %s, p99 %s, max %s (tolerance %s)", len(s), q(0.5), q(0.99), q(1), exitTolerance)
}

// logReport logs the checker's RESULT line (prefixed with what ran) and its breakdown.
func logReport(t *testing.T, what string, r checker.Report, lags []time.Duration) {
	t.Helper()
	t.Logf("RESULT %s checker: %s; NRI exit lag: %s", what, r.Result(), lagSummary(lags))
	for _, l := range r.Breakdown() {
		t.Logf("  %s", l)
	}
}

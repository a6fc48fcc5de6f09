// Package checker judges a run of podorder by process evidence: the lines each workload printed
// about itself (START when its main runs, LISTEN before it listens, EXIT just before it exits), the
// runtime's record of when a process ended, and the CRI calls the test made. podorder's own records
// are used only to hold podorder to them (every start has a release; a release comes before its
// hold's deadline and wakes the hook at once), never as evidence that a dependency was met.
//
// For every held container attempt it decides one verdict: checked (its dependencies were met, by
// their own lines, when its process started), timed-out (it never started, and its dependencies
// were never all met for long enough to owe it a release), skipped (it says why), suspect (met only
// within a tolerance the machinery allows, such as the runtime's lag in telling podorder of an exit),
// or violation. It is pure: the e2e tests feed it what they collected; its tests feed it
// synthetic runs.
package checker

import (
	"fmt"
	"sort"
	"strings"
	"time"
)

// Condition names, as podorder's declarations spell them.
const (
	Started   = "started"
	Ready     = "ready"
	Completed = "completed"
)

// Dep is one declared dependency.
type Dep struct{ Container, Condition string }

// Attempt is what was seen of one container attempt.
type Attempt struct {
	ID string
	// CreateAt and CreateEnd bound the CRI CreateContainer call; StartAt and StartEnd the CRI
	// StartContainer call (zero when it was not made).
	CreateAt, CreateEnd time.Time
	StartAt, StartEnd   time.Time
	// Failed says why the attempt never ran ("create: ...", "start: ..."); empty when it was created
	// and started.
	Failed string
	// Hooked says that the runtime's spec of the attempt carries podorder's hook.
	Hooked bool
	// Start, Listen and Exit are the workload's own lines; zero when absent. ExitCode is the EXIT
	// line's.
	Start, Listen, Exit time.Time
	ExitCode            int
	// Finished is when the runtime saw the process end (CRI FinishedAt) and FinishedCode its exit
	// code; zero while it runs.
	Finished     time.Time
	FinishedCode int
	// Released is podorder's record of this attempt's release; zero when there is none.
	Released time.Time
	// ExitRecorded is podorder's record of this attempt's exit; zero when there is none.
	ExitRecorded time.Time
}

// exit returns when and how the attempt's process ended, from the earliest evidence.
func (a *Attempt) exit() (time.Time, int, bool) {
	switch {
	case !a.Exit.IsZero() && (a.Finished.IsZero() || !a.Finished.Before(a.Exit)):
		return a.Exit, a.ExitCode, true
	case !a.Finished.IsZero():
		return a.Finished, a.FinishedCode, true
	}
	return time.Time{}, 0, false
}

// Container is one container of a pod and every attempt made of it, in creation order.
type Container struct {
	Name string
	Deps []Dep
	// Missing names dependencies on containers that never exist.
	Missing  []string
	Timeout  time.Duration
	Attempts []Attempt
}

// Pod is one pod of the run.
type Pod struct {
	Name       string
	Containers []Container
	// Deleted is when the run deleted the pod (stopped its sandbox); zero if it lived to the end.
	Deleted time.Time
}

// Window is a span of the run during which something happened (podorder down, the runtime
// restarting).
type Window struct {
	From, To time.Time
	What     string
}

func (w Window) overlaps(from, to time.Time) bool { return w.From.Before(to) && from.Before(w.To) }

// Config is what the checker tolerates and what it knows of the faults.
type Config struct {
	// ExitTolerance is how late podorder may learn of an exit: the runtime tells NRI after the
	// process is gone. A dependency that ended within it before its dependent's start is suspect.
	ExitTolerance time.Duration
	// StartRace is how much later than its dependent a "started" dependency that was not held may
	// print its first line: podorder counts it started when the runtime's start returns. Within it:
	// suspect. (A held one counts from its release: see sameStep.)
	StartRace time.Duration
	// Liveness is the longest a hold may outlast its dependencies being all met (by their lines).
	Liveness time.Duration
	// WakeBound is the longest from podorder's release record to the process's first line.
	WakeBound time.Duration
	// DeadlineMargin is how long before a hold's timeout (counted from the runtime's start) podorder
	// stops releasing it.
	DeadlineMargin time.Duration
	// Kills are the spans during which podorder was dead (from its kill to its restart).
	Kills []Window
	// Outages are spans during which podorder could not act (Kills among them).
	Outages []Window
	// StoreRemoved lists when podorder's store was removed under it: holds across it cannot see a
	// release and end at their timeout.
	StoreRemoved []time.Time
	// End is when the evidence was collected: a process still running runs until then.
	End time.Time
	// ExitCodesFromAPI says podorder had the Kubernetes API, where kubelet shows the exit codes of
	// attempts that exited while podorder could not see it. Without it such an exit's code is
	// unknown to podorder for good, and the holds waiting for it to complete wait to their timeout.
	ExitCodesFromAPI bool
}

// What the checker tolerates on the beds it was measured on (containerd v2.4.2, runc v1.3.6, 2
// cores), for both the CRI bed and the real kubelet: kubelet adds no step between podorder's
// release and the hook. Each run's RESULT line reports what it saw of each; a run that measures
// more may allow that instead.
const (
	// DefaultExitTolerance is the NRI lag: how long after a workload's EXIT line podorder records
	// its exit (containerd tells NRI after the process is gone). Measured on the CRI bed over two
	// 16-pod churns, 126 exits under faults: p50 7 ms, p99 146 ms, max 146 ms; the proof
	// campaign's are under 70 ms.
	DefaultExitTolerance = 250 * time.Millisecond
	// DefaultStartRace: a "started" dependency that is not held counts from its runtime start, a
	// moment before its first line. (A held one counts from its release, and its first line may
	// trail its dependents' by its own wake: sameStep.)
	DefaultStartRace = 100 * time.Millisecond
	// DefaultWakeBound is the longest from podorder's release record to the held process's first
	// line (seen: p50 9 ms, max 49 ms over 51 releases of a churn); a hook that was not woken sees
	// its release only at its own re-read, up to 1 s later.
	DefaultWakeBound = 500 * time.Millisecond
)

// Verdict is the outcome for one held attempt.
type Verdict int

// The verdicts, from best to worst.
const (
	Checked Verdict = iota
	TimedOut
	Skipped
	Suspect
	Violation
)

func (v Verdict) String() string {
	return [...]string{"checked", "timed-out", "skipped", "suspect", "violation"}[v]
}

// Finding is one held attempt's verdict and why.
type Finding struct {
	Where   string
	Verdict Verdict
	Why     []string
}

// Report is the outcome of a run.
type Report struct {
	Findings []Finding
	Counts   [Violation + 1]int
	// Skips counts the skipped attempts by reason.
	Skips map[string]int
}

// Result is the report's one line.
func (r Report) Result() string {
	return fmt.Sprintf("checked %d, skipped %d, timed-out %d, suspect %d, violations %d",
		r.Counts[Checked], r.Counts[Skipped], r.Counts[TimedOut], r.Counts[Suspect], r.Counts[Violation])
}

// Breakdown lists what each skip was, then every suspect and violation with its reasons.
func (r Report) Breakdown() []string {
	var out []string
	reasons := make([]string, 0, len(r.Skips))
	for k := range r.Skips {
		reasons = append(reasons, k)
	}
	sort.Strings(reasons)
	for _, k := range reasons {
		out = append(out, fmt.Sprintf("skipped %d: %s", r.Skips[k], k))
	}
	for _, f := range r.Findings {
		if f.Verdict >= Suspect {
			out = append(out, fmt.Sprintf("%s: %s: %s", f.Verdict, f.Where, strings.Join(f.Why, "; ")))
		}
	}
	return out
}

// Of returns the findings with verdict v.
func (r Report) Of(v Verdict) []Finding {
	var out []Finding
	for _, f := range r.Findings {
		if f.Verdict == v {
			out = append(out, f)
		}
	}
	return out
}

// Check judges every held attempt of pods.
func Check(cfg Config, pods []Pod) Report {
	r := Report{Skips: map[string]int{}}
	for _, p := range pods {
		byName := map[string]*Container{}
		for i := range p.Containers {
			byName[p.Containers[i].Name] = &p.Containers[i]
		}
		for _, c := range p.Containers {
			if len(c.Deps) == 0 && len(c.Missing) == 0 {
				continue
			}
			for i := range c.Attempts {
				a := &c.Attempts[i]
				f := judge(cfg, byName, &c, a, p.Deleted)
				f.Where = fmt.Sprintf("pod %s container %s attempt %d %s", p.Name, c.Name, i, short(a.ID))
				r.Counts[f.Verdict]++
				if f.Verdict == Skipped {
					r.Skips[f.Why[0]]++
				}
				r.Findings = append(r.Findings, f)
			}
		}
	}
	return r
}

// failure shortens a CRI error to what tells one failure from another: the call and the runtime's
// own words, without the gRPC wrapping and container names.
func failure(err string) string {
	call, rest, _ := strings.Cut(err, ": ")
	if i := strings.LastIndex(rest, "desc = "); i >= 0 {
		rest = rest[i+len("desc = "):]
	}
	if len(rest) > 240 {
		rest = rest[:240] + "…"
	}
	return call + " failed: " + rest
}

func short(id string) string {
	if len(id) > 12 {
		return id[:12]
	}
	return id
}

// finding collects the reasons of one attempt's verdict; the worst wins.
type finding struct{ Finding }

func (f *finding) add(v Verdict, format string, args ...any) {
	if v > f.Verdict {
		f.Verdict = v
	}
	f.Why = append(f.Why, fmt.Sprintf(format, args...))
}

func judge(cfg Config, byName map[string]*Container, c *Container, a *Attempt, deleted time.Time) Finding {
	var f finding
	// A start that failed (the runtime restarting under the call) may still have run the
	// process: then it is judged like any other.
	if a.Failed != "" && a.Start.IsZero() {
		f.add(Skipped, "never ran: %s", failure(a.Failed))
		return f.Finding
	}
	if !a.Hooked {
		for _, k := range cfg.Kills {
			if k.overlaps(a.CreateAt, a.CreateEnd) {
				f.add(Skipped, "unheld: podorder died during its CreateContainer and NRI went on without it")
				return f.Finding
			}
		}
		f.add(Violation, "created without podorder's hook")
		return f.Finding
	}
	deadline := a.StartEnd.Add(c.Timeout - cfg.DeadlineMargin)
	if !a.Start.IsZero() {
		started(cfg, byName, c, a, &f)
	}
	if !a.Released.IsZero() {
		switch {
		case a.Released.After(deadline):
			f.add(Violation, "podorder recorded its release %s after its hold's deadline (timeout %s, less %s, after its start returned)",
				a.Released.Sub(deadline).Round(time.Millisecond), c.Timeout, cfg.DeadlineMargin)
		case a.Released.After(a.StartAt.Add(c.Timeout - cfg.DeadlineMargin)):
			f.add(Suspect, "podorder recorded its release while its StartContainer call ran, timeout-margin later")
		}
		if a.Start.IsZero() && a.Finished.IsZero() {
			f.add(Violation, "podorder recorded its release but its process has not started by the end of the run")
		}
	}
	liveness(cfg, byName, c, a, &f)
	switch {
	case !a.Start.IsZero() || f.Verdict != Checked:
	case !deleted.IsZero() && !deleted.After(a.StartEnd.Add(c.Timeout-cfg.DeadlineMargin)):
		// Nothing early, and live until then (liveness above): the deletion ended the hold.
		f.add(Checked, "held until its pod was deleted")
	default:
		f.add(TimedOut, "never started; its dependencies were never all met for %s", cfg.Liveness)
	}
	if len(f.Why) == 0 {
		f.Why = []string{"met"}
	}
	return f.Finding
}

// started judges an attempt whose process started.
func started(cfg Config, byName map[string]*Container, c *Container, a *Attempt, f *finding) {
	s := a.Start
	if len(c.Missing) > 0 {
		f.add(Violation, "started although it waits for %s, which never exists", strings.Join(c.Missing, ", "))
	}
	if a.Released.IsZero() {
		f.add(Violation, "its process started but podorder never recorded its release")
	} else if late := s.Sub(a.Released); late > cfg.WakeBound && !outage(cfg, a.Released, s) {
		f.add(Violation, "liveness: its process started %s after podorder released it (bound %s): the hook was not woken",
			late.Round(time.Millisecond), cfg.WakeBound)
	}
	for _, d := range c.Deps {
		dc := byName[d.Container]
		if dc == nil {
			f.add(Violation, "started although it waits for %s, which the run never created", d.Container)
			continue
		}
		v, why := metAt(cfg, d.Condition, dc.Attempts, s, a.Released)
		if v == Violation && !a.Released.IsZero() && a.Released.Before(s) {
			// podorder decides at its release; the hook execs the process a moment later. A
			// dependency that held then and stopped holding in between (it crashed while the
			// hook was being woken, or during an outage that delayed the wake) is a race podorder
			// cannot close: a release is not taken back.
			if at, _ := metAt(cfg, d.Condition, dc.Attempts, a.Released, a.Released); at == Checked {
				v, why = Suspect, fmt.Sprintf("held at podorder's release, not at the process's start %s later: %s",
					s.Sub(a.Released).Round(time.Millisecond), why)
			}
		}
		if v != Checked {
			f.add(v, "%s (%s): %s", d.Container, d.Condition, why)
		}
	}
}

// newest returns the attempts that may be the newest of a container at t: the last one created
// before t, and the one before it too while the last one's creation was still in progress.
func newest(attempts []Attempt, t time.Time) []*Attempt {
	var out []*Attempt
	for i := len(attempts) - 1; i >= 0; i-- {
		a := &attempts[i]
		if a.ID == "" || !a.CreateAt.Before(t) {
			continue
		}
		out = append(out, a)
		if !a.CreateEnd.After(t) {
			break
		}
	}
	return out
}

// metAt decides a condition at moment s, the dependent's start, from the newest attempt then;
// released is podorder's release record of the dependent.
func metAt(cfg Config, cond string, attempts []Attempt, s, released time.Time) (Verdict, string) {
	cands := newest(attempts, s)
	if len(cands) == 0 {
		return Violation, "had no attempt yet"
	}
	best, why := metBy(cfg, cond, cands[0], s, released)
	for _, a := range cands[1:] {
		if v, w := metBy(cfg, cond, a, s, released); v < best {
			best, why = v, w
		}
	}
	return best, why
}

func metBy(cfg Config, cond string, a *Attempt, s, released time.Time) (Verdict, string) {
	ex, code, exited := a.exit()
	endedBefore := func() (Verdict, string, bool) {
		if !exited || !ex.Before(s) {
			return Checked, "", false
		}
		if !released.IsZero() && !a.ExitRecorded.IsZero() && a.ExitRecorded.Before(released) {
			return Violation, fmt.Sprintf("podorder recorded the exit (code %d) of its newest attempt %s %s before it released the dependent",
				code, short(a.ID), released.Sub(a.ExitRecorded).Round(time.Millisecond)), true
		}
		if s.Sub(ex) <= cfg.ExitTolerance {
			return Suspect, fmt.Sprintf("exited (code %d) %s before, within the NRI lag %s", code, s.Sub(ex).Round(time.Millisecond), cfg.ExitTolerance), true
		}
		return Violation, fmt.Sprintf("its newest attempt %s exited (code %d) %s before", short(a.ID), code, s.Sub(ex).Round(time.Millisecond)), true
	}
	switch cond {
	case Started:
		switch {
		case a.Start.IsZero():
			return Violation, fmt.Sprintf("its newest attempt %s never printed START", short(a.ID))
		case a.Start.After(s) && sameStep(cfg, a, released):
			// podorder counts a held dependency started at its release (docs/labels.md): both hooks
			// are woken in one step, and which process runs first is the scheduler's choice.
			return Suspect, fmt.Sprintf("started %s later: released in the same step as its dependent, its own process %s after its release (wake bound %s)",
				a.Start.Sub(s).Round(time.Millisecond), a.Start.Sub(a.Released).Round(time.Millisecond), cfg.WakeBound)
		case a.Start.After(s.Add(cfg.StartRace)) || a.Start.After(s) && !a.Released.IsZero():
			return Violation, fmt.Sprintf("its newest attempt %s started %s later", short(a.ID), a.Start.Sub(s).Round(time.Millisecond))
		case a.Start.After(s):
			// Not held: podorder counts it started when the runtime's start returned, a moment
			// before its process prints.
			return Suspect, fmt.Sprintf("started %s later, within the runtime's start (%s)", a.Start.Sub(s).Round(time.Millisecond), cfg.StartRace)
		}
		if code != 0 {
			if v, w, ended := endedBefore(); ended {
				return v, w
			}
		}
		return Checked, ""
	case Ready:
		switch {
		case a.Listen.IsZero():
			return Violation, fmt.Sprintf("its newest attempt %s never listened", short(a.ID))
		case a.Listen.After(s):
			return Violation, fmt.Sprintf("its newest attempt %s listened %s later", short(a.ID), a.Listen.Sub(s).Round(time.Millisecond))
		}
		if v, w, ended := endedBefore(); ended {
			return v, w
		}
		return Checked, ""
	case Completed:
		switch {
		case !exited:
			return Violation, fmt.Sprintf("its newest attempt %s had not exited", short(a.ID))
		case ex.After(s):
			return Violation, fmt.Sprintf("its newest attempt %s exited %s later", short(a.ID), ex.Sub(s).Round(time.Millisecond))
		case code != 0:
			return Violation, fmt.Sprintf("its newest attempt %s exited with code %d", short(a.ID), code)
		}
		return Checked, ""
	}
	return Violation, fmt.Sprintf("unknown condition %q", cond)
}

// sameStep says that dependency attempt a was held and released by podorder no later than the
// dependent's release, and that its own process then started within the wake bound: a dependent
// released on a held `started` dependency in one step.
func sameStep(cfg Config, a *Attempt, released time.Time) bool {
	return !a.Released.IsZero() && !released.IsZero() && !a.Released.After(released) && a.Start.Sub(a.Released) <= cfg.WakeBound
}

// span is a half-open interval of time; a zero To runs to the end of the run.
type span struct{ from, to time.Time }

// metSpans returns when, by the lines of its attempts, a condition on a container held.
func metSpans(cfg Config, cond string, attempts []Attempt) []span {
	end := cfg.End
	var out []span
	var live []*Attempt
	for i := range attempts {
		if attempts[i].ID != "" {
			live = append(live, &attempts[i])
		}
	}
	for i, a := range live {
		// An attempt counts until the next one is created.
		until := end
		if i+1 < len(live) {
			until = live[i+1].CreateAt
		}
		ex, code, exited := a.exit()
		// An exit podorder never recorded, because it came while podorder could not see the
		// runtime, has a code podorder cannot know without the API: for podorder it is neither
		// a success nor still running.
		unseen := exited && a.ExitRecorded.IsZero() && !cfg.ExitCodesFromAPI && outage(cfg, ex.Add(-cfg.ExitTolerance), ex.Add(cfg.ExitTolerance))
		var from, to time.Time
		switch cond {
		case Started:
			from, to = a.Start, until
			if exited && (code != 0 || unseen) {
				to = ex
			}
		case Ready:
			from, to = a.Listen, until
			if exited {
				to = ex
			}
		case Completed:
			if exited && code == 0 && !unseen {
				from, to = ex, until
			}
		}
		if from.IsZero() {
			continue
		}
		if to.After(until) {
			to = until
		}
		if from.Before(to) {
			out = append(out, span{from, to})
		}
	}
	return out
}

func intersect(a, b []span) []span {
	var out []span
	for _, x := range a {
		for _, y := range b {
			from, to := x.from, x.to
			if y.from.After(from) {
				from = y.from
			}
			if y.to.Before(to) {
				to = y.to
			}
			if from.Before(to) {
				out = append(out, span{from, to})
			}
		}
	}
	return out
}

// outage reports whether podorder could not act during some of [from, to).
func outage(cfg Config, from, to time.Time) bool {
	for _, w := range cfg.Outages {
		if w.overlaps(from, to) {
			return true
		}
	}
	return false
}

// usable is how long of [from, to) podorder could act in.
func usable(cfg Config, from, to time.Time) time.Duration {
	d := to.Sub(from)
	for _, w := range cfg.Outages {
		if !w.overlaps(from, to) {
			continue
		}
		f, t := w.From, w.To
		if f.Before(from) {
			f = from
		}
		if t.After(to) {
			t = to
		}
		d -= t.Sub(f)
	}
	return d
}

// liveness reports a hold that outlasted its dependencies being all met by more than the bound.
func liveness(cfg Config, byName map[string]*Container, c *Container, a *Attempt, f *finding) {
	if len(c.Missing) > 0 || a.StartEnd.IsZero() {
		return
	}
	// The hold: from the runtime's start (podorder may release from then on) to the process's
	// start, or to podorder's deadline, or to the attempt's end.
	from, to := a.StartEnd, a.Start
	if to.IsZero() {
		to = a.StartAt.Add(c.Timeout - cfg.DeadlineMargin)
		if _, _, exited := a.exit(); exited && a.Finished.Before(to) {
			to = a.Finished
		}
		if cfg.End.Before(to) {
			to = cfg.End
		}
	}
	for _, removed := range cfg.StoreRemoved {
		// The store is bind-mounted when the runtime creates the container's task, somewhere
		// between the CRI create and the start's return: a removal from the creation on leaves
		// the hook reading a removed directory, and the hold ends at its timeout.
		if !removed.Before(a.CreateAt) && removed.Before(to) {
			return
		}
	}
	met := []span{{from, to}}
	for _, d := range c.Deps {
		dc := byName[d.Container]
		if dc == nil {
			return
		}
		met = intersect(met, metSpans(cfg, d.Condition, dc.Attempts))
	}
	for _, m := range met {
		if held := usable(cfg, m.from, m.to); held > cfg.Liveness {
			what := "never released"
			if !a.Start.IsZero() {
				what = "then released"
			}
			f.add(Violation, "liveness: held %s after its dependencies were all met (from %s), bound %s; %s",
				held.Round(time.Millisecond), m.from.Format("15:04:05.000"), cfg.Liveness, what)
			return
		}
	}
}

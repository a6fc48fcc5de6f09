package podstate

import (
	"errors"
	"fmt"
	"syscall"
	"testing"
	"time"

	"github.com/podorder/podorder/hooks/dependency"
	"github.com/podorder/podorder/plugin/decl"
)

// FuzzPodState drives one pod's state machine through random sequences of the events the shell
// feeds it — creations, the runtime's start and its return, exits (and undone creations), probe
// passes and refusals, kubelet's readiness, the pod's deletion, the store's re-creation, timers, the
// clock — and checks podorder's promise after every step against what the harness itself did, never
// against podstate's own bookkeeping:
//   - never early: a held attempt is released only while each of its dependencies holds for the
//     dependency's newest attempt — started: its own process runs or ran and did not fail; ready: it
//     runs and a readiness source said so after its release; completed: its own process ran and
//     exited 0 — and only before its hold's deadline, counted from the runtime's start;
//   - a held attempt is never counted started before its release;
//   - never lost: after every step, no hold whose dependencies all hold is left unreleased;
//   - signals reach only the pod's newest attempts whose own process runs.
//
// The seeds run in `make test`; `make fuzz-long` runs it for 1,000,000 executions.
func FuzzPodState(f *testing.F) {
	for _, seed := range [][]byte{
		{0, 0, 2, 1, 2, 2, 2, 0, 1, 1, 1, 2, 1, 0, 0, 1, 0, 2, 0},
		{1, 0, 2, 1, 2, 2, 2, 0, 1, 3, 1, 0, 0, 1, 0, 2, 0, 4, 2, 0},
		{2, 0, 1, 1, 1, 2, 1, 0, 0, 1, 0, 2, 0, 5, 1, 4, 1},
		{3, 0, 0, 1, 0, 2, 0, 0, 1, 1, 1, 2, 1, 0, 2, 1, 2, 2, 2, 3, 0, 0, 9, 1, 3, 1},
		{4, 0, 2, 1, 2, 2, 2, 3, 2, 0, 0, 1, 0, 2, 0, 0, 1, 1, 1, 2, 1},
		{5, 0, 0, 1, 0, 8, 200, 0, 1, 1, 1, 2, 1},
		{0, 0, 0, 1, 0, 10, 0, 0, 1, 1, 1, 2, 1, 6, 0},
		{3, 0, 1, 1, 1, 2, 1, 0, 0, 1, 0, 2, 0, 3, 1, 0, 11, 1, 7, 1},
		{6, 0, 0, 1, 0, 0, 1, 1, 1, 2, 1, 5, 1, 14, 1, 0, 2, 1, 2, 2, 2},
		{6, 0, 0, 1, 0, 0, 1, 1, 1, 15, 1, 2, 1, 5, 1, 3, 1, 0, 1, 1, 1, 2, 1, 14, 1},
	} {
		f.Add(seed)
	}
	f.Fuzz(func(t *testing.T, ops []byte) {
		if len(ops) == 0 || len(ops) > 600 {
			return
		}
		h := newHarness(t, ops[0])
		for i := 1; i+1 < len(ops); i += 2 {
			h.do(ops[i], ops[i+1])
			h.check()
		}
	})
}

// scenario is one pod's declarations and what the node can do for it.
type scenario struct {
	labels, annotations map[string]string
	node                Node
	spec                []decl.Container
}

var scenarios = []scenario{
	{labels: map[string]string{"podorder.dev/after.a": "b", "podorder.dev/after.b": "c_started"}},
	{labels: map[string]string{"podorder.dev/after.a": "b_completed.c"}, annotations: map[string]string{"podorder.dev/probe.c": "tcp:5432"},
		node: Node{Probes: true}},
	{labels: map[string]string{"podorder.dev/after.a": "b.c_started"}, node: Node{Probes: true, API: true},
		spec: []decl.Container{{Name: "a"}, {Name: "b", ReadinessProbe: true, ReadinessCheck: &decl.Probe{Kind: "tcp", Port: 1, Readiness: true}}, {Name: "c"}}},
	{labels: map[string]string{"podorder.dev/stop-with.b": "a", "podorder.dev/after.b": "c", "podorder.dev/stop-with.c": "a_failed"},
		node: Node{StopWith: true}},
	{labels: map[string]string{"podorder.dev/after.a": "b_started.c_completed", "podorder.dev/after.b": "c"},
		annotations: map[string]string{"podorder.dev/probe.c": "tcp:5432"}, node: Node{Probes: true, API: true, StopWith: true}},
	{labels: map[string]string{"podorder.dev/after.a": "b", "podorder.dev/timeout.a": "2s", "podorder.dev/after.c": "a_started"}},
	// b's readiness is its own READY=1, though it has a readinessProbe podorder and kubelet could judge.
	{labels: map[string]string{"podorder.dev/after.a": "b", "podorder.dev/after.c": "b_started", "podorder.dev/readiness.b": "notify"},
		node: Node{Probes: true, API: true},
		spec: []decl.Container{{Name: "a"}, {Name: "b", ReadinessProbe: true, ReadinessCheck: &decl.Probe{Kind: "tcp", Port: 1, Readiness: true}}, {Name: "c"}}},
}

var names = []string{"a", "b", "c"}

// truth is what the harness did to one attempt, and what that means for its process.
type truth struct {
	name      string
	starting  *time.Time // the runtime began its start: a hold's deadline counts from here
	started   bool       // the runtime's start returned
	exited    bool
	code      int32
	undone    bool // its creation was undone: it never ran
	readyAt   []time.Time
	refused   bool // the node refused its probe
	signalled bool // its own process signalled its readiness
	sigRefuse bool // the shell could not watch for its signal
	ran       bool // its own process ran at some point
	outlived  bool // counted running because it outlived its hold
	deadline  time.Time
	hasDeadln bool
}

type harness struct {
	t      *testing.T
	s      scenario
	p      *Pod
	now    time.Time
	seq    int
	truths map[*Attempt]*truth
	// armed holds the stops whose SIGKILL timer an ArmKill armed.
	armed map[*Stop]bool
}

func newHarness(t *testing.T, pick byte) *harness {
	s := scenarios[int(pick)%len(scenarios)]
	d := decl.Parse(s.labels, s.annotations)
	if _, err := d.For("a"); err != nil {
		t.Fatalf("scenario %d does not parse: %v", pick, err)
	}
	return &harness{t: t, s: s, p: New("uid", "ns", "web", d, s.node, s.spec, nil), now: t0, truths: map[*Attempt]*truth{}, armed: map[*Stop]bool{}}
}

// current is the newest attempt of the container named by b, and its truth.
func (h *harness) current(b byte) (*Attempt, *truth) {
	a := h.p.Attempts[names[int(b)%len(names)]]
	if a == nil {
		return nil, nil
	}
	return a, h.truths[a]
}

// do runs one event and checks its effects.
func (h *harness) do(op, arg byte) {
	p, now := h.p, h.now
	a, tr := h.current(arg)
	before := h.releasedNow()
	var effects []Effect
	switch op % 18 {
	case 0: // kubelet creates a new attempt, once the previous one exited
		name := names[int(arg)%len(names)]
		if a != nil && !tr.exited {
			return
		}
		h.seq++
		adm, err := p.Admit(Created{Name: name, ID: fmt.Sprintf("%s-%d", name, h.seq), At: now, Grace: 30 * time.Second})
		if err != nil {
			return
		}
		h.truths[adm.A] = &truth{name: name}
		effects = p.Added(adm.A)
	case 1: // NRI StartContainer
		if a == nil || tr.starting != nil || tr.exited {
			return
		}
		at := now
		tr.starting = &at
		if a.TS.Held() {
			timeout := time.Duration(a.TS.HoldTimeout)
			tr.deadline, tr.hasDeadln = now.Add(timeout-DeadlineMargin), true
		}
		effects = p.Starting(a, uint32(100+h.seq), now)
	case 2: // NRI PostStartContainer: the runtime's start returned
		if a == nil || tr.starting == nil || tr.started || tr.exited {
			return
		}
		tr.started = true
		effects = p.Started(a, now)
	case 3: // NRI StopContainer: the process (or the hook) exited with code arg/4%3
		if a == nil || tr.exited {
			return
		}
		tr.exited, tr.code = true, int32(arg/4%3)
		neverStarted := tr.starting == nil
		if neverStarted {
			tr.undone, tr.code = true, 0
		} else if a.TS.Held() && a.TS.ReleasedAt == nil {
			tr.code = HookFailedExitCode // the hook gave up or was stopped: its own process never ran
		}
		effects = p.Exited(a, tr.code, neverStarted, now)
	case 4: // podorder's probe passes
		if a == nil || !a.Probing {
			return
		}
		tr.readyAt = append(tr.readyAt, now)
		effects = p.ProbePassed(a, now)
	case 5: // kubelet reports the attempt ready
		if a == nil || tr.exited {
			return
		}
		tr.readyAt = append(tr.readyAt, now)
		effects = p.Observed(Observation{Ready: []ReadyContainer{{Name: a.Name(), ID: a.TS.ID}}}, now)
	case 6: // the pod is being deleted
		effects = p.Observed(Observation{Terminating: true}, now)
	case 7: // the API shows the pod's spec
		effects = p.Observed(Observation{Containers: h.s.spec}, now)
	case 8: // time passes
		h.now = now.Add(time.Duration(arg) * 20 * time.Millisecond)
		return
	case 9: // a stop's grace period ends: the timer of a kill armed for it fires
		if a == nil || !h.armed[a.Stop] {
			return
		}
		effects = p.GraceEnded(a, a.Stop)
	case 10: // the store was removed and made again
		effects = p.StoreRecreated()
	case 11: // a blind hold's end comes while its attempt still runs
		if a == nil || !a.TS.Blind || tr.exited || !tr.started {
			return
		}
		tr.outlived = true
		effects = p.HoldOutlived(a, now)
	case 12: // the node refuses a probe
		if a == nil || !a.Probing {
			return
		}
		tr.refused = true
		effects = p.ProbeRefused(a, errors.New("no capacity"), now)
	case 13: // the runtime-start check is due
		if a == nil {
			return
		}
		effects = p.RuntimeCheckDue(a)
	case 14: // the attempt's own process signals its readiness, and the shell sees it
		if a == nil || !a.Signalling || tr.exited {
			return
		}
		tr.signalled = true
		tr.readyAt = append(tr.readyAt, now)
		effects = p.SignalSeen(a, now)
	case 15: // the shell cannot watch for the attempt's signal
		if a == nil || a.Signal == nil {
			return
		}
		tr.sigRefuse = true
		effects = p.SignalRefused(a, errors.New("no capacity"), now)
	case 16: // the process exits while podorder is away; back, podorder sees only the runtime's list
		// of containers, which leaves exited ones out (containerd 2.4)
		if a == nil || tr.exited {
			return
		}
		tr.exited, tr.code = true, int32(arg/4%3)
		if tr.starting == nil {
			tr.undone, tr.code = true, 0
		} else if a.TS.Held() && a.TS.ReleasedAt == nil {
			tr.code = HookFailedExitCode
		}
		var listed []string
		for b, btr := range h.truths {
			if !btr.exited {
				listed = append(listed, b.TS.ID)
			}
		}
		effects = p.Listed(listed, now)
	case 17: // the API shows the exit code of an attempt that exited
		if a == nil || !tr.exited || tr.undone {
			return
		}
		effects = p.Observed(Observation{Exited: []ExitedContainer{{Name: a.Name(), ID: a.TS.ID, Code: tr.code}}}, now)
	}
	h.checkEffects(effects, before)
}

// releasedNow is the set of attempts released so far.
func (h *harness) releasedNow() map[*Attempt]bool {
	out := map[*Attempt]bool{}
	for a := range h.truths {
		if a.TS.ReleasedAt != nil {
			out[a] = true
		}
	}
	return out
}

// runs reports whether a's own process runs now: the runtime started it and, when held, podorder
// released it (or it outlived its hold), and it has not exited.
func (h *harness) runs(a *Attempt) bool {
	tr := h.truths[a]
	return tr != nil && tr.started && !tr.exited && (!a.TS.Held() || a.TS.ReleasedAt != nil || tr.outlived)
}

// holds reports, from the harness's own record, whether dependency d of a holds now.
func (h *harness) holds(d dependency.Dependency) bool {
	dep := h.p.Attempts[d.Container]
	if dep == nil {
		return false
	}
	tr := h.truths[dep]
	switch d.Condition {
	case dependency.Started:
		return tr.ran && (!tr.exited || tr.code == 0)
	case dependency.Ready:
		if !h.runs(dep) {
			return false
		}
		return dep.TS.ReadyAt != nil
	case dependency.Completed:
		return tr.ran && tr.exited && tr.code == 0 && !tr.undone
	}
	return false
}

// checkEffects checks one event's effects: every release is deserved and in time, every signal is
// aimed at a process of this pod that runs.
func (h *harness) checkEffects(effects []Effect, before map[*Attempt]bool) {
	t := h.t
	for a := range h.truths {
		if h.runs(a) {
			h.truths[a].ran = true
		}
	}
	for a, tr := range h.truths {
		if before[a] || a.TS.ReleasedAt == nil || !a.TS.Held() || tr.outlived {
			continue
		}
		if !tr.hasDeadln || !h.now.Before(tr.deadline) {
			t.Fatalf("%s released at %s, at or after its deadline %s (or before the runtime's start)", a.TS.ID, h.now, tr.deadline)
		}
		for _, d := range a.TS.WaitsFor {
			if !h.holds(d) {
				t.Fatalf("%s released early: %s does not hold", a.TS.ID, d)
			}
		}
	}
	for _, e := range effects {
		if k, ok := e.(ArmKill); ok {
			h.armed[k.Stop] = true
		}
		s, ok := e.(Signal)
		if !ok {
			continue
		}
		if h.p.Attempts[s.A.Name()] != s.A || !h.runs(s.A) {
			t.Fatalf("%s signalled %s while its own process does not run (or it is not the newest)", s.A.TS.ID, s.Signal)
		}
		if s.Signal != syscall.SIGKILL && s.Signal != s.A.Declared.StopSignal && !(s.A.Declared.StopSignal == 0 && s.Signal == syscall.SIGTERM) {
			t.Fatalf("%s signalled %s, not its stop signal", s.A.TS.ID, s.Signal)
		}
	}
}

// check runs the invariants that hold between events.
func (h *harness) check() {
	t := h.t
	if n := len(h.p.Timeline.Entries); n > MaxTimeline {
		t.Fatalf("the timeline holds %d entries, more than %d", n, MaxTimeline)
	}
	for _, e := range h.p.Timeline.Entries {
		if e.Kind == TimelineReleased && e.Detail == "" {
			t.Fatalf("%s released, and the timeline does not say by what", e.ID)
		}
	}
	for a, tr := range h.truths {
		if a.TS.Held() && a.TS.ReleasedAt == nil && a.TS.State().Released {
			t.Fatalf("%s is held and counted started", a.TS.ID)
		}
		// What dependents see: counted ready only while its own process runs, and only on the word
		// of a readiness source it has.
		if st := a.TS.State(); st.Released && st.Ready && !st.Exited {
			if !h.runs(a) {
				t.Fatalf("%s is counted ready and its own process does not run", a.TS.ID)
			}
			if len(tr.readyAt) == 0 && h.judged(tr) {
				t.Fatalf("%s is counted ready, and no readiness source it has said so", a.TS.ID)
			}
			if a.Signal != nil && !tr.sigRefuse && !tr.signalled {
				t.Fatalf("%s is counted ready, and its own process never signalled it", a.TS.ID)
			}
		}
		if h.p.Attempts[tr.name] != a || !a.Holding() || a.TS.Blind || a.TS.HoldFailed != "" || !tr.hasDeadln || !h.now.Before(tr.deadline) {
			continue
		}
		met := true
		for _, d := range a.TS.WaitsFor {
			// An exit podorder learned only as an absence has a code it cannot know until the API
			// shows it: waiting for it then is the price of never releasing early.
			unknown := h.p.Attempts[d.Container] != nil && h.p.Attempts[d.Container].TS.ExitCodeUnknown
			met = met && h.holds(d) && !unknown
		}
		if met {
			t.Fatalf("%s lost: every dependency holds, and it is still held", a.TS.ID)
		}
	}
}

// judged reports whether a readiness source other than the release applies to the container: the
// API (kubelet judges every container it does not know to lack a readinessProbe), or a probe
// podorder runs and the node did not refuse.
func (h *harness) judged(tr *truth) bool {
	if h.s.node.API {
		known := false
		for _, c := range h.p.Spec {
			if c.Name == tr.name {
				known = true
				if c.ReadinessProbe {
					return true
				}
			}
		}
		if !known {
			return true
		}
	}
	if !h.s.node.Probes || tr.refused || !h.p.Decl.WaitedReady(tr.name) {
		return false
	}
	_, annotated := h.s.annotations["podorder.dev/probe."+tr.name]
	return annotated
}

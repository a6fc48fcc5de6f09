// Package podstate is podorder's per-pod state machine. Events go in — a container attempt was
// added, started by the runtime, found running, exited; kubelet or a probe found it ready; a
// dependency on other pods changed; the pod is being deleted; a timer fired — and effects come out:
// write a tombstone (and wake the hooks that read it), record an Event, log, start or end a probe,
// signal a container, arm a timer. It does no I/O, reads no clock (time is an input) and takes no
// locks: the NRI shell in package plugin owns the lock, turns runtime calls and callbacks into
// events, and carries out the effects in order.
//
// Every rule lives here once. A container is released only before its hold's deadline, so that its
// hook, which reads the tombstones once more at its own later deadline, always obeys; it is ready only
// once released and its readiness sources say so; it is stopped only while its own process runs.
package podstate

import (
	"fmt"
	"log/slog"
	"sort"
	"strings"
	"syscall"
	"time"

	"github.com/podorder/podorder/hooks/condition"
	"github.com/podorder/podorder/hooks/tombstone"
	"github.com/podorder/podorder/plugin/decl"
)

// Event reasons, as `kubectl describe pod` shows them.
const (
	ReasonWaiting          = "PodorderWaiting"
	ReasonReleased         = "PodorderReleased"
	ReasonTimeout          = "PodorderTimeout"
	ReasonDependencyFailed = "PodorderDependencyFailed"
	ReasonRejected         = "PodorderRejected"
	ReasonProbeRefused     = "PodorderProbeRefused"
	ReasonUnheld           = "PodorderUnheld"
	ReasonStopping         = "PodorderStopping"
	ReasonStopped          = "PodorderStopped"
)

// DeadlineMargin is how much earlier than the hook's deadline the daemon stops releasing: room for
// the tombstone write to land before the hook's final read.
const DeadlineMargin = 500 * time.Millisecond

// HookGrace is how much longer than the hold the runtime lets the hook run, so that the hook's own
// timeout, which says what was missing, always fires before the runtime kills it.
const HookGrace = 10 * time.Second

// HookFailedExitCode is the exit code runc gives a container whose startContainer hook failed.
const HookFailedExitCode = 255

// HoldDeadline is the last moment the daemon may release a hold of timeout that started no earlier
// than start. The hook's clock starts after start, and the hook reads the tombstones once more at
// its deadline: every release the daemon records is obeyed.
func HoldDeadline(start time.Time, timeout time.Duration) time.Time {
	return start.Add(timeout - DeadlineMargin)
}

// Attempt is one attempt of one container, or the synthetic stand-in of a dependency on other pods.
// The tombstone is the truth the hooks read; the other fields are what only the daemon needs.
type Attempt struct {
	TS   *tombstone.Tombstone
	Hold *decl.Hold
	// Prev is the attempt this one replaced, the newest again if the runtime undoes this one.
	Prev *Attempt
	// Probe is the check podorder runs for this attempt's readiness: its podorder.dev/probe
	// annotation, or its own readinessProbe evaluated in kubelet's stead; nil when none. It is chosen
	// once, when the attempt's process starts (see chooseProbe).
	Probe *decl.Probe
	// probeChosen is set once Probe was chosen: the API's pod arriving later cannot change a choice
	// already acted on, which would leave readiness waiting for a probe that never started.
	probeChosen bool
	// Probing is set while podorder's probe of this attempt runs.
	Probing bool
	// ProbeRefused is set when the node could not run the probe: readiness then comes from the
	// other sources, rather than never.
	ProbeRefused bool
	// Blind is set on a held attempt whose hook cannot see the store any more (it was removed under
	// podorder): a release written now would never reach it, so none is.
	Blind bool
	// Wakes is set when the container has a wake FIFO: it is held, or others wait for it (its preStop
	// hook waits for them while the pod is deleted).
	Wakes bool
	// Grace is the pod's terminationGracePeriodSeconds, as kubelet passed it to this container.
	Grace time.Duration
	// Stop is podorder's stop of this attempt in progress; nil when none.
	Stop *Stop
}

// Name is the container's name.
func (a *Attempt) Name() string { return a.TS.Container }

// Holding reports whether a is held right now: its hook waits, neither released nor exited.
func (a *Attempt) Holding() bool {
	return a.TS.Held() && a.TS.ReleasedAt == nil && a.TS.ExitedAt == nil
}

// Stop is podorder's stop of one attempt, from its first signal to its exit.
type Stop struct {
	Why string
	// Signal is zero when the stop ended a hold instead: the attempt's own process never ran.
	Signal syscall.Signal
	At     time.Time
	Grace  time.Duration
	Killed bool
}

// Sources says which readiness sources exist besides podorder's knowledge of the hold.
type Sources struct {
	// Probes is set when podorder can run its own probes.
	Probes bool
	// KubeletReadiness reports whether kubelet's readiness of a container is one of its sources;
	// nil when podorder has no Kubernetes API.
	KubeletReadiness func(container string) bool
	// ReadinessProbe returns the container's readinessProbe as a check podorder can run itself, nil
	// when it has none podorder can run (or no API, or no way into the pod's network).
	ReadinessProbe func(container string) *decl.Probe
}

// Pod is the state of one pod that uses podorder.
type Pod struct {
	UID, Namespace, Name string
	// Ref is "namespace/name", for messages.
	Ref  string
	Decl *decl.Pod
	// Attempts maps a container name to its newest attempt, and the synthetic name of each
	// dependency on other pods to its stand-in.
	Attempts map[string]*Attempt
	// Terminating is set once the Kubernetes API says the pod is being deleted.
	Terminating bool
	Sources     Sources
	// condition is the pod condition last asked for; nil before the first.
	condition *PodCondition
}

// New returns the state of a pod with no attempts yet.
func New(uid, namespace, name string, d *decl.Pod, src Sources) *Pod {
	return &Pod{UID: uid, Namespace: namespace, Name: name, Ref: namespace + "/" + name, Decl: d,
		Attempts: map[string]*Attempt{}, Sources: src}
}

// Effect is something the shell must do. The concrete types below are all there are.
type Effect interface{ effect() }

// Write persists A's tombstone, then wakes the hooks that Wakes names.
type Write struct{ A *Attempt }

// Remove deletes a container's tombstone.
type Remove struct{ Container string }

// Wake nudges one container's hook to re-read the tombstones.
type Wake struct{ Container string }

// Record records a Kubernetes Event on the pod.
type Record struct {
	Warning         bool
	Reason, Message string
}

// Log is one structured log line about a container of the pod ("" for the pod).
type Log struct {
	Level     slog.Level
	Container string
	Msg       string
	Args      []any
}

// StartProbe starts podorder's readiness probe of A; ProbePassed or ProbeRefused follows.
type StartProbe struct{ A *Attempt }

// EndProbe ends A's probe, if one runs.
type EndProbe struct{ A *Attempt }

// Signal sends Signal to A's process through the handle the shell holds; if that fails, the shell
// reports it with SignalFailed.
type Signal struct {
	A      *Attempt
	Signal syscall.Signal
}

// ArmKill asks for GraceEnded(A, Stop) after After.
type ArmKill struct {
	A     *Attempt
	Stop  *Stop
	After time.Duration
}

// ArmBlindEnd asks for HoldOutlived(A) at At.
type ArmBlindEnd struct {
	A  *Attempt
	At time.Time
}

// MarkTerminating marks the pod's store as being deleted, for the preStop hooks.
type MarkTerminating struct{}

// HoldEnded reports the end of A's hold, for metrics: Outcome is released, timeout,
// dependency_failed or stopped; Held is how long it lasted from the attempt's creation.
type HoldEnded struct {
	A       *Attempt
	Outcome string
	Held    time.Duration
}

// Hold outcomes.
const (
	OutcomeReleased         = "released"
	OutcomeTimeout          = "timeout"
	OutcomeDependencyFailed = "dependency_failed"
	OutcomeStopped          = "stopped"
)

// Forget drops what the shell holds for A's process: its handle and a pending SIGKILL. A's process
// exited.
type Forget struct{ A *Attempt }

func (Write) effect()           {}
func (Remove) effect()          {}
func (Wake) effect()            {}
func (Record) effect()          {}
func (Log) effect()             {}
func (StartProbe) effect()      {}
func (EndProbe) effect()        {}
func (Signal) effect()          {}
func (ArmKill) effect()         {}
func (ArmBlindEnd) effect()     {}
func (MarkTerminating) effect() {}
func (Forget) effect()          {}
func (HoldEnded) effect()       {}

// out collects effects with small helpers, so that the rules read as rules.
type out []Effect

func (o *out) add(e ...Effect) { *o = append(*o, e...) }

func (o *out) log(level slog.Level, container, msg string, args ...any) {
	o.add(Log{Level: level, Container: container, Msg: msg, Args: args})
}

func (o *out) record(warning bool, reason, format string, args ...any) {
	o.add(Record{Warning: warning, Reason: reason, Message: fmt.Sprintf(format, args...)})
}

// Current returns the newest attempt of container if it has the runtime ID id, else nil: an event of
// an older attempt changes nothing.
func (p *Pod) Current(container, id string) *Attempt {
	if a := p.Attempts[container]; a != nil && a.TS.ID == id {
		return a
	}
	return nil
}

// Add makes a, whose tombstone the shell has just written, the newest attempt of its container.
func (p *Pod) Add(a *Attempt) []Effect {
	var o out
	old := p.Attempts[a.Name()]
	p.Attempts[a.Name()] = a
	if old != nil {
		o.add(EndProbe{old})
		old.Probing = false
		old.Prev = nil // one step back is all an undone creation needs
	}
	a.Prev = old
	o.wakeFor(p, a)
	o.add(p.syncProbes()...) // a held attempt waits for its dependencies from now on
	return o
}

// Started is NRI StartContainer of a: a hold's deadline counts from here, before the hook's own clock
// starts.
func (p *Pod) Started(a *Attempt, now time.Time) []Effect {
	var o out
	ts := a.TS
	if !ts.Held() || ts.ReleasedAt != nil {
		return nil
	}
	if ts.HoldDeadline == nil {
		deadline := HoldDeadline(now, time.Duration(ts.HoldTimeout))
		ts.HoldDeadline = &deadline
		o.write(p, a)
	}
	o.add(p.Release(now)...)
	return o
}

// RuntimeStarted is NRI PostStartContainer of a: the runtime's start returned. An attempt that is not
// held runs its own process from now on.
func (p *Pod) RuntimeStarted(a *Attempt, now time.Time) []Effect {
	var o out
	a.TS.StartedAt = &now
	if !a.TS.Held() {
		o.add(p.markReleased(a, now)...)
	}
	o.write(p, a)
	o.add(p.Release(now)...)
	return o
}

// Probed reports whether a's readiness comes from a podorder probe.
func (p *Pod) Probed(a *Attempt) bool { return a.Probe != nil && !a.ProbeRefused }

// chooseProbe decides, once, which check podorder runs for a: none unless a container of the pod
// waits for a to be ready, so that probes nobody needs never cost the node; then the
// podorder.dev/probe annotation if any; else a's own readinessProbe, unless the pod opts out with
// podorder.dev/readiness.<c>: kubelet.
func (p *Pod) chooseProbe(a *Attempt) {
	if a.probeChosen {
		return
	}
	a.probeChosen = true
	switch {
	case !p.Sources.Probes || !p.Decl.WaitedReady(a.Name()):
	case a.Hold != nil && a.Hold.Probe != nil:
		a.Probe = a.Hold.Probe
	case a.Hold != nil && a.Hold.KubeletReadiness:
	case p.Sources.ReadinessProbe != nil:
		a.Probe = p.Sources.ReadinessProbe(a.Name())
	}
}

// syncProbes starts the probe of each attempt that needs one now and ends the others: a probe runs
// only while its attempt's process runs, it has not passed, and a container of the pod is held
// waiting for it to be ready — the moment nobody waits any more, it costs the node nothing.
func (p *Pod) syncProbes() []Effect {
	var o out
	for _, name := range p.names() {
		a := p.Attempts[name]
		ts := a.TS
		want := ts.ReleasedAt != nil && ts.ExitedAt == nil && ts.ProbeReadyAt == nil && ts.ReadyAt == nil && p.Probed(a) && p.heldFor(name)
		switch {
		case want && !a.Probing:
			a.Probing = true
			o.add(StartProbe{a})
		case !want && a.Probing:
			o.endProbe(a)
		}
	}
	return o
}

// heldFor reports whether a container of the pod is held right now waiting for the named one to be
// ready.
func (p *Pod) heldFor(name string) bool {
	for _, b := range p.Attempts {
		if !b.Holding() || b.TS.HoldFailed != "" || b.Hold == nil {
			continue
		}
		for _, d := range b.Hold.After {
			if d.Container == name && d.Condition == condition.Ready {
				return true
			}
		}
	}
	return false
}

// markReleased records that a's own process runs, starts its probe, and refreshes its readiness.
func (p *Pod) markReleased(a *Attempt, now time.Time) []Effect {
	var o out
	a.TS.ReleasedAt = &now
	p.chooseProbe(a)
	o.add(p.syncProbes()...)
	o.add(p.refreshReady(a, now)...)
	return o
}

// refreshReady sets ReadyAt once a is released and its readiness sources say so. Kubelet calls a
// held container ready, so no source counts before the release. Then:
//   - when podorder evaluates a's own readinessProbe, either verdict on that check is enough,
//     podorder's or kubelet's: podorder's is usually first, and kubelet's covers a probe that has
//     not decided yet, so podorder's probe can only make readiness sooner, never later;
//   - else its podorder.dev/probe must pass, and kubelet's readiness too when that is a source.
func (p *Pod) refreshReady(a *Attempt, now time.Time) []Effect {
	ts := a.TS
	if ts.ReadyAt != nil || ts.ReleasedAt == nil || ts.ExitedAt != nil {
		return nil
	}
	p.chooseProbe(a)
	k := p.Sources.KubeletReadiness
	switch {
	case p.Probed(a) && a.Probe.Readiness:
		if ts.ProbeReadyAt == nil && ts.KubeletReadyAt == nil {
			return nil
		}
	case p.Probed(a) && ts.ProbeReadyAt == nil:
		return nil
	case k != nil && k(a.Name()) && ts.KubeletReadyAt == nil:
		return nil
	}
	ts.ReadyAt = &now
	return []Effect{Log{Level: slog.LevelInfo, Container: a.Name(), Msg: "ready", Args: []any{"after_release_ms", now.Sub(*ts.ReleasedAt).Milliseconds()}}}
}

// ProbePassed is podorder's probe of a passing.
func (p *Pod) ProbePassed(a *Attempt, now time.Time) []Effect {
	if a.TS.ExitedAt != nil || a.TS.ProbeReadyAt != nil {
		return nil
	}
	var o out
	a.TS.ProbeReadyAt = &now
	a.Probing = false
	o.log(slog.LevelInfo, a.Name(), "probe passed", "probe", a.Probe.String())
	o.add(p.refreshReady(a, now)...)
	o.write(p, a)
	o.add(p.Release(now)...)
	return o
}

// ProbeRefused is the node refusing to run a's probe: readiness comes from the other sources.
func (p *Pod) ProbeRefused(a *Attempt, err error, now time.Time) []Effect {
	var o out
	a.Probing = false
	a.ProbeRefused = true
	probe := a.Probe.String()
	o.log(slog.LevelError, a.Name(), "cannot probe; readiness comes from kubelet, or from the release without the API", "probe", probe, "error", err)
	o.record(true, ReasonProbeRefused, "the probe %s of container %s cannot run: %v; its readiness comes from kubelet instead", probe, a.Name(), err)
	o.add(p.refreshReady(a, now)...)
	if a.TS.ReadyAt != nil {
		o.write(p, a)
		o.add(p.Release(now)...)
	}
	return o
}

// KubeletReady is kubelet reporting a ready through the API.
func (p *Pod) KubeletReady(a *Attempt, now time.Time) []Effect {
	if a.TS.KubeletReadyAt != nil || a.TS.ExitedAt != nil {
		return nil
	}
	var o out
	a.TS.KubeletReadyAt = &now
	o.add(p.refreshReady(a, now)...)
	o.write(p, a)
	o.add(p.Release(now)...)
	return o
}

// Exited is NRI StopContainer of a with the process's exit code. neverStarted says the runtime never
// started it: its creation was undone (another plugin or a validator refused it) or it is removed
// unstarted, and its exit code 0 means nothing.
func (p *Pod) Exited(a *Attempt, code int32, neverStarted bool, now time.Time) []Effect {
	ts := a.TS
	if ts.ExitedAt != nil {
		return nil
	}
	if neverStarted && ts.StartedAt == nil && ts.HoldDeadline == nil {
		return p.undo(a, now)
	}
	o := out{Forget{a}}
	ts.ExitedAt = &now
	ts.ExitCode = code
	o.endProbe(a)
	if ts.Held() && ts.ReleasedAt == nil && ts.HoldDeadline != nil {
		missing := p.missing(a)
		o.log(slog.LevelWarn, a.Name(), "hold ended without release: the hook timed out, a dependency failed, or the container was stopped; "+
			"the hook's reason is in the container's log",
			"waits_for", WaitsFor(ts.WaitsFor), "exit_code", code, "missing", missing)
		outcome := OutcomeStopped // by kubelet, or by podorder's stop-with
		switch {
		case a.Stop != nil:
		case ts.HoldFailed != "" || p.anyFailed(a):
			outcome = OutcomeDependencyFailed
			o.record(true, ReasonDependencyFailed, "container %s will not start: %s (reason: kubectl logs --previous -c %s)", a.Name(), missing, a.Name())
		case code == HookFailedExitCode || !now.Before(*ts.HoldDeadline):
			outcome = OutcomeTimeout
			o.record(true, ReasonTimeout, "container %s was not released within %s: %s; it exits and restarts per its restartPolicy (reason: kubectl logs --previous -c %s)",
				a.Name(), time.Duration(ts.HoldTimeout), missing, a.Name())
		}
		o.add(HoldEnded{A: a, Outcome: outcome, Held: now.Sub(*ts.CreatedAt)})
	} else {
		o.log(slog.LevelDebug, a.Name(), "exited", "exit_code", code)
	}
	o.add(p.stopped(a, code, now)...)
	o.write(p, a)
	o.add(p.stopBound(a, code, now)...)
	o.add(p.Release(now)...)
	return o
}

// undo forgets an attempt that never started; the previous attempt, if any, is the newest again.
func (p *Pod) undo(a *Attempt, now time.Time) []Effect {
	var o out
	name := a.Name()
	o.endProbe(a)
	if a.TS.Held() && a.TS.HoldDeadline == nil {
		// The runtime refused the adjustment podorder returned; containerd's error (in the CRI
		// error, kubelet's CreateContainerError) names who. The usual one is worth saying here.
		o.log(slog.LevelWarn, name, "creation undone or never started; forgetting this attempt. If containerd's NRI validator has "+
			"reject_oci_hook_adjustment = true, podorder cannot hold containers: holds are OCI hooks", "container_id", a.TS.ID)
	} else {
		o.log(slog.LevelInfo, name, "creation undone or never started; forgetting this attempt", "container_id", a.TS.ID)
	}
	if a.Prev != nil {
		p.Attempts[name] = a.Prev
		o.write(p, a.Prev)
	} else {
		delete(p.Attempts, name)
		o.add(Remove{name})
	}
	o.add(p.Release(now)...)
	return o
}

// Release records, for every held attempt whose dependencies are all met, that it may start,
// repeating until nothing changes so that a chain a → b → c resolves in one call. The daemon alone
// decides; the hook only obeys what is recorded for its own attempt, so the two cannot disagree. A
// hold whose dependency can no longer be met is recorded as failed, which ends it at once.
func (p *Pod) Release(now time.Time) []Effect {
	var o out
	for changed := true; changed; {
		changed = false
		for _, name := range p.names() {
			a := p.Attempts[name]
			ts := a.TS
			if !ts.Held() || ts.HoldDeadline == nil || ts.ReleasedAt != nil || ts.ExitedAt != nil || ts.HoldFailed != "" || a.Blind {
				continue
			}
			if !now.Before(*ts.HoldDeadline) {
				continue // the hook gives up at its own deadline; its exit is recorded by Exited
			}
			if p.anyFailed(a) {
				ts.HoldFailed = p.missing(a)
				o.log(slog.LevelWarn, name, "hold failed: a dependency can no longer be met", "missing", ts.HoldFailed)
				o.write(p, a)
				continue
			}
			if !p.allMet(ts.WaitsFor) {
				continue
			}
			o.add(p.markReleased(a, now)...)
			elapsed := now.Sub(*ts.CreatedAt).Milliseconds()
			o.log(slog.LevelInfo, name, "released", "container_id", ts.ID, "waits_for", WaitsFor(ts.WaitsFor), "elapsed_ms", elapsed)
			o.record(false, ReasonReleased, "container %s released %dms after its creation: %s met", name, elapsed, Describe(a.Hold))
			o.write(p, a)
			o.add(HoldEnded{A: a, Outcome: OutcomeReleased, Held: now.Sub(*ts.CreatedAt)})
			changed = true
		}
	}
	// A release, an exit or a new held attempt may change who waits for whom.
	o.add(p.syncProbes()...)
	return o
}

// MarkBlind stops releasing a, whose hook reads a store directory that no longer exists. The hook
// then ends the hold at its timeout, the container exits and kubelet starts a new attempt, which
// sees the new directory. A container still running well past its hold's end must have been let go
// by its hook (else the runtime would have ended it): HoldOutlived then counts it released.
func (p *Pod) MarkBlind(a *Attempt) []Effect {
	if a.Blind {
		return nil
	}
	a.Blind = true
	end := a.TS.CreatedAt.Add(time.Duration(a.TS.HoldTimeout) + HookGrace + time.Second)
	return []Effect{
		Log{Level: slog.LevelWarn, Container: a.Name(), Msg: "held since before the store was removed: its hook cannot see a release; it ends at its timeout",
			Args: []any{"container_id", a.TS.ID, "counted_running_after", end.Format(time.RFC3339)}},
		ArmBlindEnd{A: a, At: end},
	}
}

// HoldOutlived is a blind attempt still running past its hold's end: its hook let it go.
func (p *Pod) HoldOutlived(a *Attempt, now time.Time) []Effect {
	if p.Attempts[a.Name()] != a || a.TS.ExitedAt != nil || a.TS.ReleasedAt != nil {
		return nil
	}
	var o out
	o.add(p.markReleased(a, now)...)
	o.log(slog.LevelInfo, a.Name(), "released", "container_id", a.TS.ID, "reason", "still running past its hold's end, so its hook let it go")
	o.write(p, a)
	o.add(p.Release(now)...)
	return o
}

// PodDependency is the answer for a dependency on other pods changing: the synthetic stand-in
// called name evaluates to Met for cond exactly when met.
func (p *Pod) PodDependency(name string, cond condition.Condition, met bool, now time.Time) []Effect {
	a := p.Attempts[name]
	if a == nil {
		return nil
	}
	ts := a.TS
	if (condition.Evaluate(cond, ts.State()) == condition.Met) == met {
		return nil
	}
	ts.StartedAt, ts.ReleasedAt, ts.ReadyAt, ts.ExitedAt, ts.ExitCode = nil, nil, nil, nil, 0
	if met {
		ts.StartedAt, ts.ReleasedAt = &now, &now
		switch cond {
		case condition.Ready:
			ts.ReadyAt = &now
		case condition.Completed:
			ts.ExitedAt = &now
		}
	}
	var o out
	o.log(slog.LevelInfo, name, "pod dependency changed", "pod_selector", ts.PodSelector, "met", met)
	o.write(p, a)
	o.add(p.Release(now)...)
	return o
}

// Terminate is the Kubernetes API saying the pod is being deleted: kubelet now stops its containers,
// each after its preStop hook, and podorder's preStop hooks wait for dependents to exit.
func (p *Pod) Terminate() []Effect {
	if p.Terminating {
		return nil
	}
	p.Terminating = true
	o := out{MarkTerminating{}, Log{Level: slog.LevelInfo, Msg: "pod is being deleted: dependencies stop after their dependents"}}
	for _, name := range p.names() {
		if a := p.Attempts[name]; a.Wakes && a.TS.ExitedAt == nil {
			o.add(Wake{name})
		}
	}
	return o
}

// endProbe ends a's probe, if one runs.
func (o *out) endProbe(a *Attempt) {
	if a.Probing {
		a.Probing = false
		o.add(EndProbe{a})
	}
}

// write adds the write of a's tombstone and the wake-ups it calls for.
func (o *out) write(p *Pod, a *Attempt) {
	o.add(Write{a})
	o.wakeFor(p, a)
}

// wakeFor adds the wake-ups that a write of changed's tombstone calls for: every held hook still
// waiting, changed's own (its release is written into its own tombstone), and, while the pod is
// deleted, the preStop hooks of running containers, which wait for their dependents' exits.
func (o *out) wakeFor(p *Pod, changed *Attempt) {
	for _, name := range p.names() {
		a := p.Attempts[name]
		if !a.Wakes || a.TS.ExitedAt != nil || (a != changed && a.TS.ReleasedAt != nil && !p.Terminating) {
			continue
		}
		o.add(Wake{name})
	}
}

func (p *Pod) allMet(deps []condition.Dependency) bool {
	for _, d := range deps {
		if condition.Evaluate(d.Condition, p.state(d.Container)) != condition.Met {
			return false
		}
	}
	return true
}

// anyFailed reports whether a dependency of a can no longer be met by its current attempt.
func (p *Pod) anyFailed(a *Attempt) bool {
	for _, d := range a.TS.WaitsFor {
		if condition.Evaluate(d.Condition, p.state(d.Container)) == condition.Failed {
			return true
		}
	}
	return false
}

// missing describes the unmet dependencies of a, for logs and Events.
func (p *Pod) missing(a *Attempt) string {
	var out []string
	for _, d := range a.TS.WaitsFor {
		s := p.state(d.Container)
		if condition.Evaluate(d.Condition, s) == condition.Met {
			continue
		}
		if da := p.Attempts[d.Container]; da != nil && da.TS.PodSelector != "" {
			out = append(out, fmt.Sprintf("no pod matching %s is %s", da.TS.PodSelector, d.Condition))
			continue
		}
		out = append(out, condition.Describe(d, s))
	}
	return strings.Join(out, "; ")
}

func (p *Pod) state(container string) condition.State {
	if a := p.Attempts[container]; a != nil {
		return a.TS.State()
	}
	return condition.State{}
}

func (p *Pod) names() []string {
	names := make([]string, 0, len(p.Attempts))
	for n := range p.Attempts {
		names = append(names, n)
	}
	sort.Strings(names)
	return names
}

// Describe lists a hold's dependencies for people: "db (ready), pod(app=mysql):ready".
func Describe(h *decl.Hold) string {
	if h == nil {
		return ""
	}
	onPods := map[string]string{}
	for _, d := range h.Pods {
		onPods[d.Name] = d.String()
	}
	var out []string
	for _, d := range h.After {
		if s, ok := onPods[d.Container]; ok {
			out = append(out, s)
		} else {
			out = append(out, fmt.Sprintf("%s (%s)", d.Container, d.Condition))
		}
	}
	return strings.Join(out, ", ")
}

// WaitsFor formats dependencies for logs.
func WaitsFor(deps []condition.Dependency) []string {
	out := make([]string, len(deps))
	for i, d := range deps {
		out[i] = d.String()
	}
	return out
}

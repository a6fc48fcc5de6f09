// Package podstate is podorder's per-pod state machine, and the only place that decides. Facts come
// in as values, captured when they happen — what this node's podorder can do for the pod (Node), the
// pod's spec and kubelet's readiness as the API shows them (Observation), a container attempt as
// the runtime creates, starts and stops it — and so do events: Added, Starting, Started, Exited,
// ProbePassed, Observed, PodDependencyChanged, a timer's end. Effects come out: write a tombstone
// (and wake the hooks that read it), record an Event, log, start or end a probe, take a handle on a
// process, signal it, arm a timer. Admit decides, for the plugin and for `podorder explain` alike,
// whether and how a new container is held, or refuses it. The package does no I/O, reads no clock
// (time is an input) and takes no locks: the NRI shell in package plugin owns the lock, turns
// runtime calls and callbacks into events, and carries out the effects in order, so a sequence of
// events can be replayed and fuzzed on its own.
//
// Every rule lives here once. A container is released only before its hold's deadline, so that its
// hook, which reads the tombstones once more at its own later deadline, always obeys; it is ready only
// once released and its readiness sources say so; it is stopped only while its own process runs.
package podstate

import (
	"fmt"
	"strings"
	"syscall"
	"time"

	"github.com/podorder/podorder/hooks/dependency"
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
	ReasonSignalRefused    = "PodorderReadinessRefused"
	ReasonUnheld           = "PodorderUnheld"
	ReasonStopping         = "PodorderStopping"
	ReasonStopped          = "PodorderStopped"
	// ReasonDeclarationWarning is a declaration podorder obeys that will likely bite at runtime.
	ReasonDeclarationWarning = "PodorderDeclarationWarning"
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
	TS       *tombstone.Tombstone
	Declared *decl.Declared
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
	// Signal is the readiness this attempt's own process gives (notify or file), when its container
	// declares one and a container of the pod waits for it to be ready; nil otherwise.
	Signal *decl.Signal
	// Signalling is set while the shell watches for the signal (WatchSignal until EndSignal).
	Signalling bool
	// SignalRefused is set when the shell cannot watch for the signal: readiness then comes from
	// the other sources, as for a refused probe, rather than never.
	SignalRefused bool
	// SignalledAt is when the signal was seen: a READY=1 from a process of this attempt, or the
	// path existing in its mount namespace. Not in the tombstone: ReadyAt is.
	SignalledAt *time.Time
	// signalEnded is set once EndSignal was asked for a.
	signalEnded bool
	// pid is the attempt's process as the runtime started it, which the signal is checked against.
	pid uint32
	// Wakes is set when the container has a wake FIFO: it is held, or others wait for it (its preStop
	// hook waits for them while the pod is deleted).
	Wakes bool
	// Grace is the pod's terminationGracePeriodSeconds, as kubelet passed it to this container.
	Grace time.Duration
	// Stop is podorder's stop of this attempt in progress; nil when none.
	Stop *Stop
	// admitted is set on an attempt Admit decided, as opposed to one found at a resynchronization.
	admitted bool
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
	// pending is set while the signal waits for the runtime's start to return.
	pending bool
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
	// Node is what podorder on this node can do for the pod.
	Node Node
	// Spec maps each container of the pod's spec to what the API shows of it; nil until it does.
	Spec map[string]decl.Container
	// condition is the pod condition last asked for; nil before the first.
	condition *PodCondition
	// Timeline is what happened to the pod's attempts, in event order, bounded (`podorder timeline`).
	Timeline Timeline
	// exitCodes are the exit codes of the pod's terminated containers by runtime ID, as the
	// Kubernetes API last showed them: an exit podorder missed while away is read here.
	exitCodes map[string]int32
}

// New returns the state of a pod with no attempts yet, declaring d, on a node that can do what
// node says. spec is the pod's spec when the API already shows it, else nil (Observed brings it).
// The declarations are checked against spec's containers, or, without it, against lastApplied's:
// NRI itself never lists them.
func New(uid, namespace, name string, d *decl.Pod, node Node, spec, lastApplied []decl.Container) *Pod {
	p := &Pod{UID: uid, Namespace: namespace, Name: name, Ref: namespace + "/" + name, Decl: d,
		Attempts: map[string]*Attempt{}, Node: node}
	switch {
	case spec != nil:
		p.Spec = specOf(spec)
		d.CheckContainers(spec)
	case lastApplied != nil:
		d.CheckContainers(lastApplied)
	}
	return p
}

// Current returns the newest attempt of container if it has the runtime ID id, else nil: an event of
// an older attempt changes nothing.
func (p *Pod) Current(container, id string) *Attempt {
	if a := p.Attempts[container]; a != nil && a.TS.ID == id {
		return a
	}
	return nil
}

// Describe lists a hold's dependencies for people: "db (ready), pod(app=mysql):ready".
func Describe(h *decl.Declared) string {
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
func WaitsFor(deps []dependency.Dependency) []string {
	out := make([]string, len(deps))
	for i, d := range deps {
		out[i] = d.String()
	}
	return out
}

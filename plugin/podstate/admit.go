package podstate

import (
	"fmt"
	"log/slog"
	"strings"
	"time"

	"github.com/podorder/podorder/hooks/tombstone"
	"github.com/podorder/podorder/plugin/decl"
)

// Node is what podorder on this node can do for a pod: facts the shell captures once, when it first
// sees the pod, so that every decision about the pod is made here from values.
type Node struct {
	// Probes is set when podorder runs probes of its own.
	Probes bool
	// HostNetwork is set when the pod has no network namespace of its own: it uses the node's.
	HostNetwork bool
	// ProbeHostNetwork is set when podorder runs in the node's network namespace and was allowed to
	// probe host-network pods from there.
	ProbeHostNetwork bool
	// API is set when podorder has the Kubernetes API: kubelet's readiness is then a source.
	API bool
	// PodWatches is set when podorder can watch other pods, for dependencies on them.
	PodWatches bool
	// CrossNamespace says which namespaces' pods may depend on pods of which other namespaces.
	CrossNamespace CrossNamespaceRules
	// StopWith is set when podorder can stop containers, for stop-with.
	StopWith bool
}

// reachable reports whether podorder can run a check from inside the pod's network.
func (n Node) reachable() bool { return !n.HostNetwork || n.ProbeHostNetwork }

// CrossNamespaceRules lists which namespaces may depend on pods of which others: a dependency of a
// pod in namespace S on pods in namespace T needs the rule S → T (or * → T). A rule names both ends
// because watching another namespace's pods discloses their readiness: the owner of T says who may.
type CrossNamespaceRules map[string]map[string]bool

// AnySource is the source of a rule that lets every namespace depend on a target.
const AnySource = "*"

// ParseCrossNamespaceRules reads "source=target,*=shared".
func ParseCrossNamespaceRules(v string) (CrossNamespaceRules, error) {
	rules := CrossNamespaceRules{}
	for _, item := range strings.Split(v, ",") {
		item = strings.TrimSpace(item)
		if item == "" {
			continue
		}
		src, dst, ok := strings.Cut(item, "=")
		src, dst = strings.TrimSpace(src), strings.TrimSpace(dst)
		if !ok || src == "" || dst == "" || dst == AnySource {
			return nil, fmt.Errorf("cross-namespace rule %q: write <source namespace>=<target namespace>, e.g. team-a=shared, or *=%s to let every namespace depend on pods of %s",
				item, item, item)
		}
		if rules[src] == nil {
			rules[src] = map[string]bool{}
		}
		rules[src][dst] = true
	}
	return rules, nil
}

// Allows reports whether pods of namespace source may depend on pods of namespace target.
func (r CrossNamespaceRules) Allows(source, target string) bool {
	return source == target || r[source][target] || r[AnySource][target]
}

// Created is a container attempt as the runtime creates it: the facts of NRI CreateContainer.
type Created struct {
	Name, ID string
	// Attempt is kubelet's restart count of the container.
	Attempt uint32
	At      time.Time
	// Grace is the pod's terminationGracePeriodSeconds, as kubelet passed it to the container.
	Grace time.Duration
}

// Admission is podorder's decision on a new container attempt.
type Admission struct {
	// A is the new attempt, for Added once its tombstone is written.
	A *Attempt
	// Mounts is set when the container gets the hook, the pod's store and its own wake directory:
	// it is held (its startContainer hook waits), or others wait for it (its preStop hook waits for
	// them while the pod is deleted).
	Mounts bool
	// Watch lists the dependencies on other pods the shell must watch for a held attempt.
	Watch []decl.PodDependency
	// Notify is set when the container gets a notify socket of its own (its NOTIFY_SOCKET): its
	// readiness is podorder.dev/readiness.<c>: notify and a container of the pod waits for it to
	// be ready. If the shell cannot make one, SignalRefused says so.
	Notify bool
}

// Admit decides on a new attempt of a container: what it waits for, whether it is held, whether it
// gets the hook's mounts — or refuses it with a message for the pod's owner, which fails its
// creation. It changes nothing: Added makes the attempt the container's newest. `podorder explain`
// asks the same question of manifests.
func (p *Pod) Admit(c Created) (Admission, error) {
	hold, err := p.Decl.For(c.Name)
	if err == nil && hold != nil {
		err = p.refusal(c.Name, hold)
	}
	if err != nil {
		return Admission{}, err
	}
	held := hold != nil && len(hold.After) > 0
	a := p.attempt(c, hold, held)
	a.admitted = true
	adm := Admission{A: a, Mounts: a.Wakes, Notify: a.Signal != nil && a.Signal.Kind == decl.ReadinessNotify}
	if held {
		adm.Watch = hold.Pods
	}
	return adm, nil
}

// Refused is the effects of a refusal by Admit: one log line and a Warning Event on the pod.
func Refused(container string, err error) []Effect {
	return []Effect{
		Log{Level: slog.LevelWarn, Container: container, Msg: "rejected", Args: []any{"reason", err.Error()}},
		Record{Warning: true, Reason: ReasonRejected, Message: err.Error()},
	}
}

// refusal is why this node cannot honour what a container declares, nil when it can.
func (p *Pod) refusal(name string, hold *decl.Declared) error {
	for _, d := range hold.Pods {
		if err := p.podDependencyRefusal(d); err != nil {
			return err
		}
	}
	if hold.Probe != nil && !p.Node.reachable() {
		return fmt.Errorf("%s%s.%s cannot be run for a hostNetwork pod: podorder runs in a network namespace of its own, not the node's. "+
			"Drop the probe key and give %s a readinessProbe (podorder follows kubelet's readiness), or run podorder with --probe-host-network "+
			"if it runs in the node's network namespace", decl.Domain, decl.KindProbe, name, name)
	}
	if len(hold.StopWith) > 0 && !p.Node.StopWith {
		return fmt.Errorf("%s%s.%s needs podorder to stop containers, and this podorder cannot: it runs with --stop-with=false "+
			"(the chart's stopWith=false, which drops hostPID and CAP_KILL); ask the node's operator to enable it, or drop the key", decl.Domain, decl.KindStopWith, name)
	}
	return nil
}

// podDependencyRefusal refuses a dependency on other pods that this node cannot or may not watch.
func (p *Pod) podDependencyRefusal(d decl.PodDependency) error {
	if !p.Node.PodWatches {
		return fmt.Errorf("%s needs the Kubernetes API, and this podorder has none: run it with NODE_NAME and API credentials (the DaemonSet does)", d)
	}
	if d.Namespace != "" && !p.Node.CrossNamespace.Allows(p.Namespace, d.Namespace) {
		return fmt.Errorf("%s: pods of namespace %s may not depend on pods of namespace %s; an operator allows it with podorder's --allow-cross-namespace=%s=%s",
			d, p.Namespace, d.Namespace, p.Namespace, d.Namespace)
	}
	return nil
}

// attempt builds the record of a new attempt of c; held says whether podorder's hook holds it.
func (p *Pod) attempt(c Created, hold *decl.Declared, held bool) *Attempt {
	created := c.At
	ts := &tombstone.Tombstone{Container: c.Name, ID: c.ID, Attempt: c.Attempt, CreatedAt: &created}
	if hold != nil && hold.Probe != nil {
		ts.Probe = hold.Probe.String()
	}
	if held {
		ts.WaitsFor = hold.After
		ts.HoldTimeout = tombstone.Duration(hold.Timeout)
	}
	a := &Attempt{TS: ts, Declared: hold, Wakes: held || p.Decl.DependedOn(c.Name), Grace: c.Grace}
	if hold != nil && hold.Signal != nil && p.Decl.WaitedReady(c.Name) {
		a.Signal = hold.Signal
	}
	return a
}

// Adopt is a container attempt the runtime created while podorder was away, found at a
// resynchronization: hooked says it carries podorder's hook (an earlier podorder injected it), ran
// that the runtime went past its creation. It returns the attempt, for Added once its tombstone is
// written, and the effects that follow that.
func (p *Pod) Adopt(c Created, hooked, ran bool) (*Attempt, []Effect) {
	hold, _ := p.Decl.For(c.Name)
	var o out
	if hold != nil && len(hold.After) > 0 && !hooked {
		// NRI creates a container without a plugin that was not registered, or that died during its
		// CreateContainer (even with the fail-closed validator, which already counted it present):
		// this one runs without waiting for its dependencies.
		o.log(slog.LevelWarn, c.Name, "created without podorder's hold while podorder was down or restarting: it started without waiting",
			"container_id", c.ID, "waits_for", WaitsFor(hold.After))
		o.record(true, ReasonUnheld, "container %s was created while podorder was not running and started without waiting for %s", c.Name, Describe(hold))
	}
	a := p.attempt(c, hold, hooked && hold != nil)
	if a.Signal != nil {
		// Its notify socket's reader, or the watch of its path, went with the daemon; a READY=1
		// sent meanwhile is lost. Its readiness comes from the other sources, as for a refused probe.
		a.SignalRefused = true
		o.log(slog.LevelWarn, c.Name, "readiness signal not watched after podorder restarted; readiness comes from kubelet, or from the release without the API",
			"readiness", a.Signal.String())
	}
	if a.TS.Held() && ran {
		// podorder wrote this attempt's tombstone before the runtime created it, so the store was
		// removed since: the hook, started already, has the old directory mounted.
		o.add(p.markBlind(a)...)
	}
	return a, o
}

// Loaded is a tombstone found in the pod's store for a container podorder does not know yet, after
// a restart of the daemon: it is what podorder decided before.
func (p *Pod) Loaded(ts *tombstone.Tombstone) {
	if p.Attempts[ts.Container] != nil {
		return
	}
	hold, _ := p.Decl.For(ts.Container)
	a := &Attempt{TS: ts, Declared: hold}
	if hold != nil && hold.Signal != nil && p.Decl.WaitedReady(ts.Container) {
		// Watched again once Resynced knows its process (resumeSignal).
		a.Signal = hold.Signal
	}
	p.Attempts[ts.Container] = a
}

// StandIn returns the synthetic stand-in for a dependency on other pods, for Added once its
// tombstone is written; nil when the pod has it already.
func (p *Pod) StandIn(d decl.PodDependency, now time.Time) *Attempt {
	if p.Attempts[d.Name] != nil {
		return nil
	}
	return &Attempt{TS: &tombstone.Tombstone{Container: d.Name, ID: d.Name, PodSelector: d.String(), CreatedAt: &now}}
}

// PodWatches lists the dependencies on other pods that held attempts wait for and this node may
// watch, after a resynchronization.
func (p *Pod) PodWatches() []decl.PodDependency {
	var out []decl.PodDependency
	for _, name := range p.names() {
		a := p.Attempts[name]
		if !a.Holding() || a.Declared == nil || len(a.Declared.Pods) == 0 || p.refusal(name, a.Declared) != nil {
			continue
		}
		out = append(out, a.Declared.Pods...)
	}
	return out
}

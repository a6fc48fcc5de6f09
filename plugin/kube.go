package plugin

import (
	"fmt"
	"strings"
	"time"

	"github.com/podorder/podorder/condition"
	"github.com/podorder/podorder/decl"
	"github.com/podorder/podorder/tombstone"
)

// Kubernetes is what podorder uses from the Kubernetes API when it has access to it.
type Kubernetes struct {
	// Specs gives the pod's container names, to reject unknown names at CreateContainer.
	Specs PodSpecs
	// Events records Kubernetes Events on pods.
	Events Recorder
	// Pods evaluates dependencies on other pods.
	Pods PodWatcher
}

// PodSpecs looks up a pod on this node by UID.
type PodSpecs interface {
	// Containers returns the pod's init and regular containers in spec order, false if unknown.
	Containers(podUID string) ([]decl.Container, bool)
	// HasReadinessProbe reports whether the container declares a readinessProbe; known is false
	// when the pod or container is not known.
	HasReadinessProbe(podUID, container string) (has, known bool)
}

// PodRef names a pod for an Event.
type PodRef struct{ Namespace, Name, UID string }

// Recorder records Events on pods (rate-limited and aggregated like kubelet's).
type Recorder interface {
	Event(pod PodRef, warning bool, reason, message string)
}

// PodWatcher tracks whether some pod matching a selector meets a condition.
type PodWatcher interface {
	// Watch calls update, from another goroutine, with whether at least one pod in namespace that
	// matches selector meets cond, once the answer is known and at every change, until stop.
	Watch(namespace, selector string, cond condition.Condition, update func(met bool)) (stop func())
}

// Event reasons, as `kubectl describe pod` shows them.
const (
	ReasonWaiting          = "PodorderWaiting"
	ReasonReleased         = "PodorderReleased"
	ReasonTimeout          = "PodorderTimeout"
	ReasonDependencyFailed = "PodorderDependencyFailed"
	ReasonRejected         = "PodorderRejected"
	ReasonProbeRefused     = "PodorderProbeRefused"
	ReasonUnheld           = "PodorderUnheld"
)

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

func (p *Plugin) event(pd *pod, warning bool, reason, format string, args ...any) {
	if p.cfg.Kube == nil || p.cfg.Kube.Events == nil {
		return
	}
	p.cfg.Kube.Events.Event(PodRef{Namespace: pd.namespace, Name: pd.name, UID: pd.uid}, warning, reason, fmt.Sprintf(format, args...))
}

// KubeletReady records that kubelet reports a container ready. containerID is the runtime's ID
// without the "containerd://" prefix; a status of an older attempt is ignored.
func (p *Plugin) KubeletReady(podUID, container, containerID string) {
	defer p.recoverCallback("kubelet readiness")
	p.mu.Lock()
	defer p.mu.Unlock()
	pd := p.pods[podUID]
	if pd == nil {
		return
	}
	m := pd.members[container]
	if m == nil || m.ts.ID != containerID || m.ts.KubeletReadyAt != nil || m.ts.ExitedAt != nil {
		return
	}
	now := p.now()
	m.ts.KubeletReadyAt = &now
	p.refreshReady(pd, m, now)
	p.write(pd, m)
	p.release(pd)
}

// refreshReady sets ReadyAt once m is released and every readiness source that applies has passed:
// its podorder probe if it has one, and kubelet's readiness when the API is available (kubelet
// calls a held container ready, so its word alone is not enough).
func (p *Plugin) refreshReady(pd *pod, m *member, now time.Time) {
	ts := m.ts
	if ts.ReadyAt != nil || ts.ReleasedAt == nil || ts.ExitedAt != nil {
		return
	}
	if p.probed(pd, m) && ts.ProbeReadyAt == nil {
		return
	}
	if p.needsKubeletReadiness(pd, ts.Container) && ts.KubeletReadyAt == nil {
		return
	}
	ts.ReadyAt = &now
	p.logger(pd, ts.Container).Info("ready", "after_release_ms", now.Sub(*ts.ReleasedAt).Milliseconds())
}

// needsKubeletReadiness reports whether kubelet's readiness of a container is one of its sources.
// For a container without a readinessProbe kubelet's "ready" only means "running", which podorder
// knows first and better (it knows the hold): waiting for kubelet's relist would only add latency.
// A container the API does not show yet is judged by kubelet, to be safe.
func (p *Plugin) needsKubeletReadiness(pd *pod, container string) bool {
	k := p.cfg.Kube
	if k == nil {
		return false
	}
	if k.Specs == nil {
		return true
	}
	has, known := k.Specs.HasReadinessProbe(pd.uid, container)
	return has || !known
}

// checkPodDependencies refuses dependencies on other pods that this daemon cannot or may not watch.
func (p *Plugin) checkPodDependencies(namespace string, hold *decl.Hold) error {
	for _, d := range hold.Pods {
		if p.cfg.Kube == nil || p.cfg.Kube.Pods == nil {
			return fmt.Errorf("%s needs the Kubernetes API, and this podorder has none: run it with NODE_NAME and API credentials (the DaemonSet does)", d)
		}
		if d.Namespace != "" && !p.cfg.CrossNamespace.Allows(namespace, d.Namespace) {
			return fmt.Errorf("%s: pods of namespace %s may not depend on pods of namespace %s; an operator allows it with podorder's --allow-cross-namespace=%s=%s",
				d, namespace, d.Namespace, namespace, d.Namespace)
		}
	}
	return nil
}

// watchPodDependencies makes a synthetic tombstone for each dependency of hold on other pods and keeps
// it in step with the matching pods.
func (p *Plugin) watchPodDependencies(pd *pod, hold *decl.Hold) error {
	for _, d := range hold.Pods {
		if pd.watches[d.Name] != nil {
			continue
		}
		if pd.members[d.Name] == nil {
			now := p.now()
			ts := &tombstone.Tombstone{Container: d.Name, ID: d.Name, PodSelector: d.String(), CreatedAt: &now}
			if err := p.replace(pd, &member{ts: ts}); err != nil {
				return err
			}
		}
		ns := d.Namespace
		if ns == "" {
			ns = pd.namespace
		}
		name, cond := d.Name, d.Condition
		pd.watches[name] = p.cfg.Kube.Pods.Watch(ns, d.Selector, cond, func(met bool) {
			defer p.recoverCallback("pod dependency")
			p.mu.Lock()
			defer p.mu.Unlock()
			if p.pods[pd.uid] != pd || pd.members[name] == nil {
				return
			}
			if p.setPodDependency(pd.members[name].ts, cond, met) {
				p.logger(pd, name).Info("pod dependency changed", "pod_selector", d.String(), "met", met)
				p.write(pd, pd.members[name])
				p.release(pd)
			}
		})
	}
	return nil
}

// setPodDependency makes a synthetic tombstone evaluate to Met for cond exactly when met, and
// reports whether it changed.
func (p *Plugin) setPodDependency(ts *tombstone.Tombstone, cond condition.Condition, met bool) bool {
	if (condition.Evaluate(cond, ts.State()) == condition.Met) == met {
		return false
	}
	ts.StartedAt, ts.ReleasedAt, ts.ReadyAt, ts.ExitedAt, ts.ExitCode = nil, nil, nil, nil, 0
	if met {
		now := p.now()
		ts.StartedAt, ts.ReleasedAt = &now, &now
		switch cond {
		case condition.Ready:
			ts.ReadyAt = &now
		case condition.Completed:
			ts.ExitedAt = &now
		}
	}
	return true
}

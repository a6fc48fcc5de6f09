package plugin

import (
	"fmt"
	"strings"
	"time"

	"github.com/podorder/podorder/hooks/tombstone"
	"github.com/podorder/podorder/plugin/decl"
	"github.com/podorder/podorder/plugin/kubeapi"
	"github.com/podorder/podorder/plugin/podstate"
)

// Kubernetes is what podorder uses from the Kubernetes API when it has access to it.
type Kubernetes struct {
	// Specs gives the pod's container names, to reject unknown names at CreateContainer.
	Specs kubeapi.PodSpecs
	// Events records Kubernetes Events on pods.
	Events kubeapi.Recorder
	// Pods evaluates dependencies on other pods.
	Pods kubeapi.PodWatcher
	// Conditions writes the pod condition podorder owns; nil leaves it unwritten.
	Conditions kubeapi.ConditionWriter
}

// Event reasons, as `kubectl describe pod` shows them; podstate decides most of them.
const (
	ReasonWaiting          = podstate.ReasonWaiting
	ReasonReleased         = podstate.ReasonReleased
	ReasonTimeout          = podstate.ReasonTimeout
	ReasonDependencyFailed = podstate.ReasonDependencyFailed
	ReasonRejected         = podstate.ReasonRejected
	ReasonProbeRefused     = podstate.ReasonProbeRefused
	ReasonUnheld           = podstate.ReasonUnheld
	ReasonStopping         = podstate.ReasonStopping
	ReasonStopped          = podstate.ReasonStopped
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
	p.cfg.Kube.Events.Event(kubeapi.PodRef{Namespace: pd.Namespace, Name: pd.Name, UID: pd.UID}, warning, reason, fmt.Sprintf(format, args...))
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
	a := pd.Current(container, containerID)
	// Every status update of the pod repeats its ready containers: most change nothing.
	if a == nil || a.TS.KubeletReadyAt != nil || a.TS.ExitedAt != nil {
		return
	}
	p.step(pd, func(now time.Time) []podstate.Effect { return pd.KubeletReady(a, now) })
}

// needsKubeletReadiness reports whether kubelet's readiness of a container is one of its sources.
// For a container without a readinessProbe kubelet's "ready" only means "running", which podorder
// knows first and better (it knows the hold): waiting for kubelet's relist would only add latency.
// A container the API does not show yet is judged by kubelet, to be safe.
func (p *Plugin) needsKubeletReadiness(podUID, container string) bool {
	k := p.cfg.Kube
	if k == nil {
		return false
	}
	if k.Specs == nil {
		return true
	}
	has, known := k.Specs.HasReadinessProbe(podUID, container)
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
		if pd.Attempts[d.Name] == nil {
			now := p.now()
			ts := &tombstone.Tombstone{Container: d.Name, ID: d.Name, PodSelector: d.String(), CreatedAt: &now}
			if err := p.add(pd, &podstate.Attempt{TS: ts}); err != nil {
				return err
			}
		}
		ns := d.Namespace
		if ns == "" {
			ns = pd.Namespace
		}
		name, cond := d.Name, d.Condition
		stop, err := p.cfg.Kube.Pods.Watch(ns, d.Selector, cond, func(met bool) {
			p.callback("pod dependency", pd, func(now time.Time) []podstate.Effect { return pd.PodDependency(name, cond, met, now) })
		})
		if err != nil {
			return fmt.Errorf("dependency %s: %w", d, err)
		}
		pd.watches[name] = stop
	}
	return nil
}

package plugin

import (
	"fmt"
	"time"

	"github.com/podorder/podorder/plugin/decl"
	"github.com/podorder/podorder/plugin/kubeapi"
	"github.com/podorder/podorder/plugin/podstate"
)

// Kubernetes is what podorder uses from the Kubernetes API when it has access to it.
type Kubernetes struct {
	// Specs gives the pod's containers: to reject unknown names at CreateContainer, and to know which
	// have a readinessProbe and whether podorder can run it.
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

func (p *Plugin) event(pd *pod, warning bool, reason, format string, args ...any) {
	if p.cfg.Kube == nil || p.cfg.Kube.Events == nil {
		return
	}
	p.cfg.Kube.Events.Event(kubeapi.PodRef{Namespace: pd.Namespace, Name: pd.Name, UID: pd.UID}, warning, reason, fmt.Sprintf(format, args...))
}

// watchPodDependencies makes a synthetic tombstone for each dependency on other pods and keeps it in
// step with the matching pods.
func (p *Plugin) watchPodDependencies(pd *pod, deps []decl.PodDependency) error {
	for _, d := range deps {
		if pd.watches[d.Name] != nil {
			continue
		}
		if a := pd.StandIn(d, p.now()); a != nil {
			if err := p.add(pd, a); err != nil {
				return err
			}
		}
		ns := d.Namespace
		if ns == "" {
			ns = pd.Namespace
		}
		name, cond := d.Name, d.Condition
		stop, err := p.cfg.Kube.Pods.Watch(ns, d.Selector, cond, func(met bool) {
			p.podEvent("pod dependency", pd.UID, pd, func(pd *pod, now time.Time) []podstate.Effect {
				return pd.PodDependencyChanged(name, cond, met, now)
			})
		})
		if err != nil {
			return fmt.Errorf("dependency %s: %w", d, err)
		}
		pd.watches[name] = stop
	}
	return nil
}

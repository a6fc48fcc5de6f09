// Package kubeapi names what the node daemon uses from the Kubernetes API: a pod's reference, its
// spec as the node's informer knows it, Events, other pods' conditions and podorder's own pod
// condition. The NRI shell (package plugin) consumes these interfaces and package kube implements
// them; they sit in this leaf so that kube never imports the shell, and so the offline
// `podorder explain`, which uses kube, links nothing of containerd.
package kubeapi

import (
	"github.com/podorder/podorder/hooks/dependency"
	"github.com/podorder/podorder/plugin/decl"
	"github.com/podorder/podorder/plugin/podstate"
)

// PodRef names a pod for an Event.
type PodRef struct{ Namespace, Name, UID string }

// ConditionWriter writes podorder's pod condition through the API, asynchronously.
type ConditionWriter interface {
	// Set records the condition a pod should carry and returns at once; the newest wins.
	Set(pod PodRef, c podstate.PodCondition)
	// Forget drops a pod that is gone.
	Forget(podUID string)
}

// PodSpecs looks up a pod on this node by UID.
type PodSpecs interface {
	// Containers returns the pod's init and regular containers in spec order, with what decides
	// their readiness; false if unknown.
	Containers(podUID string) ([]decl.Container, bool)
	// Status returns what the API shows of the pod now; false if unknown.
	Status(podUID string) (podstate.Observation, bool)
}

// Recorder records Events on pods (rate-limited and aggregated like kubelet's).
type Recorder interface {
	Event(pod PodRef, warning bool, reason, message string)
}

// PodWatcher tracks whether some pod matching a selector meets a condition.
type PodWatcher interface {
	// Watch calls update, from another goroutine, with whether at least one pod in namespace that
	// matches selector meets cond, once the answer is known and at every change, until stop. It
	// refuses, with a message for the pod's owner, a selector it cannot serve within its bounds.
	Watch(namespace, selector string, cond dependency.Condition, update func(met bool)) (stop func(), err error)
}

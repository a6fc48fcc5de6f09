// Package kube is podorder's link to the Kubernetes API: a node-scoped pod informer that feeds
// kubelet's container readiness into the plugin and answers "which containers does this pod have",
// one shared pod informer per namespace for dependencies on other pods, and an Event recorder.
package kube

import (
	"context"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/kubernetes/scheme"
	typedcorev1 "k8s.io/client-go/kubernetes/typed/core/v1"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/cache"
	"k8s.io/client-go/tools/clientcmd"
	"k8s.io/client-go/tools/record"

	"github.com/podorder/podorder/hooks/dependency"
	"github.com/podorder/podorder/plugin/decl"
	"github.com/podorder/podorder/plugin/kubeapi"
	"github.com/podorder/podorder/plugin/podstate"
	"github.com/podorder/podorder/plugin/preflight"
)

// Observer receives what the API shows of the node's pods: each update (spec, kubelet's readiness,
// deletion), and pods gone; *plugin.Plugin (the NRI shell) implements it.
type Observer interface {
	PodObserved(podUID string, obs podstate.Observation)
	PodDeleted(podUID string)
}

// Source is podorder's view of the Kubernetes API.
type Source struct {
	client   kubernetes.Interface
	nodeName string
	log      *slog.Logger
	recorder record.EventRecorder
	nodePods cache.SharedIndexInformer

	mu       sync.Mutex
	selected map[string]*namespacePods // by namespace
	ctx      context.Context
}

// What the shell consumes; checked here, since kube does not import the shell.
var (
	_ kubeapi.PodSpecs        = (*Source)(nil)
	_ kubeapi.Recorder        = (*Source)(nil)
	_ kubeapi.PodWatcher      = (*Source)(nil)
	_ kubeapi.ConditionWriter = (*Conditions)(nil)
	_ preflight.Events        = (*Source)(nil)
)

const byUID = "uid"

// Config returns the API client configuration: kubeconfig when given, else in-cluster.
func Config(kubeconfig string) (*rest.Config, error) {
	if kubeconfig != "" {
		c, err := clientcmd.BuildConfigFromFlags("", kubeconfig)
		if err != nil {
			return nil, fmt.Errorf("load kubeconfig %s: %w", kubeconfig, err)
		}
		return c, nil
	}
	c, err := rest.InClusterConfig()
	if err != nil {
		return nil, fmt.Errorf("no --kubeconfig and not in a cluster: %w", err)
	}
	return c, nil
}

// New connects to the API and prepares informers for the pods of nodeName.
func New(cfg *rest.Config, nodeName string, log *slog.Logger) (*Source, error) {
	cfg.UserAgent = "podorder/" + nodeName
	client, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		return nil, fmt.Errorf("create Kubernetes client: %w", err)
	}
	nodePods, err := nodePodInformer(client, nodeName)
	if err != nil {
		return nil, err
	}
	broadcaster := record.NewBroadcaster()
	broadcaster.StartRecordingToSink(&typedcorev1.EventSinkImpl{Interface: client.CoreV1().Events("")})
	return &Source{
		client:   client,
		nodeName: nodeName,
		log:      log,
		recorder: broadcaster.NewRecorder(scheme.Scheme, corev1.EventSource{Component: "podorder", Host: nodeName}),
		nodePods: nodePods,
		selected: map[string]*namespacePods{},
	}, nil
}

// nodePodInformer returns the informer of the pods of nodeName, indexed by UID and holding only
// what stripNodePod keeps.
func nodePodInformer(client kubernetes.Interface, nodeName string) (cache.SharedIndexInformer, error) {
	factory := informers.NewSharedInformerFactoryWithOptions(client, 0, informers.WithTweakListOptions(func(o *metav1.ListOptions) {
		o.FieldSelector = fields.OneTermEqualSelector("spec.nodeName", nodeName).String()
	}))
	nodePods := factory.Core().V1().Pods().Informer()
	if err := nodePods.SetTransform(stripNodePod); err != nil {
		return nil, fmt.Errorf("strip the pods of node %s in the cache: %w", nodeName, err)
	}
	if err := nodePods.AddIndexers(cache.Indexers{byUID: func(obj any) ([]string, error) {
		return []string{string(obj.(*corev1.Pod).UID)}, nil
	}}); err != nil {
		return nil, fmt.Errorf("index pods by UID: %w", err)
	}
	return nodePods, nil
}

// strippedMeta is the metadata every cached pod keeps: who it is, which version, and whether it is
// being deleted.
func strippedMeta(pod *corev1.Pod) metav1.ObjectMeta {
	return metav1.ObjectMeta{
		Name:              pod.Name,
		Namespace:         pod.Namespace,
		UID:               pod.UID,
		ResourceVersion:   pod.ResourceVersion,
		DeletionTimestamp: pod.DeletionTimestamp,
	}
}

// stripNodePod keeps what this package reads from the node's pods (names, the restart policies,
// init containers' startupProbe presence, readinessProbes with their ports, and kubelet's readiness per
// container ID), so that the cache costs a few hundred bytes per container whatever a tenant puts
// in its pod: managedFields, annotations, labels, env and volumes are dropped. Whoever makes
// ReadyContainers, PodContainers, findContainer or ReadinessProbe read more must keep it here too
// (TestStripNodePodKeepsWhatKubeReads). Anything else, such as a tombstone, passes through.
func stripNodePod(obj any) (any, error) {
	pod, ok := obj.(*corev1.Pod)
	if !ok || pod == nil {
		return obj, nil
	}
	out := &corev1.Pod{ObjectMeta: strippedMeta(pod)}
	out.Spec.RestartPolicy = pod.Spec.RestartPolicy
	out.Spec.InitContainers = stripContainers(pod.Spec.InitContainers)
	out.Spec.Containers = stripContainers(pod.Spec.Containers)
	out.Status.InitContainerStatuses = stripStatuses(pod.Status.InitContainerStatuses)
	out.Status.ContainerStatuses = stripStatuses(pod.Status.ContainerStatuses)
	return out, nil
}

func stripContainers(cs []corev1.Container) []corev1.Container {
	if len(cs) == 0 {
		return nil
	}
	out := make([]corev1.Container, len(cs))
	for i, c := range cs {
		out[i] = corev1.Container{Name: c.Name, RestartPolicy: c.RestartPolicy, ReadinessProbe: stripProbe(c.ReadinessProbe)}
		if c.StartupProbe != nil {
			// Only its presence is read.
			out[i].StartupProbe = &corev1.Probe{}
		}
		if c.ReadinessProbe != nil && len(c.Ports) > 0 {
			// Only a probe's named port is looked up in them.
			out[i].Ports = make([]corev1.ContainerPort, len(c.Ports))
			for j, p := range c.Ports {
				out[i].Ports[j] = corev1.ContainerPort{Name: p.Name, ContainerPort: p.ContainerPort}
			}
		}
	}
	return out
}

// stripProbe keeps what ReadinessProbe translates. An exec probe is kept as its kind alone, and
// headers beyond the number ReadinessProbe copies only need to show that there are too many.
func stripProbe(p *corev1.Probe) *corev1.Probe {
	if p == nil {
		return nil
	}
	out := &corev1.Probe{
		InitialDelaySeconds: p.InitialDelaySeconds,
		TimeoutSeconds:      p.TimeoutSeconds,
		SuccessThreshold:    p.SuccessThreshold,
	}
	switch h := p.ProbeHandler; {
	case h.TCPSocket != nil:
		out.TCPSocket = &corev1.TCPSocketAction{Port: h.TCPSocket.Port, Host: h.TCPSocket.Host}
	case h.HTTPGet != nil:
		g := *h.HTTPGet
		g.HTTPHeaders = nil
		if n := min(len(h.HTTPGet.HTTPHeaders), maxProbeHeaders+1); n > 0 {
			g.HTTPHeaders = append([]corev1.HTTPHeader(nil), h.HTTPGet.HTTPHeaders[:n]...)
		}
		out.HTTPGet = &g
	case h.GRPC != nil:
		g := *h.GRPC
		out.GRPC = &g
	case h.Exec != nil:
		out.Exec = &corev1.ExecAction{}
	}
	return out
}

func stripStatuses(ss []corev1.ContainerStatus) []corev1.ContainerStatus {
	if len(ss) == 0 {
		return nil
	}
	out := make([]corev1.ContainerStatus, len(ss))
	for i, cs := range ss {
		out[i] = corev1.ContainerStatus{Name: cs.Name, Ready: cs.Ready, ContainerID: cs.ContainerID,
			State:                corev1.ContainerState{Running: stripRunning(cs.State.Running), Terminated: stripTerminated(cs.State.Terminated)},
			LastTerminationState: corev1.ContainerState{Terminated: stripTerminated(cs.LastTerminationState.Terminated)}}
	}
	return out
}

// stripRunning keeps that a container runs: then its last state is not its newest attempt.
func stripRunning(r *corev1.ContainerStateRunning) *corev1.ContainerStateRunning {
	if r == nil {
		return nil
	}
	return &corev1.ContainerStateRunning{}
}

// stripTerminated keeps of a terminated state what ExitedContainers reads: the attempt and its code
// (not the message, up to 4 KiB per container).
func stripTerminated(t *corev1.ContainerStateTerminated) *corev1.ContainerStateTerminated {
	if t == nil {
		return nil
	}
	return &corev1.ContainerStateTerminated{ContainerID: t.ContainerID, ExitCode: t.ExitCode, StartedAt: t.StartedAt, FinishedAt: t.FinishedAt}
}

// Start runs the node's pod informer, feeding kubelet's readiness into r, and waits up to timeout for
// its first list so that CreateContainer can check names against the pod spec.
func (s *Source) Start(ctx context.Context, r Observer, timeout time.Duration) error {
	s.ctx = ctx
	if _, err := s.nodePods.AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc: func(obj any) {
			if pod, ok := obj.(*corev1.Pod); ok {
				r.PodObserved(string(pod.UID), Observe(pod))
			}
		},
		// A pod's containers never change: the spec comes with its first sight (here, or from the
		// cache when the runtime creates its first container), so the frequent status updates carry
		// only kubelet's readiness and the deletion, without translating every readinessProbe again.
		UpdateFunc: func(_, obj any) {
			if pod, ok := obj.(*corev1.Pod); ok {
				r.PodObserved(string(pod.UID), ObserveStatus(pod))
			}
		},
		DeleteFunc: func(obj any) {
			if d, ok := obj.(cache.DeletedFinalStateUnknown); ok {
				obj = d.Obj
			}
			if pod, ok := obj.(*corev1.Pod); ok {
				r.PodDeleted(string(pod.UID))
			}
		},
	}); err != nil {
		return fmt.Errorf("watch pods of node %s: %w", s.nodeName, err)
	}
	go s.nodePods.Run(ctx.Done())
	syncCtx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	if !cache.WaitForCacheSync(syncCtx.Done(), s.nodePods.HasSynced) {
		return fmt.Errorf("pods of node %s not listed within %s; check RBAC (get/list/watch pods) and the API server", s.nodeName, timeout)
	}
	return nil
}

// Observe captures what podorder's pod state takes from one update of a pod.
func Observe(pod *corev1.Pod) podstate.Observation {
	o := ObserveStatus(pod)
	o.Containers = PodContainers(pod)
	return o
}

// ObserveStatus captures one update of a pod without its spec: kubelet's readiness and the deletion.
func ObserveStatus(pod *corev1.Pod) podstate.Observation {
	return podstate.Observation{Ready: ReadyContainers(pod), Exited: ExitedContainers(pod), Terminating: pod.DeletionTimestamp != nil}
}

// ExitedContainers lists the container attempts of pod that kubelet reports terminated, now or as
// their last state, with their runtime IDs and exit codes: how podorder learns the code of an exit
// that happened while it was away.
func ExitedContainers(pod *corev1.Pod) []podstate.ExitedContainer {
	var out []podstate.ExitedContainer
	for _, list := range [][]corev1.ContainerStatus{pod.Status.InitContainerStatuses, pod.Status.ContainerStatuses} {
		for _, cs := range list {
			// The newest attempt is the state's; a container waiting to be restarted (a back-off)
			// has none, and its last state is its newest attempt then.
			newest := cs.State.Terminated
			if newest == nil && cs.State.Running == nil {
				newest = cs.LastTerminationState.Terminated
			}
			for _, term := range []*corev1.ContainerStateTerminated{cs.State.Terminated, cs.LastTerminationState.Terminated} {
				if term == nil || term.ContainerID == "" {
					continue
				}
				out = append(out, podstate.ExitedContainer{Name: cs.Name, ID: runtimeID(term.ContainerID), Code: term.ExitCode,
					Current: term == newest, StartedAt: term.StartedAt.Time, FinishedAt: term.FinishedAt.Time})
			}
		}
	}
	return out
}

// runtimeID is a container ID without its runtime's prefix ("containerd://").
func runtimeID(id string) string {
	if _, bare, ok := strings.Cut(id, "://"); ok {
		return bare
	}
	return id
}

// ReadyContainers lists the containers of pod that kubelet reports ready, with the container ID
// without its runtime prefix, so that readiness is matched to one attempt, never by name alone.
func ReadyContainers(pod *corev1.Pod) []podstate.ReadyContainer {
	var out []podstate.ReadyContainer
	for _, list := range [][]corev1.ContainerStatus{pod.Status.InitContainerStatuses, pod.Status.ContainerStatuses} {
		for _, cs := range list {
			if !cs.Ready || cs.ContainerID == "" {
				continue
			}
			out = append(out, podstate.ReadyContainer{Name: cs.Name, ID: runtimeID(cs.ContainerID)})
		}
	}
	return out
}

// Synced reports whether the node's pod informer has listed the API's pods.
func (s *Source) Synced() bool { return s.nodePods.HasSynced() }

// Client returns the API client, for the other writers of this package.
func (s *Source) Client() kubernetes.Interface { return s.client }

// nodePod returns a pod of this node from the informer's cache, or nil.
func (s *Source) nodePod(uid string) *corev1.Pod {
	objs, err := s.nodePods.GetIndexer().ByIndex(byUID, uid)
	if err != nil || len(objs) == 0 {
		return nil
	}
	return objs[0].(*corev1.Pod)
}

// Status returns what the API shows of a pod of this node now (its spec, kubelet's readiness and
// terminated containers, its deletion): after a resynchronization, what changed while podorder
// was away.
func (s *Source) Status(podUID string) (podstate.Observation, bool) {
	pod := s.nodePod(podUID)
	if pod == nil {
		return podstate.Observation{}, false
	}
	return Observe(pod), true
}

// Containers implements kubeapi.PodSpecs from the node's pod informer.
func (s *Source) Containers(podUID string) ([]decl.Container, bool) {
	pod := s.nodePod(podUID)
	if pod == nil {
		return nil, false
	}
	return PodContainers(pod), true
}

// PodContainers lists a pod's containers in spec order, init containers first, with how kubelet
// runs each and what decides its readiness.
func PodContainers(pod *corev1.Pod) []decl.Container {
	var out []decl.Container
	for _, c := range pod.Spec.InitContainers {
		role := decl.Init
		if c.RestartPolicy != nil && *c.RestartPolicy == corev1.ContainerRestartPolicyAlways {
			role = decl.Sidecar
		}
		c := container(pod, c.Name, role, c.StartupProbe != nil, c.ReadinessProbe != nil)
		c.Restarts = role == decl.Sidecar
		out = append(out, c)
	}
	restarts := pod.Spec.RestartPolicy == "" || pod.Spec.RestartPolicy == corev1.RestartPolicyAlways
	for _, c := range pod.Spec.Containers {
		c := container(pod, c.Name, decl.Regular, false, c.ReadinessProbe != nil)
		c.Restarts = restarts
		out = append(out, c)
	}
	return out
}

func container(pod *corev1.Pod, name string, role decl.Role, startup, readiness bool) decl.Container {
	c := decl.Container{Name: name, Role: role, StartupProbe: startup, ReadinessProbe: readiness}
	if readiness {
		c.ReadinessCheck, c.KubeletOnly = ReadinessProbe(pod, name)
	}
	return c
}

// Event implements kubeapi.Recorder. The message is capped to MaxMessageBytes; the recorder's
// spam filter, keyed by the pod, keeps one pod's Events from using up the others' share.
func (s *Source) Event(p kubeapi.PodRef, warning bool, reason, message string) {
	ref := &corev1.ObjectReference{Kind: "Pod", APIVersion: "v1", Namespace: p.Namespace, Name: p.Name, UID: types.UID(p.UID)}
	typ := corev1.EventTypeNormal
	if warning {
		typ = corev1.EventTypeWarning
	}
	s.recorder.Event(ref, typ, reason, capMessage(message))
}

// NodeEvent implements preflight.Events: an Event on this node's Node object, in the default
// namespace, with the node's name as its UID as kubelet records them, so that `kubectl describe
// node` lists it.
func (s *Source) NodeEvent(warning bool, reason, message string) {
	ref := &corev1.ObjectReference{Kind: "Node", APIVersion: "v1", Name: s.nodeName, UID: types.UID(s.nodeName)}
	typ := corev1.EventTypeNormal
	if warning {
		typ = corev1.EventTypeWarning
	}
	s.recorder.Event(ref, typ, reason, capMessage(message))
}

// PodMeets decides one condition for one pod, for dependencies on other pods: ready is the pod's
// Ready condition, completed is phase Succeeded, started is every container running or started.
func PodMeets(pod *corev1.Pod, cond dependency.Condition) bool {
	if pod.DeletionTimestamp != nil && cond != dependency.Completed {
		return false
	}
	switch cond {
	case dependency.Ready:
		for _, c := range pod.Status.Conditions {
			if c.Type == corev1.PodReady {
				return c.Status == corev1.ConditionTrue
			}
		}
		return false
	case dependency.Completed:
		return pod.Status.Phase == corev1.PodSucceeded
	case dependency.Started:
		if pod.Status.Phase != corev1.PodRunning || len(pod.Status.ContainerStatuses) < len(pod.Spec.Containers) {
			return false
		}
		for _, cs := range pod.Status.ContainerStatuses {
			if cs.State.Running == nil && (cs.Started == nil || !*cs.Started) {
				return false
			}
		}
		return true
	}
	return false
}

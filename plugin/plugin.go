// Package plugin is podorder's NRI shell: thin handlers that validate a container's declarations,
// return the mounts and hook that hold it, and turn containerd's container events — and the
// callbacks of probes, the Kubernetes API and timers, through one entry point — into events of the
// pod's state machine (package podstate), whose effects it then carries out: tombstone writes and
// wake-ups, Events, probes, signals, timers. It owns the one lock. No handler blocks: holding
// happens in the hook, inside the container, after the runtime's start.
package plugin

import (
	"context"
	"fmt"
	"log/slog"
	"runtime/debug"
	"sort"
	"strconv"
	"sync"
	"time"

	"github.com/containerd/nri/pkg/api"
	"github.com/containerd/nri/pkg/stub"

	"github.com/podorder/podorder/hooks/tombstone"
	"github.com/podorder/podorder/plugin/decl"
	"github.com/podorder/podorder/plugin/hostnet"
	"github.com/podorder/podorder/plugin/podstate"
)

// Prober runs a node-local readiness check until it passes, then calls ready once. stop ends it. An
// error means the probe cannot run: the node's, the namespace's or the pod's probe capacity is used
// up. namespace and podUID name the pod the probe is for, which its capacity and its share of the
// prober's workers count by.
type Prober interface {
	StartPod(namespace, podUID, netns string, p *decl.Probe, ready func()) (stop func(), err error)
}

// Signals watches for the readiness containers' own processes give; package appready implements
// it. Each ready func is called at most once, from any goroutine.
type Signals interface {
	// OpenNotify binds a notify socket in dir, a directory of one container attempt of the pod.
	OpenNotify(podUID, dir string) (NotifySocket, error)
	// WatchFile calls ready once path exists in the mount namespace of process pid.
	WatchFile(podUID string, pid uint32, path string, ready func()) (stop func(), err error)
}

// NotifySocket is one container attempt's notify socket.
type NotifySocket interface {
	// Arm starts reading: the first READY=1 from a process of the attempt whose process is pid
	// calls ready.
	Arm(pid uint32, ready func()) error
	// Close ends the reading and removes the socket; it may be called more than once.
	Close()
}

// Config is what the plugin needs from the daemon's flags.
type Config struct {
	// HookBinary is the host path of the static hook, bind-mounted into held containers.
	HookBinary string
	// BlockingStartAfter is how long a held container's runtime start may take before podorder
	// concludes that the runtime runs startContainer hooks inside start (old runc) and says so.
	BlockingStartAfter time.Duration
	// Kube is the Kubernetes API access; nil when podorder runs without it.
	Kube *Kubernetes
	// CrossNamespace says which namespaces' pods may depend on pods of which other namespaces.
	CrossNamespace podstate.CrossNamespaceRules
	// ProbeHostNetwork says podorder runs in the node's network namespace, so that it can probe
	// host-network pods (which have no namespace of their own) from where it is.
	ProbeHostNetwork bool
	// NodeNetwork is the node's network namespace; a pod whose namespace is this one is a
	// host-network pod. The zero Identity (unknown) leaves only pods that name no namespace.
	NodeNetwork hostnet.Identity
	// Processes stops containers for stop-with; nil when podorder cannot (stop-with is then refused).
	Processes Processes
	// Signals watches for readiness given by containers' own processes (podorder.dev/readiness.<c>:
	// notify or file:<path>); nil refuses them, and such containers' readiness comes from kubelet.
	Signals Signals
	// Metrics receives what podorder measures; nil records nothing.
	Metrics Metrics
	// RuntimeConnected, when set, is told the runtime's name and version at each NRI connection
	// (the preflight judges them). It runs inside the handler: it must not block.
	RuntimeConnected func(runtime, version string)
	// RuntimeJudged, when set, is told the node's first finding of how the runtime starts a held
	// container, instead of the plugin logging it; seenAt names the pod and container. It runs
	// under the plugin's lock: it must not block.
	RuntimeJudged func(blocking bool, after time.Duration, seenAt string)
}

// Metrics receives podorder's measurements; package metrics implements it for Prometheus.
type Metrics interface {
	// Handled reports one NRI handler's time under the runtime's node-wide lock.
	Handled(event string, d time.Duration)
	// HoldEnded reports a hold's outcome and how long it lasted.
	HoldEnded(outcome string, held time.Duration)
	// Released reports the time from the event that met a hold to its release being written.
	Released(latency time.Duration)
	// StoreWriteFailed counts a failed tombstone write.
	StoreWriteFailed()
}

// Plugin holds podorder's state for the pods on this node that use podorder.
type Plugin struct {
	cfg    Config
	store  tombstone.Store
	prober Prober
	log    *slog.Logger
	now    func() time.Time

	// mu guards everything that follows; request, async and read take it.
	mu   sync.Mutex
	pods map[string]*pod // by pod UID
	// runtimeReported makes the runtime-behaviour finding a single log line.
	runtimeReported bool
	// finished holds the timelines of the last podstate.KeptTimelines pods removed, oldest first, so that a
	// pod that already started, failed or went can still be looked at.
	finished []podstate.TimelineReport
}

var (
	_ stub.ConfigureInterface          = (*Plugin)(nil)
	_ stub.SynchronizeInterface        = (*Plugin)(nil)
	_ stub.CreateContainerInterface    = (*Plugin)(nil)
	_ stub.StartContainerInterface     = (*Plugin)(nil)
	_ stub.PostStartContainerInterface = (*Plugin)(nil)
	_ stub.StopContainerInterface      = (*Plugin)(nil)
	_ stub.RemoveContainerInterface    = (*Plugin)(nil)
	_ stub.RemovePodInterface          = (*Plugin)(nil)
	_ stub.ShutdownInterface           = (*Plugin)(nil)
)

// New returns a plugin writing tombstones under store.
func New(cfg Config, store tombstone.Store, prober Prober, log *slog.Logger) *Plugin {
	if cfg.BlockingStartAfter == 0 {
		cfg.BlockingStartAfter = 2 * time.Second
	}
	return &Plugin{cfg: cfg, store: store, prober: prober, log: log, now: time.Now, pods: map[string]*pod{}}
}

// Configure logs which runtime podorder is attached to, and hands it to the preflight.
func (p *Plugin) Configure(_ context.Context, _, runtime, version string) (api.EventMask, error) {
	p.log.Info("connected to runtime", "runtime", runtime, "version", version)
	if p.cfg.RuntimeConnected != nil {
		p.cfg.RuntimeConnected(runtime, version)
	}
	return 0, nil
}

// Shutdown logs that the runtime is going away; podorder reconnects when it comes back.
func (p *Plugin) Shutdown(context.Context) {
	p.log.Info("runtime is shutting down; will reconnect")
}

// Synchronize rebuilds podorder's state from the runtime's pods and containers and the store, after
// a daemon or runtime restart, and removes the tombstones of pods that are gone.
func (p *Plugin) Synchronize(_ context.Context, pods []*api.PodSandbox, containers []*api.Container) ([]*api.ContainerUpdate, error) {
	return nil, p.request("Synchronize", nil, nil, func() error {
		p.synchronize(pods, containers)
		return nil
	})
}

// CreateContainer validates a container's declarations and, when it is held, returns the mounts and
// hook that hold it. A plain error fails the container's creation with podorder's message.
func (p *Plugin) CreateContainer(_ context.Context, sb *api.PodSandbox, c *api.Container) (adj *api.ContainerAdjustment, _ []*api.ContainerUpdate, err error) {
	err = p.request("CreateContainer", sb, c, func() (err error) {
		adj, err = p.createContainer(sb, c)
		return err
	})
	return adj, nil, err
}

// StartContainer notes when the runtime starts a held container: the daemon's release deadline
// counts from here, before the hook's own clock starts.
func (p *Plugin) StartContainer(_ context.Context, sb *api.PodSandbox, c *api.Container) error {
	return p.request("StartContainer", sb, c, func() error {
		p.containerEvent(sb, c, func(pd *pod, a *podstate.Attempt, now time.Time) []podstate.Effect { return pd.Starting(a, c.Pid, now) })
		return nil
	})
}

// PostStartContainer records that the runtime's start returned.
func (p *Plugin) PostStartContainer(_ context.Context, sb *api.PodSandbox, c *api.Container) error {
	return p.request("PostStartContainer", sb, c, func() error {
		p.containerEvent(sb, c, func(pd *pod, a *podstate.Attempt, now time.Time) []podstate.Effect { return pd.Started(a, now) })
		return nil
	})
}

// StopContainer records a container's death, whether it exited by itself or was stopped.
func (p *Plugin) StopContainer(_ context.Context, sb *api.PodSandbox, c *api.Container) ([]*api.ContainerUpdate, error) {
	return nil, p.request("StopContainer", sb, c, func() error {
		p.containerEvent(sb, c, func(pd *pod, a *podstate.Attempt, now time.Time) []podstate.Effect {
			return pd.Exited(a, c.ExitCode, c.StartedAt == 0, now)
		})
		return nil
	})
}

// RemoveContainer forgets a removed container; see removeContainer for why it matters.
func (p *Plugin) RemoveContainer(_ context.Context, sb *api.PodSandbox, c *api.Container) error {
	return p.request("RemoveContainer", sb, c, func() error {
		p.removeContainer(sb, c)
		return nil
	})
}

// RemovePodSandbox deletes the pod's tombstones and stops its probes.
func (p *Plugin) RemovePodSandbox(_ context.Context, sb *api.PodSandbox) error {
	return p.request("RemovePodSandbox", sb, nil, func() error {
		// kubelet makes a new sandbox for a pod whose sandbox died or whose creation failed, and
		// removes the old one later: that removal must not take the live pod's tombstones.
		if pd := p.pods[sb.Uid]; pd != nil && pd.sandbox != "" && pd.sandbox != sb.Id {
			p.log.Debug("an earlier sandbox of the pod was removed", "pod", pd.Ref, "sandbox", sb.Id, "current_sandbox", pd.sandbox)
			return nil
		}
		p.removePod(sb.Uid)
		return nil
	})
}

// PodObserved feeds an update of a pod from the Kubernetes API into its state: its spec, kubelet's
// readiness of its containers, its deletion.
func (p *Plugin) PodObserved(podUID string, obs podstate.Observation) {
	p.podEvent("pod update", podUID, nil, func(pd *pod, now time.Time) []podstate.Effect { return pd.Observed(obs, now) })
}

// PodDeleted removes the tombstones of a pod the Kubernetes API says is gone from the node, in case
// the runtime never reports its removal (containerd 2.4 does not, for pods from before its restart).
func (p *Plugin) PodDeleted(podUID string) {
	p.async("pod deletion", func() {
		if pd := p.pods[podUID]; pd != nil {
			p.log.Info("the Kubernetes API says the pod is gone; removing its tombstones", "pod", pd.Ref)
			p.removePod(podUID)
		}
	})
}

// Held counts the containers held right now, for the holds gauge.
func (p *Plugin) Held() (n int) {
	p.read(func() {
		for _, pd := range p.pods {
			for _, a := range pd.Attempts {
				if a.Holding() {
					n++
				}
			}
		}
	})
	return n
}

// Status is a snapshot of every pod podorder knows on this node, for `podorder status`.
func (p *Plugin) Status() (out []podstate.PodReport) {
	p.read(func() {
		now := p.now()
		out = make([]podstate.PodReport, 0, len(p.pods))
		for _, pd := range p.pods {
			out = append(out, pd.Snapshot(now))
		}
	})
	sort.Slice(out, func(i, j int) bool { return out[i].Pod < out[j].Pod })
	return out
}

// Timeline reports the timeline of the pod named ref ("namespace/name", or its UID): the pod that
// runs now, else the last one of that name removed.
func (p *Plugin) Timeline(ref string) (r podstate.TimelineReport, ok bool) {
	p.read(func() {
		for _, pd := range p.pods {
			if pd.Ref == ref || pd.UID == ref {
				r, ok = pd.TimelineAt(p.now()), true
				return
			}
		}
		for i := len(p.finished) - 1; i >= 0; i-- {
			if f := p.finished[i]; f.Pod == ref || f.UID == ref {
				r, ok = f, true
				return
			}
		}
	})
	return r, ok
}

// The plugin's three entry points, the only places that take its lock: request for the runtime's
// calls, async for every other source (probes, the API, timers), read for snapshots. Each pod event
// then goes through step.

// request runs one NRI call of the runtime under the lock: only for pods that use podorder (sb nil
// is a call about the whole node), with its time reported and a panic turned into this request's
// error alone.
func (p *Plugin) request(handler string, sb *api.PodSandbox, c *api.Container, do func() error) (err error) {
	defer p.handled(handler, time.Now())
	if sb != nil && !usesPodorder(sb) {
		return nil
	}
	defer p.recoverRequest(handler, sb, c, &err)
	p.mu.Lock()
	defer p.mu.Unlock()
	return do()
}

// async runs what an asynchronous source (a probe, the API, a timer) reports, under the lock, and
// keeps a panic in it from killing the daemon.
func (p *Plugin) async(what string, do func()) {
	defer p.recoverCallback(what)
	p.mu.Lock()
	defer p.mu.Unlock()
	do()
}

// read runs do under the lock, for a snapshot.
func (p *Plugin) read(do func()) {
	p.mu.Lock()
	defer p.mu.Unlock()
	do()
}

// containerEvent steps the pod of a runtime call with event for this exact container attempt; an
// event of an older attempt, or of a pod podorder does not know, changes nothing.
func (p *Plugin) containerEvent(sb *api.PodSandbox, c *api.Container, event func(pd *pod, a *podstate.Attempt, now time.Time) []podstate.Effect) {
	pd := p.pods[sb.Uid]
	if pd == nil {
		return
	}
	if a := pd.Current(c.Name, c.Id); a != nil {
		p.step(pd, func(now time.Time) []podstate.Effect { return event(pd, a, now) })
	}
}

// podEvent steps a pod with an event from an asynchronous source, unless the pod is gone by then:
// want, when set, is the pod the source was started for, which a new pod of the same UID is not.
func (p *Plugin) podEvent(what, podUID string, want *pod, event func(pd *pod, now time.Time) []podstate.Effect) {
	p.async(what, func() {
		pd := p.pods[podUID]
		if pd == nil || want != nil && pd != want {
			return
		}
		p.step(pd, func(now time.Time) []podstate.Effect { return event(pd, now) })
	})
}

// handled reports a handler's duration, from its start.
func (p *Plugin) handled(event string, start time.Time) {
	if p.cfg.Metrics != nil {
		p.cfg.Metrics.Handled(event, time.Since(start))
	}
}

// recoverRequest turns a panic in a handler into an error for that request alone: neither NRI's stub
// nor ttrpc recovers, and a dead daemon leaves every pod of the node unordered. It runs after the
// handler's own deferred unlock.
func (p *Plugin) recoverRequest(handler string, sb *api.PodSandbox, c *api.Container, err *error) {
	r := recover()
	if r == nil {
		return
	}
	pod, container := "", ""
	if sb != nil {
		pod = sb.Namespace + "/" + sb.Name
	}
	if c != nil {
		container = c.Name
	}
	p.log.Error("internal error: a handler panicked; only this request fails", "handler", handler,
		"pod", pod, "container", container, "panic", fmt.Sprint(r), "stack", string(debug.Stack()))
	*err = fmt.Errorf("podorder: internal error in %s for pod %s, container %s: %v; please report it with podorder's log", handler, pod, container, r)
}

// recoverCallback keeps a panic in an asynchronous callback (a probe, the API, a timer) from killing
// the daemon.
func (p *Plugin) recoverCallback(what string) {
	if r := recover(); r != nil {
		p.log.Error("internal error: a callback panicked", "callback", what, "panic", fmt.Sprint(r), "stack", string(debug.Stack()))
	}
}

// attemptOf reads kubelet's restart count, the CRI attempt number, from the container's annotations.
func attemptOf(c *api.Container) uint32 {
	n, _ := strconv.ParseUint(c.Annotations["io.kubernetes.container.restartCount"], 10, 32)
	return uint32(n)
}

// netnsOf returns the pod's network namespace path; host is true for host-network pods: those that
// name no network namespace of their own, and those whose path names the node's (judged by identity,
// not by path), so that podorder never probes from the node's network on a pod's behalf unless it
// was allowed to. A sandbox whose spec the runtime lost names no namespace at all, not even its
// own IPC or PID one: then the pod's network is unknown (an error), never the node's. containerd
// 2.4 sends such sandboxes for one whose RunPodSandbox its restart interrupted.
func netnsOf(sb *api.PodSandbox, node hostnet.Identity) (netns string, host bool, err error) {
	if sb.Linux == nil || len(sb.Linux.Namespaces) == 0 {
		return "", false, fmt.Errorf("the runtime names no namespace of pod sandbox %s (its spec is missing, as after an interrupted RunPodSandbox)", sb.Id)
	}
	for _, ns := range sb.Linux.Namespaces {
		if ns.Type == "network" {
			if node.NamedBy(ns.Path) {
				return "", true, nil
			}
			return ns.Path, false, nil
		}
	}
	return "", true, nil
}

// Package explain is `podorder explain`: offline, from manifests alone, it shows what podorder would
// do with each pod template — the order in which it starts the containers (the layers of the
// dependency graph), what decides their readiness, how long it holds them, whom stop-with stops,
// the order in which they stop when the pod is deleted, the readinessGate — and every problem
// podorder would reject at CreateContainer or that would bite at runtime. It needs no cluster, so it
// runs in CI pipelines before anything is applied. Every decision comes from decl and podstate, the
// daemon's own rules.
package explain

import (
	"fmt"
	"maps"
	"slices"
	"sort"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"

	"github.com/podorder/podorder/hooks/dependency"
	"github.com/podorder/podorder/plugin/decl"
	"github.com/podorder/podorder/plugin/kube"
	"github.com/podorder/podorder/plugin/podstate"
)

// Options is what explain cannot read from the manifests.
type Options struct {
	// Namespace is the namespace of objects whose manifest names none, as kubectl's context would
	// give them; empty means "default".
	Namespace string
	// CrossNamespace is the node's --allow-cross-namespace rules; none, as the DaemonSet ships it.
	CrossNamespace podstate.CrossNamespaceRules
}

// Workload is what podorder would do with one pod template found in the manifests. Its JSON form is
// `podorder explain -o json`, documented in docs/labels.md: fields are only ever added.
type Workload struct {
	// Name is "Kind/name".
	Name string `json:"name"`
	// Namespace is the object's namespace, or Options.Namespace when its manifest names none.
	Namespace string `json:"namespace"`
	// File is the manifest it was read from ("-": standard input); empty when not known.
	File string `json:"file,omitempty"`
	// UsesPodorder is set when the pod template has podorder.dev/ keys; without them podorder leaves
	// the pod alone and every other field is empty.
	UsesPodorder bool `json:"usesPodorder"`
	// Init lists the init containers, run by kubelet one at a time, in this order.
	Init []string `json:"init"`
	// Layers lists the regular containers by start layer: each waits only for containers of earlier
	// layers (or of other pods, or init containers). Containers podorder refuses are left out.
	Layers [][]string `json:"layers"`
	// NeverReleased lists the regular containers held until their timeout, again at every restart:
	// they wait, directly or through others, for a container podorder refuses.
	NeverReleased []string `json:"neverReleased"`
	// Waits maps each container that podorder holds to what it waits for.
	Waits map[string][]Dependency `json:"waits"`
	// Timeouts maps each container that podorder holds to the longest hold, a Go duration: then it
	// exits 255 and kubelet restarts it.
	Timeouts map[string]string `json:"timeouts"`
	// Readiness maps each container that others wait for to be ready to what decides its
	// readiness, as people read it.
	Readiness map[string]string `json:"readiness"`
	// StopWith lists the containers that podorder stops when others exit, in spec order.
	StopWith []StopBinding `json:"stopWith"`
	// ShutdownOrder is how the regular containers stop when the pod is deleted.
	ShutdownOrder Shutdown `json:"shutdownOrder"`
	// ReadinessGate says where the pod's podorder.dev/released readinessGate comes from:
	// GateInSpec, GateByPolicy, or empty for a pod without podorder keys.
	ReadinessGate string `json:"readinessGate"`
	// Errors are what podorder would reject; Warnings what would bite at runtime.
	Errors   []string `json:"errors"`
	Warnings []string `json:"warnings"`

	// sidecars and refused mark the native sidecars among Init and the containers podorder
	// refuses, for the graph (-o dot, -o svg).
	sidecars, refused map[string]bool
}

// Where the podorder.dev/released readinessGate comes from.
const (
	// GateInSpec: the pod template has it.
	GateInSpec = "spec"
	// GateByPolicy: daemonset/readiness.yaml adds it when the pod is created.
	GateByPolicy = "policy"
)

// Dependency is one thing a held container waits for: a container of the pod, or pods.
type Dependency struct {
	// Container is a container of the pod; empty for a dependency on pods.
	Container string `json:"container,omitempty"`
	// Pods is the selector of a dependency on other pods, "app=db" or "other-ns/app=db".
	Pods string `json:"pods,omitempty"`
	// Condition is started, ready or completed.
	Condition string `json:"condition"`
}

// StopBinding is one container that podorder stops when others exit (podorder.dev/stop-with).
type StopBinding struct {
	Container string `json:"container"`
	// When lists the exits that stop it; any one is enough.
	When []StopTrigger `json:"when"`
	// Signal is the stop's first signal; SIGKILL follows after Grace, a Go duration.
	Signal string `json:"signal"`
	Grace  string `json:"grace"`
	// GraceFrom is "stop-grace" (podorder.dev/stop-grace) or "pod" (terminationGracePeriodSeconds).
	GraceFrom string `json:"graceFrom"`
}

// StopTrigger is one exit that stops a bound container.
type StopTrigger struct {
	Container string `json:"container"`
	// On is exited (any code), succeeded (code 0) or failed (a non-zero code).
	On string `json:"on"`
}

// Shutdown is how the regular containers stop when the pod is deleted (decl.Shutdown).
type Shutdown struct {
	// Ordered is set when podorder's preStop orders anything; else kubelet stops every container at
	// once.
	Ordered bool `json:"ordered"`
	// Stages lists the containers by when kubelet signals them: the first stage at once, each later
	// one once the containers of earlier stages that wait for it exited.
	Stages [][]string `json:"stages"`
	// AfterExitOf maps each container that gets podorder's preStop to the containers whose exit it
	// waits for.
	AfterExitOf map[string][]string `json:"afterExitOf"`
	// OwnPreStop lists the containers others wait for that keep a preStop of their own, unordered.
	OwnPreStop []string `json:"ownPreStop"`
	// Stalled maps a container whose preStop waits for native sidecars to those sidecars: kubelet
	// stops them only after every regular container, so that preStop lasts the whole grace period.
	Stalled map[string][]string `json:"stalled"`
}

// maxManifest bounds what one input may hold.
const maxManifest = 16 << 20

// Explain checks one pod template, created in namespace, as podorder would at CreateContainer, and
// says what podorder would do with it.
func Explain(name, namespace string, tpl *corev1.PodTemplateSpec, opt Options) Workload {
	w := Workload{
		Name: name, Namespace: namespace,
		Init: []string{}, Layers: [][]string{}, NeverReleased: []string{},
		Waits: map[string][]Dependency{}, Timeouts: map[string]string{}, Readiness: map[string]string{},
		StopWith:      []StopBinding{},
		ShutdownOrder: Shutdown{Stages: [][]string{}, AfterExitOf: map[string][]string{}, OwnPreStop: []string{}, Stalled: map[string][]string{}},
		Errors:        []string{}, Warnings: []string{},
	}
	pod := &corev1.Pod{ObjectMeta: tpl.ObjectMeta, Spec: tpl.Spec}
	pod.Namespace = namespace
	if !decl.Uses(pod.Labels, pod.Annotations) {
		return w
	}
	w.UsesPodorder = true
	d := decl.Parse(pod.Labels, pod.Annotations)
	spec := kube.PodContainers(pod)
	// The daemon's own decisions, on a node where podorder runs as the DaemonSet ships it: with
	// probes, the API and stop-with, in a network namespace of its own, with the cross-namespace
	// rules given (none as shipped).
	node := podstate.Node{Probes: true, HostNetwork: pod.Spec.HostNetwork, API: true, PodWatches: true, StopWith: true,
		CrossNamespace: opt.CrossNamespace}
	ps := podstate.New("", namespace, name, d, node, spec, nil)
	w.Errors = errorLines(d)
	for _, k := range slices.Sorted(maps.Keys(pod.Labels)) {
		if v := pod.Labels[k]; strings.HasPrefix(k, decl.Domain) && len(v) > 63 {
			w.Errors = append(w.Errors, fmt.Sprintf("label %s: the value has %d characters, more than the 63 Kubernetes allows in a label: use the annotation form", k, len(v)))
		}
	}

	refused := map[string]bool{}
	for _, c := range spec {
		if _, err := d.For(c.Name); err != nil {
			refused[c.Name] = true
		}
	}
	w.refused, w.sidecars = refused, map[string]bool{}
	for _, c := range spec {
		if c.Role == decl.Sidecar {
			w.sidecars[c.Name] = true
		}
	}
	for _, c := range pod.Spec.InitContainers {
		w.Init = append(w.Init, c.Name)
	}
	waitedReady := map[string]bool{}
	for _, c := range spec {
		h, err := d.For(c.Name)
		if err != nil || h == nil || len(h.After) == 0 {
			continue
		}
		w.Waits[c.Name] = dependencies(h)
		w.Timeouts[c.Name] = h.Timeout.String()
		for _, dep := range h.After {
			if dep.Condition == dependency.Ready {
				waitedReady[dep.Container] = true
			}
		}
	}
	w.Layers, w.NeverReleased = layers(pod.Spec.Containers, d, refused)
	for _, c := range spec {
		if !refused[c.Name] && !slices.Contains(w.NeverReleased, c.Name) && waitedReady[c.Name] {
			w.Readiness[c.Name] = readinessOf(ps, c)
		}
		for _, warning := range d.Warnings(c.Name) {
			w.Warnings = append(w.Warnings, "container "+c.Name+": "+warning)
		}
		if refused[c.Name] {
			continue // an error above already
		}
		if _, err := ps.Admit(podstate.Created{Name: c.Name}); err != nil {
			w.Warnings = append(w.Warnings, fmt.Sprintf("container %s: podorder %s refuses to create it (CreateContainerError): %v",
				c.Name, nodeConfig(opt), err))
		}
	}
	w.StopWith = stopBindings(spec, d, pod.Spec.TerminationGracePeriodSeconds)
	w.ShutdownOrder = shutdownOrder(d, spec, pod.Spec.Containers)
	for _, c := range slices.Sorted(maps.Keys(w.ShutdownOrder.Stalled)) {
		w.Warnings = append(w.Warnings, fmt.Sprintf("container %s: when the pod is deleted, its preStop (daemonset/lifecycle.yaml) waits for native sidecar %s to exit, "+
			"but kubelet stops native sidecars only after every regular container: %s gets its stop signal only at the end of the grace period, 2 s before SIGKILL. "+
			"Wait for %s from a regular container instead, or give %s a preStop of its own", c, strings.Join(w.ShutdownOrder.Stalled[c], ", "), c, c, c))
	}
	w.ReadinessGate = GateByPolicy
	for _, g := range pod.Spec.ReadinessGates {
		if g.ConditionType == podstate.ConditionType {
			w.ReadinessGate = GateInSpec
		}
	}
	w.Warnings = append(w.Warnings, livenessWarnings(pod, d)...)
	sort.Strings(w.Warnings)
	return w
}

// nodeConfig names the node configuration explain checks against, for a refusal.
func nodeConfig(opt Options) string {
	if len(opt.CrossNamespace) == 0 {
		return "as the DaemonSet ships it (no --allow-cross-namespace rules)"
	}
	return "with the --allow-cross-namespace rules given"
}

// errorLines lists what podorder would reject, each line once: the members of one dependency cycle
// share one message, which names them all.
func errorLines(d *decl.Pod) []string {
	where := map[string][]string{}
	var order []string
	errs := d.Errors()
	for _, c := range slices.Sorted(maps.Keys(errs)) {
		for _, line := range strings.Split(errs[c].Error(), "\n") {
			if where[line] == nil {
				order = append(order, line)
			}
			where[line] = append(where[line], c)
		}
	}
	out := []string{}
	for _, line := range order {
		cs := where[line]
		switch {
		case len(cs) == 1 && cs[0] == "":
			out = append(out, "the pod: "+line)
		case len(cs) == 1:
			out = append(out, "container "+cs[0]+": "+line)
		default:
			out = append(out, "containers "+strings.Join(cs, ", ")+": "+line)
		}
	}
	sort.Strings(out)
	return out
}

// dependencies lists what h waits for.
func dependencies(h *decl.Declared) []Dependency {
	pods := map[string]decl.PodDependency{}
	for _, p := range h.Pods {
		pods[p.Name] = p
	}
	out := make([]Dependency, 0, len(h.After))
	for _, d := range h.After {
		if p, ok := pods[d.Container]; ok {
			sel := p.Selector
			if p.Namespace != "" {
				sel = p.Namespace + "/" + sel
			}
			out = append(out, Dependency{Pods: sel, Condition: string(p.Condition)})
			continue
		}
		out = append(out, Dependency{Container: d.Container, Condition: string(d.Condition)})
	}
	return out
}

// readinessOf says what decides the readiness of container c for the containers that wait for it,
// as the daemon decides it (podstate.ReadinessOf) with the Kubernetes API and its probes available.
func readinessOf(ps *podstate.Pod, c decl.Container) string {
	r := ps.ReadinessOf(c.Name)
	h, _ := ps.Decl.For(c.Name)
	switch {
	case r.Signal != nil && r.Signal.Kind == decl.ReadinessNotify:
		return fmt.Sprintf("its own READY=1 on the NOTIFY_SOCKET podorder gives it (%s%s.%s: %s), from a process of the container; not its readinessProbe",
			decl.Domain, decl.KindReadiness, c.Name, decl.ReadinessNotify)
	case r.Signal != nil:
		return fmt.Sprintf("%s existing inside the container (%s%s.%s: %s), seen by inotify and mount events; not its readinessProbe",
			r.Signal.Path, decl.Domain, decl.KindReadiness, c.Name, r.Signal)
	case r.Probe != nil && !r.Probe.Readiness && r.Kubelet:
		return fmt.Sprintf("podorder's probe %s every 10 ms, and kubelet's verdict on its readinessProbe", r.Probe)
	case r.Probe != nil && !r.Probe.Readiness:
		return fmt.Sprintf("podorder's probe %s every 10 ms", r.Probe)
	case r.Probe != nil:
		return fmt.Sprintf("its readinessProbe %s, evaluated by podorder every 10 ms", strings.TrimPrefix(r.Probe.String(), "readinessProbe "))
	case c.ReadinessCheck != nil && h != nil && h.KubeletReadiness:
		return fmt.Sprintf("kubelet's verdict on its readinessProbe (%s%s.%s: %s)", decl.Domain, decl.KindReadiness, c.Name, decl.ReadinessKubelet)
	case c.ReadinessCheck != nil && ps.Node.HostNetwork:
		return fmt.Sprintf("its readinessProbe %s, evaluated by podorder every 10 ms if it runs with --probe-host-network, else kubelet's verdict",
			strings.TrimPrefix(c.ReadinessCheck.String(), "readinessProbe "))
	case c.ReadinessProbe:
		return "kubelet's verdict: " + strings.TrimPrefix(c.KubeletOnly, "its ")
	}
	return "its start: it has no readinessProbe"
}

// layers orders the regular containers: layer 0 waits for no regular container, layer n for some of
// layer n-1 at most. Containers podorder refuses are left out, and so are those that wait for them,
// directly or not: those are never released.
func layers(cs []corev1.Container, d *decl.Pod, refused map[string]bool) (out [][]string, never []string) {
	layer := map[string]int{}
	for _, c := range cs {
		layer[c.Name] = -1
	}
	out = [][]string{}
	for n := 0; ; n++ {
		var this []string
		for _, c := range cs {
			if layer[c.Name] >= 0 || refused[c.Name] {
				continue
			}
			ok := true
			if h := d.Declared[c.Name]; h != nil {
				for _, dep := range h.After {
					if l, regular := layer[dep.Container]; regular && l < 0 {
						ok = false
					}
				}
			}
			if ok {
				this = append(this, c.Name)
			}
		}
		if len(this) == 0 {
			break
		}
		for _, c := range this {
			layer[c] = n
		}
		out = append(out, this)
	}
	never = []string{}
	for _, c := range cs {
		if layer[c.Name] < 0 && !refused[c.Name] {
			never = append(never, c.Name)
		}
	}
	return out, never
}

// stopBindings lists the stop-with bindings, with the signal and grace of each stop.
func stopBindings(spec []decl.Container, d *decl.Pod, graceSeconds *int64) []StopBinding {
	podGrace := time.Duration(corev1.DefaultTerminationGracePeriodSeconds) * time.Second
	if graceSeconds != nil {
		podGrace = time.Duration(*graceSeconds) * time.Second
	}
	out := []StopBinding{}
	for _, c := range spec {
		h, err := d.For(c.Name)
		if err != nil || h == nil || len(h.StopWith) == 0 {
			continue
		}
		sig, grace := h.StopSignalAndGrace(podGrace)
		b := StopBinding{Container: c.Name, Signal: decl.SignalName(sig), Grace: grace.String(), GraceFrom: "pod"}
		if h.StopGrace != 0 {
			b.GraceFrom = "stop-grace"
		}
		for _, t := range h.StopWith {
			b.When = append(b.When, StopTrigger{Container: t.Container, On: string(t.On)})
		}
		out = append(out, b)
	}
	return out
}

// shutdownOrder is decl's shutdown order of the pod, with the preStop hooks the manifest writes.
func shutdownOrder(d *decl.Pod, spec []decl.Container, cs []corev1.Container) Shutdown {
	own := map[string]bool{}
	for _, c := range cs {
		if c.Lifecycle != nil && c.Lifecycle.PreStop != nil {
			own[c.Name] = true
		}
	}
	s := d.ShutdownOrder(spec, own)
	out := Shutdown{Ordered: s.Ordered(), Stages: s.Stages, AfterExitOf: s.AfterExitOf, OwnPreStop: s.OwnPreStop, Stalled: s.Stalled}
	if out.Stages == nil {
		out.Stages = [][]string{}
	}
	if out.OwnPreStop == nil {
		out.OwnPreStop = []string{}
	}
	return out
}

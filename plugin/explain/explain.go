// Package explain is `podorder explain`: offline, from manifests alone, it shows the order in which
// podorder would start each pod's containers (the layers of the dependency graph) and every problem
// podorder would reject at CreateContainer or that would bite at runtime. It needs no cluster, so it
// runs in CI pipelines before anything is applied.
package explain

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"maps"
	"os"
	"slices"
	"sort"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	"sigs.k8s.io/yaml"

	"github.com/podorder/podorder/plugin/decl"
	"github.com/podorder/podorder/plugin/kube"
	"github.com/podorder/podorder/plugin/podstate"
)

// Workload is one pod template found in the manifests.
type Workload struct {
	// Name is "Kind/name".
	Name string
	// Init lists the init containers, run by kubelet one at a time, in this order.
	Init []string
	// Layers lists the regular containers by start layer: each waits only for containers of earlier
	// layers (or of other pods, or init containers).
	Layers [][]string
	// Waits maps a container to what it waits for, as people read it.
	Waits map[string]string
	// Readiness maps each container that others wait for to be ready to what decides its
	// readiness, as people read it.
	Readiness map[string]string
	// Errors are what podorder would reject; Warnings what would bite at runtime.
	Errors, Warnings []string
}

// Uses reports whether the workload declares anything to podorder.
func (w Workload) Uses() bool { return len(w.Waits) > 0 || len(w.Errors) > 0 || len(w.Warnings) > 0 }

// ReadFiles explains the manifests of each -f argument in turn: a file, or - for stdin. An error
// names the file.
func ReadFiles(stdin io.Reader, names []string) ([]Workload, error) {
	var all []Workload
	for _, name := range names {
		ws, err := readFile(stdin, name)
		if err != nil {
			return nil, err
		}
		all = append(all, ws...)
	}
	return all, nil
}

func readFile(stdin io.Reader, name string) ([]Workload, error) {
	r := stdin
	if name != "-" {
		f, err := os.Open(name)
		if err != nil {
			return nil, err // it names the file
		}
		defer f.Close()
		r = f
	}
	ws, err := Read(r)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", name, err)
	}
	return ws, nil
}

// Read explains every pod template in a stream of YAML or JSON documents ("---" separated): Pods,
// Deployments, StatefulSets, DaemonSets, ReplicaSets, Jobs and CronJobs. Other kinds are skipped.
func Read(r io.Reader) ([]Workload, error) {
	data, err := io.ReadAll(io.LimitReader(r, 16<<20))
	if err != nil {
		return nil, fmt.Errorf("read manifests: %w", err)
	}
	var out []Workload
	for i, doc := range splitDocuments(data) {
		if len(bytes.TrimSpace(doc)) == 0 {
			continue
		}
		var obj struct {
			Kind     string
			Metadata struct{ Name string }
			Spec     struct {
				Template    *corev1.PodTemplateSpec
				JobTemplate *struct {
					Spec struct{ Template *corev1.PodTemplateSpec }
				}
			}
		}
		if err := yaml.Unmarshal(doc, &obj); err != nil {
			return nil, fmt.Errorf("document %d: %w", i+1, err)
		}
		var tpl *corev1.PodTemplateSpec
		switch obj.Kind {
		case "Pod":
			var pod corev1.Pod
			if err := yaml.Unmarshal(doc, &pod); err != nil {
				return nil, fmt.Errorf("document %d (Pod %s): %w", i+1, obj.Metadata.Name, err)
			}
			tpl = &corev1.PodTemplateSpec{ObjectMeta: pod.ObjectMeta, Spec: pod.Spec}
		case "Deployment", "StatefulSet", "DaemonSet", "ReplicaSet", "Job":
			tpl = obj.Spec.Template
		case "CronJob":
			if obj.Spec.JobTemplate != nil {
				tpl = obj.Spec.JobTemplate.Spec.Template
			}
		default:
			continue
		}
		if tpl == nil {
			return nil, fmt.Errorf("document %d (%s %s): no pod template", i+1, obj.Kind, obj.Metadata.Name)
		}
		out = append(out, Explain(obj.Kind+"/"+obj.Metadata.Name, tpl))
	}
	return out, nil
}

func splitDocuments(data []byte) [][]byte {
	var docs [][]byte
	var cur []string
	for _, line := range strings.Split(string(data), "\n") {
		if strings.TrimRight(line, " \t\r") == "---" {
			docs = append(docs, []byte(strings.Join(cur, "\n")))
			cur = nil
			continue
		}
		cur = append(cur, line)
	}
	return append(docs, []byte(strings.Join(cur, "\n")))
}

// Explain checks one pod template as podorder would at CreateContainer, and plans its start.
func Explain(name string, tpl *corev1.PodTemplateSpec) Workload {
	w := Workload{Name: name, Waits: map[string]string{}, Readiness: map[string]string{}}
	pod := &corev1.Pod{ObjectMeta: tpl.ObjectMeta, Spec: tpl.Spec}
	if !decl.Uses(pod.Labels, pod.Annotations) {
		return w
	}
	d := decl.Parse(pod.Labels, pod.Annotations)
	spec := kube.PodContainers(pod)
	// The daemon's own decisions, on a node where podorder runs as the DaemonSet ships it: with
	// probes, the API and stop-with, in a network namespace of its own, no cross-namespace rules.
	node := podstate.Node{Probes: true, HostNetwork: pod.Spec.HostNetwork, API: true, PodWatches: true, StopWith: true}
	ps := podstate.New("", pod.Namespace, name, d, node, spec, nil)
	for c, err := range d.Errors() {
		where := "container " + c
		if c == "" {
			where = "the pod"
		}
		for _, line := range strings.Split(err.Error(), "\n") {
			w.Errors = append(w.Errors, where+": "+line)
		}
	}
	for k, v := range pod.Labels {
		if strings.HasPrefix(k, decl.Domain) && len(v) > 63 {
			w.Errors = append(w.Errors, fmt.Sprintf("label %s: the value has %d characters, more than the 63 Kubernetes allows in a label: use the annotation form", k, len(v)))
		}
	}
	regular := map[string]bool{}
	for _, c := range pod.Spec.InitContainers {
		w.Init = append(w.Init, c.Name)
	}
	for _, c := range pod.Spec.Containers {
		regular[c.Name] = true
	}
	for c, h := range d.Holds {
		if len(h.After) > 0 {
			w.Waits[c] = podstate.Describe(h)
		}
	}
	w.Layers = layers(pod.Spec.Containers, d)
	for _, c := range spec {
		if d.WaitedReady(c.Name) {
			w.Readiness[c.Name] = readinessOf(ps, c)
		}
		for _, warning := range d.Warnings(c.Name) {
			w.Warnings = append(w.Warnings, "container "+c.Name+": "+warning)
		}
		if _, err := d.For(c.Name); err != nil {
			continue // an error above already
		}
		if _, err := ps.Admit(podstate.Created{Name: c.Name}); err != nil {
			w.Warnings = append(w.Warnings, fmt.Sprintf("container %s: refused on a node where podorder runs as shipped: %v", c.Name, err))
		}
	}
	w.Warnings = append(w.Warnings, livenessWarnings(pod, d)...)
	sort.Strings(w.Errors)
	sort.Strings(w.Warnings)
	return w
}

// readinessOf says what decides the readiness of container c for the containers that wait for it,
// as the daemon decides it (podstate.ReadinessOf) with the Kubernetes API and its probes available.
func readinessOf(ps *podstate.Pod, c decl.Container) string {
	r := ps.ReadinessOf(c.Name)
	h, _ := ps.Decl.For(c.Name)
	switch {
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
// layer n-1 at most. Containers on a cycle are left out (the cycle is an error already).
func layers(cs []corev1.Container, d *decl.Pod) [][]string {
	layer := map[string]int{}
	for _, c := range cs {
		layer[c.Name] = -1
	}
	var out [][]string
	for n := 0; ; n++ {
		var this []string
		for _, c := range cs {
			if layer[c.Name] >= 0 {
				continue
			}
			ok := true
			if h := d.Holds[c.Name]; h != nil {
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
			return out
		}
		for _, c := range this {
			layer[c] = n
		}
		out = append(out, this)
	}
}

// livenessWarnings names held containers whose livenessProbe would kill them during a long hold: a
// held container is running to kubelet, and without a startupProbe whose budget exceeds the hold,
// kubelet probes its liveness from the start.
func livenessWarnings(pod *corev1.Pod, d *decl.Pod) []string {
	var out []string
	for _, c := range pod.Spec.Containers {
		h := d.Holds[c.Name]
		if h == nil || len(h.After) == 0 || c.LivenessProbe == nil {
			continue
		}
		budget := probeBudget(c.StartupProbe)
		if budget > h.Timeout {
			continue
		}
		live := probeBudget(c.LivenessProbe)
		msg := fmt.Sprintf("container %s: its livenessProbe kills it after about %s of a hold that may last %s", c.Name, live, h.Timeout)
		if c.StartupProbe != nil {
			msg = fmt.Sprintf("container %s: its startupProbe budget (%s) is shorter than its hold (%s), so its livenessProbe may kill it while held", c.Name, budget, h.Timeout)
		}
		out = append(out, msg+": give it a startupProbe with failureThreshold × periodSeconds above the hold, or a shorter podorder.dev/timeout")
	}
	return out
}

// probeBudget is how long kubelet lets a probe fail before acting: initialDelay + failureThreshold ×
// period, with kubelet's defaults.
func probeBudget(p *corev1.Probe) time.Duration {
	if p == nil {
		return 0
	}
	period, failures := p.PeriodSeconds, p.FailureThreshold
	if period == 0 {
		period = 10
	}
	if failures == 0 {
		failures = 3
	}
	return time.Duration(p.InitialDelaySeconds+period*failures) * time.Second
}

// ErrProblems is returned by Write when a workload has errors: `podorder explain` exits non-zero.
var ErrProblems = errors.New("podorder would reject some of these pods")

// Write prints the workloads for people.
func Write(out io.Writer, ws []Workload) error {
	failed := false
	for _, w := range ws {
		if !w.Uses() {
			fmt.Fprintf(out, "%s: no podorder keys; kubelet's own order\n\n", w.Name)
			continue
		}
		fmt.Fprintf(out, "%s\n", w.Name)
		if len(w.Init) > 0 {
			fmt.Fprintf(out, "  init containers, in order: %s\n", strings.Join(w.Init, ", "))
		}
		for i, l := range w.Layers {
			var parts []string
			for _, c := range l {
				if s := w.Waits[c]; s != "" {
					parts = append(parts, c+" after "+s)
				} else {
					parts = append(parts, c)
				}
			}
			fmt.Fprintf(out, "  %d. %s\n", i+1, strings.Join(parts, "; "))
		}
		for _, c := range slices.Sorted(maps.Keys(w.Readiness)) {
			fmt.Fprintf(out, "  %s is ready on %s\n", c, w.Readiness[c])
		}
		for _, e := range w.Errors {
			fmt.Fprintf(out, "  error: %s\n", e)
		}
		for _, wn := range w.Warnings {
			fmt.Fprintf(out, "  warning: %s\n", wn)
		}
		fmt.Fprintln(out)
		failed = failed || len(w.Errors) > 0
	}
	if failed {
		return ErrProblems
	}
	return nil
}

package decl

import (
	"errors"
	"fmt"
	"strconv"
	"strings"

	"github.com/podorder/podorder/hooks/dependency"
)

// Parse reads a pod's podorder keys. Problems are kept per container and reported by For, so that one
// container's typo fails only that container.
func Parse(labels, annotations map[string]string) *Pod {
	p := &Pod{Declared: map[string]*Declared{}, errs: map[string]error{}}
	if n := countKeys(labels) + countKeys(annotations); n > MaxKeys {
		p.errAll = errors.New(tooManyKeys(strconv.Itoa(n)))
		return p
	}
	r := &reader{
		pod:       p,
		deps:      map[string]map[string]declared{},
		podDeps:   map[string]map[string]PodDependency{},
		timeouts:  map[string]string{},
		readiness: map[string]string{},
		stops:     map[string]map[string]ExitCondition{},
	}
	r.readAll("label", labels)
	r.readAll("annotation", annotations)
	r.settleAfter()
	r.settleStopWith()
	p.checkPodLimits()
	p.checkGraph()
	return p
}

// tooManyKeys says that a pod carries more than MaxKeys keys; n is their number as the message
// writes it, a number for the daemon, a CEL expression for the admission policy.
func tooManyKeys(n string) string {
	return fmt.Sprintf("the pod has %s %s labels and annotations, more than the %d podorder reads: "+
		"declare at most %d (one after, timeout and probe key per container)", n, Domain, MaxKeys, MaxKeys)
}

// reader reads a pod's keys one at a time into its Pod. A container's after and stop-with keys may
// come both as a label and as an annotation: they are merged here, and settled into its Declared once
// every key is read.
type reader struct {
	pod *Pod
	// deps maps a container to its dependencies, each with the first declaration of its condition.
	deps map[string]map[string]declared
	// podDeps maps a container to its pod(...) dependencies by PodDependency.Name.
	podDeps map[string]map[string]PodDependency
	// timeouts maps a container to the value of its first timeout key.
	timeouts map[string]string
	// readiness maps a container to the value of its first readiness key.
	readiness map[string]string
	// stops maps a container to the containers it stops with and on which exits.
	stops map[string]map[string]ExitCondition
}

// declared is a dependency's condition and whether the label or the annotation declared it.
type declared struct {
	cond   dependency.Condition
	source string
}

// key is one podorder.dev/ key of a pod, as its kind's read sees it.
type key struct {
	// source is "label" or "annotation".
	source    string
	container string
	value     string
	// where names the key and its value for messages, as the manifest writes them.
	where string
}

// readAll reads the podorder keys of the pod's labels or annotations, in key order.
func (r *reader) readAll(source string, kv map[string]string) {
	for _, k := range sortedKeys(kv) {
		if strings.HasPrefix(k, Domain) {
			r.read(source, k, kv[k])
		}
	}
}

// read reads one key into the pod: a malformed key fails the whole pod, a malformed value only the
// container the key names.
func (r *reader) read(source, k, v string) {
	where := fmt.Sprintf("%s %s=%s", source, quoteKey(k), Quote(v))
	name, c, ok := strings.Cut(strings.TrimPrefix(k, Domain), ".")
	if !ok || !validContainerName(c) {
		r.pod.failKey(fmt.Errorf("%s: key must be %s", where, keyForm()))
		return
	}
	if len(v) > MaxValueBytes {
		r.pod.fail(c, fmt.Errorf("%s: the value has %d bytes, more than the %d podorder reads: shorten it", where, len(v), MaxValueBytes))
		return
	}
	kd, ok := kindNamed(name)
	if !ok {
		r.pod.fail(c, fmt.Errorf("%s: unknown key kind %s: use %s", where, Quote(name), keysFor(c)))
		return
	}
	if err := kd.read(r, key{source: source, container: c, value: v, where: where}); err != nil {
		r.pod.fail(c, fmt.Errorf("%s: %w", where, err))
	}
}

// checkPodLimits rejects pods whose pod(...) dependencies or probes, summed over their containers,
// exceed what one pod may cost the node; every container that declares one is named.
func (p *Pod) checkPodLimits() {
	selectors := map[string]PodDependency{}
	keys := map[string]bool{}
	var withPods, withProbes, withSignals []string
	for _, c := range sortedKeys(p.Declared) {
		h := p.Declared[c]
		if len(h.Pods) > 0 {
			withPods = append(withPods, c)
		}
		for _, d := range h.Pods {
			if prev, ok := selectors[d.Name]; ok && prev.String() != d.String() {
				// A 128-bit digest does not collide by chance: refuse rather than merge two selectors.
				p.fail(c, fmt.Errorf("%s and %s have the same internal name %s: change one of them", prev, d, d.Name))
			}
			selectors[d.Name] = d
			for _, term := range strings.Split(d.Selector, ",") {
				k, _, _ := strings.Cut(term, "=")
				keys[k] = true
			}
		}
		if h.Probe != nil {
			withProbes = append(withProbes, c)
		}
		if h.Signal != nil {
			withSignals = append(withSignals, c)
		}
	}
	if len(withSignals) > MaxSignals {
		for _, c := range withSignals {
			p.fail(c, fmt.Errorf("the pod declares %d %s%s keys of %s or %s:<path>, more than the %d podorder watches per pod: "+
				"keep them on the containers others wait for", len(withSignals), Domain, KindReadiness, ReadinessNotify, ReadinessFile, MaxSignals))
		}
	}
	if len(selectors) > MaxPodDependencies {
		for _, c := range withPods {
			p.fail(c, fmt.Errorf("the pod declares %d distinct pod(...) dependencies, more than the %d podorder allows per pod: "+
				"select the pods with fewer, broader selectors (containers with pod dependencies: %s)",
				len(selectors), MaxPodDependencies, strings.Join(withPods, ", ")))
		}
	}
	if len(keys) > MaxPodSelectorKeys {
		for _, c := range withPods {
			p.fail(c, fmt.Errorf("the pod's pod(...) selectors use %d distinct label keys, more than the %d podorder allows per pod: "+
				"select on fewer labels (containers with pod dependencies: %s)", len(keys), MaxPodSelectorKeys, strings.Join(withPods, ", ")))
		}
	}
	if len(withProbes) > MaxProbes {
		for _, c := range withProbes {
			p.fail(c, fmt.Errorf("the pod declares %d %s%s keys, more than the %d podorder runs per pod: "+
				"keep probes on the containers others wait for", len(withProbes), Domain, KindProbe, MaxProbes))
		}
	}
}

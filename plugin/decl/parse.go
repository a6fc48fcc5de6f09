package decl

import (
	"fmt"
	"sort"
	"strings"
	"time"

	"github.com/podorder/podorder/hooks/condition"
)

// Parse reads a pod's podorder keys. Problems are kept per container and reported by For, so that one
// container's typo fails only that container.
func Parse(labels, annotations map[string]string) *Pod {
	p := &Pod{Holds: map[string]*Hold{}, errs: map[string]error{}}
	if n := countKeys(labels) + countKeys(annotations); n > MaxKeys {
		p.errAll = fmt.Errorf("the pod has %d %s labels and annotations, more than the %d podorder reads: "+
			"declare at most %d (one after, timeout and probe key per container)", n, Domain, MaxKeys, MaxKeys)
		return p
	}
	type seen struct {
		cond   condition.Condition
		source string
	}
	deps := map[string]map[string]seen{}
	podDeps := map[string]map[string]PodDependency{}
	timeouts := map[string]string{}
	stops := map[string]map[string]ExitCondition{}

	read := func(source string, kv map[string]string) {
		for _, k := range sortedKeys(kv) {
			if !strings.HasPrefix(k, Domain) {
				continue
			}
			v := kv[k]
			where := fmt.Sprintf("%s %s=%s", source, quoteKey(k), Quote(v))
			kind, c, ok := strings.Cut(strings.TrimPrefix(k, Domain), ".")
			if !ok || !validContainerName(c) {
				p.failKey(fmt.Errorf("%s: key must be %s<after|timeout|probe|stop-with|stop-grace|stop-signal>.<container name>", where, Domain))
				continue
			}
			if len(v) > MaxValueBytes {
				p.fail(c, fmt.Errorf("%s: the value has %d bytes, more than the %d podorder reads: shorten it", where, len(v), MaxValueBytes))
				continue
			}
			switch kind {
			case KindAfter:
				var list []condition.Dependency
				var pods []PodDependency
				var err error
				if source == "label" {
					list, err = parseLabelAfter(v)
				} else {
					list, pods, err = parseAnnotationAfter(v)
				}
				if err != nil {
					p.fail(c, fmt.Errorf("%s: %w", where, err))
					continue
				}
				if deps[c] == nil {
					deps[c] = map[string]seen{}
				}
				for _, d := range list {
					if prev, dup := deps[c][d.Container]; dup && prev.cond != d.Condition {
						p.fail(c, fmt.Errorf("container %s waits for %s twice with different conditions (%s in the %s, %s in the %s): keep one",
							c, d.Container, prev.cond, prev.source, d.Condition, source))
						continue
					}
					deps[c][d.Container] = seen{d.Condition, source}
				}
				for _, pd := range pods {
					if podDeps[c] == nil {
						podDeps[c] = map[string]PodDependency{}
					}
					podDeps[c][pd.Name] = pd
					deps[c][pd.Name] = seen{pd.Condition, source}
				}
				p.hold(c)
			case KindTimeout:
				d, err := time.ParseDuration(strings.TrimSpace(v))
				if err != nil || d <= 0 || d > MaxTimeout {
					p.fail(c, fmt.Errorf("%s: timeout must be a positive Go duration of at most %s, such as 90s or 5m", where, MaxTimeout))
					continue
				}
				if prev, dup := timeouts[c]; dup && prev != v {
					p.fail(c, fmt.Errorf("%s: conflicts with the other timeout %s for %s: keep one", where, Quote(prev), c))
					continue
				}
				timeouts[c] = v
				p.hold(c).Timeout = d
			case KindProbe:
				pr, err := ParseProbe(v)
				if err != nil {
					p.fail(c, fmt.Errorf("%s: %w", where, err))
					continue
				}
				p.hold(c).Probe = pr
			case KindStopWith:
				list, err := parseStopWith(v, source == "label")
				if err != nil {
					p.fail(c, fmt.Errorf("%s: %w", where, err))
					continue
				}
				if stops[c] == nil {
					stops[c] = map[string]ExitCondition{}
				}
				for _, t := range list {
					if prev, dup := stops[c][t.Container]; dup && prev != t.On {
						p.fail(c, fmt.Errorf("%s: container %s stops with %s twice with different conditions (%s and %s): keep one", where, c, t.Container, prev, t.On))
						continue
					}
					stops[c][t.Container] = t.On
				}
				p.hold(c)
			case KindStopGrace:
				d, err := parseStopGrace(v)
				if err != nil {
					p.fail(c, fmt.Errorf("%s: %w", where, err))
					continue
				}
				p.hold(c).StopGrace = d
			case KindStopSignal:
				sig, err := parseStopSignal(v)
				if err != nil {
					p.fail(c, fmt.Errorf("%s: %w", where, err))
					continue
				}
				p.hold(c).StopSignal = sig
			case KindReadiness:
				switch strings.TrimSpace(v) {
				case ReadinessKubelet:
					p.hold(c).KubeletReadiness = true
				case ReadinessPodorder:
					p.hold(c)
				default:
					p.fail(c, fmt.Errorf("%s: want %s (podorder evaluates the readinessProbe itself, the default) or %s (wait for kubelet's verdict)",
						where, ReadinessPodorder, ReadinessKubelet))
				}
			default:
				p.fail(c, fmt.Errorf("%s: unknown key kind %s: use %s%s.%s, %s.%s, %s.%s, %s.%s, %s.%s, %s.%s or %s.%s",
					where, Quote(kind), Domain, KindAfter, c, KindTimeout, c, KindProbe, c, KindStopWith, c, KindStopGrace, c, KindStopSignal, c, KindReadiness, c))
			}
		}
	}
	read("label", labels)
	read("annotation", annotations)

	for c, m := range deps {
		h := p.hold(c)
		for name, s := range m {
			h.After = append(h.After, condition.Dependency{Container: name, Condition: s.cond})
		}
		sort.Slice(h.After, func(i, j int) bool { return h.After[i].Container < h.After[j].Container })
		for _, name := range sortedKeys(podDeps[c]) {
			h.Pods = append(h.Pods, podDeps[c][name])
		}
		if len(h.After) > MaxDependencies {
			p.fail(c, fmt.Errorf("container %s waits for %d dependencies, more than the %d podorder allows: "+
				"wait for the few that gate it (a chain a → b → c needs only the nearest)", c, len(h.After), MaxDependencies))
		}
	}
	for c, m := range stops {
		h := p.hold(c)
		for _, name := range sortedKeys(m) {
			if name == c {
				p.fail(c, fmt.Errorf("container %s stops with itself: remove %s from %s%s.%s", c, c, Domain, KindStopWith, c))
				continue
			}
			h.StopWith = append(h.StopWith, Trigger{Container: name, On: m[name]})
		}
		if len(h.StopWith) > MaxDependencies {
			p.fail(c, fmt.Errorf("container %s stops with %d containers, more than the %d podorder allows", c, len(h.StopWith), MaxDependencies))
		}
	}
	p.checkPodLimits()
	p.checkGraph()
	return p
}

// checkPodLimits rejects pods whose pod(...) dependencies or probes, summed over their containers,
// exceed what one pod may cost the node; every container that declares one is named.
func (p *Pod) checkPodLimits() {
	selectors := map[string]PodDependency{}
	keys := map[string]bool{}
	var withPods, withProbes []string
	for _, c := range sortedKeys(p.Holds) {
		h := p.Holds[c]
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

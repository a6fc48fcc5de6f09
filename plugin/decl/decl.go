// Package decl reads what a pod declares to podorder — its podorder.dev/ labels and annotations —
// into a per-container Hold, and checks the declarations against each other and, when known, against
// the pod's container names. It is pure: no I/O, so every rule is unit-tested.
//
// API v1, for a dependent container <c>:
//
//	label       podorder.dev/after.<c>: db.cache_started.migrate_completed
//	annotation  podorder.dev/after.<c>: "db, cache:started, migrate:completed"
//	either      podorder.dev/timeout.<c>: "5m"
//	annotation  podorder.dev/probe.<c>: "tcp:5432" | "http:8080/healthz"
//	either      podorder.dev/readiness.<c>: podorder | kubelet
//	label       podorder.dev/stop-with.<c>: main.worker_failed
//	annotation  podorder.dev/stop-with.<c>: "main, worker:failed"
//	either      podorder.dev/stop-grace.<c>: "20s"
//	either      podorder.dev/stop-signal.<c>: "SIGINT"
package decl

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"time"
	"unicode/utf8"

	"github.com/podorder/podorder/hooks/condition"
)

// Domain prefixes every key podorder reads.
const Domain = "podorder.dev/"

// Key kinds after the domain: "<kind>.<container>".
const (
	KindAfter   = "after"
	KindTimeout = "timeout"
	KindProbe   = "probe"
	// KindStopWith binds a container's life to others': it is stopped when one of them exits.
	KindStopWith = "stop-with"
	// KindStopGrace overrides the pod's terminationGracePeriodSeconds for podorder's stops.
	KindStopGrace = "stop-grace"
	// KindStopSignal overrides SIGTERM as the first signal of podorder's stops.
	KindStopSignal = "stop-signal"
	// KindReadiness says who judges a container's readiness for the containers that wait for it:
	// ReadinessKubelet opts out of podorder evaluating the container's readinessProbe itself.
	KindReadiness = "readiness"
)

// Values of podorder.dev/readiness.<c>.
const (
	// ReadinessPodorder, the default, lets podorder evaluate a tcp, http or grpc readinessProbe
	// itself, from inside the pod, at a fast period while a container waits for it.
	ReadinessPodorder = "podorder"
	// ReadinessKubelet waits for kubelet's own verdict, as reported through the API.
	ReadinessKubelet = "kubelet"
)

// DefaultTimeout is the longest hold when a container declares no timeout.
const DefaultTimeout = 10 * time.Minute

// Limits on what one pod may declare. Every tenant's pod is parsed under NRI's node-wide lock and
// each declaration costs the daemon files, probes and API watches: the caps keep all of it bounded
// and far from NRI's 2 s timeout, whatever a pod declares. They are generous for real pods.
const (
	// MaxKeys is the most podorder.dev/ labels and annotations one pod may carry.
	MaxKeys = 64
	// MaxValueBytes is the longest value of one podorder.dev/ key.
	MaxValueBytes = 2048
	// MaxDependencies is the most dependencies (containers and pod selectors) of one container.
	MaxDependencies = 32
	// MaxPodDependencies is the most distinct pod(...) dependencies of one pod.
	MaxPodDependencies = 8
	// MaxPodSelectorKeys is the most distinct label keys one pod's pod(...) selectors use. The
	// daemon keeps in memory only the labels some selector on a namespace uses, at most 64 keys
	// per namespace for all pods together: one pod must not take most of them.
	MaxPodSelectorKeys = 8
	// MaxProbes is the most podorder.dev/probe keys of one pod.
	MaxProbes = 16
	// MaxTimeout is the longest hold a container may declare.
	MaxTimeout = 24 * time.Hour
	// maxQuoted is how much of a declared value an error message repeats.
	maxQuoted = 80
)

// Hold is everything podorder does for one container of a pod.
type Hold struct {
	// After lists the dependencies, sorted by container name; empty for a container that is only
	// waited on. A dependency on other pods appears here under its PodDependency.Name.
	After []condition.Dependency
	// Pods lists the dependencies on other pods, sorted by Name.
	Pods []PodDependency
	// Timeout is the longest the container is held.
	Timeout time.Duration
	// Probe is the node-local readiness check, nil when there is none.
	Probe *Probe
	// StopWith lists the containers whose exit stops this one, sorted by container name.
	StopWith []Trigger
	// StopGrace is how long a stop waits after its signal before SIGKILL; zero means the pod's
	// terminationGracePeriodSeconds, as kubelet's own stops do.
	StopGrace time.Duration
	// StopSignal is the first signal of a stop; zero means SIGTERM.
	StopSignal syscall.Signal
	// KubeletReadiness opts the container out of podorder evaluating its readinessProbe: the
	// containers that wait for it to be ready wait for kubelet's verdict instead.
	KubeletReadiness bool
}

// Pod is a pod's parsed declarations.
type Pod struct {
	// Holds maps container name to its declarations; containers with no key are absent.
	Holds map[string]*Hold
	// errs maps container name to what is wrong with its declarations.
	errs map[string]error
	// errAll fails every container of the pod: the declarations as a whole are over a limit, or a
	// key names no valid container.
	errAll error
}

// Uses reports whether a pod has any podorder key at all. Pods without keys are left untouched.
func Uses(labels, annotations map[string]string) bool {
	for k := range labels {
		if strings.HasPrefix(k, Domain) {
			return true
		}
	}
	for k := range annotations {
		if strings.HasPrefix(k, Domain) {
			return true
		}
	}
	return false
}

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

// Quote quotes a declared value for a message, cut to a readable length: a hostile 256 KiB
// annotation must not become a 256 KiB Event or log line.
func Quote(v string) string {
	if len(v) <= maxQuoted {
		return strconv.Quote(v)
	}
	cut := maxQuoted
	for cut > 0 && !utf8.RuneStart(v[cut]) {
		cut--
	}
	return strconv.Quote(v[:cut]) + fmt.Sprintf("… (%d bytes)", len(v))
}

// quoteKey leaves an ordinary key as written, so a message reads like the manifest.
func quoteKey(k string) string {
	if len(k) <= maxQuoted && printableASCII(k) {
		return k
	}
	return Quote(k)
}

func countKeys(kv map[string]string) int {
	n := 0
	for k := range kv {
		if strings.HasPrefix(k, Domain) {
			n++
		}
	}
	return n
}

// For returns the declarations of one container: nil with no error when it has none.
func (p *Pod) For(container string) (*Hold, error) {
	if p.errAll != nil {
		return nil, p.errAll
	}
	if err := p.errs[container]; err != nil {
		return nil, err
	}
	return p.Holds[container], nil
}

// Errors returns every problem found, keyed by container name; a problem of the whole pod is under "".
func (p *Pod) Errors() map[string]error {
	if p.errAll != nil {
		return map[string]error{"": p.errAll}
	}
	return p.errs
}

// failKey records a key that names no valid container: no container can be blamed, so the whole pod
// is refused rather than the typo being ignored.
func (p *Pod) failKey(err error) {
	if p.errAll != nil {
		err = errors.Join(p.errAll, err)
	}
	p.errAll = err
}

// CheckNames reports dependencies and keys that name no container of the pod. containers is the pod's
// full list of container names, known only from the pod spec (the Kubernetes API, or the kubectl
// last-applied annotation); without it a missing name can only surface as a hold that times out.
func (p *Pod) CheckNames(containers []string) {
	known := map[string]bool{}
	for _, c := range containers {
		known[c] = true
	}
	list := strings.Join(containers, ", ")
	for _, c := range sortedKeys(p.Holds) {
		if !known[c] {
			p.failKey(fmt.Errorf("%s keys name container %s, which is not in the pod; containers are: %s", Domain, c, list))
			continue
		}
		onPods := map[string]bool{}
		for _, pd := range p.Holds[c].Pods {
			onPods[pd.Name] = true
		}
		for _, d := range p.Holds[c].After {
			if !known[d.Container] && !onPods[d.Container] {
				p.fail(c, fmt.Errorf("container %s waits for %s, which is not in the pod; containers are: %s", c, d.Container, list))
			}
		}
		for _, t := range p.Holds[c].StopWith {
			if !known[t.Container] {
				p.fail(c, fmt.Errorf("container %s stops with %s, which is not in the pod; containers are: %s", c, t.Container, list))
			}
		}
	}
}

func (p *Pod) hold(c string) *Hold {
	h := p.Holds[c]
	if h == nil {
		h = &Hold{Timeout: DefaultTimeout}
		p.Holds[c] = h
	}
	return h
}

func (p *Pod) fail(c string, err error) {
	if prev := p.errs[c]; prev != nil {
		err = errors.Join(prev, err)
	}
	p.errs[c] = err
}

// checkGraph rejects self-dependencies and every container on a dependency cycle, naming the cycle.
func (p *Pod) checkGraph() {
	for _, c := range sortedKeys(p.Holds) {
		for _, d := range p.Holds[c].After {
			if d.Container == c {
				p.fail(c, fmt.Errorf("container %s waits for itself: remove %s from %s%s.%s", c, c, Domain, KindAfter, c))
			}
		}
	}
	const (
		unvisited = iota
		onPath
		done
	)
	state := map[string]int{}
	var path []string
	var visit func(c string)
	visit = func(c string) {
		state[c] = onPath
		path = append(path, c)
		if h := p.Holds[c]; h != nil {
			for _, d := range h.After {
				if d.Container == c {
					continue
				}
				switch state[d.Container] {
				case unvisited:
					visit(d.Container)
				case onPath:
					p.failCycle(path, d.Container)
				}
			}
		}
		path = path[:len(path)-1]
		state[c] = done
	}
	for _, c := range sortedKeys(p.Holds) {
		if state[c] == unvisited {
			visit(c)
		}
	}
}

func (p *Pod) failCycle(path []string, back string) {
	start := 0
	for i, c := range path {
		if c == back {
			start = i
		}
	}
	cycle := append(append([]string{}, path[start:]...), back)
	msg := strings.Join(cycle, " → ")
	for _, c := range cycle[:len(cycle)-1] {
		p.fail(c, fmt.Errorf("dependency cycle %s (→ means \"waits for\"): no container on it could ever start; remove one of these dependencies", msg))
	}
}

// parseLabelAfter reads the label form "db.cache_started.migrate_completed".
func parseLabelAfter(v string) ([]condition.Dependency, error) {
	if strings.TrimSpace(v) == "" {
		return nil, errors.New("empty dependency list: name at least one container")
	}
	var out []condition.Dependency
	for _, item := range strings.Split(v, ".") {
		name, cond, hasCond := strings.Cut(item, "_")
		d, err := dependency(name, cond, hasCond)
		if err != nil {
			return nil, err
		}
		out = append(out, d)
	}
	return out, nil
}

// parseAnnotationAfter reads the annotation form "db, cache:started, migrate:completed,
// pod(app=mysql):ready".
func parseAnnotationAfter(v string) ([]condition.Dependency, []PodDependency, error) {
	if strings.TrimSpace(v) == "" {
		return nil, nil, errors.New("empty dependency list: name at least one container")
	}
	items, err := splitOutsideParens(v)
	if err != nil {
		return nil, nil, err
	}
	var out []condition.Dependency
	var pods []PodDependency
	for _, item := range items {
		item = strings.TrimSpace(item)
		if strings.HasPrefix(item, "pod(") {
			pd, err := parsePodDependency(item)
			if err != nil {
				return nil, nil, err
			}
			pods = append(pods, pd)
			continue
		}
		name, cond, hasCond := strings.Cut(item, ":")
		d, err := dependency(strings.TrimSpace(name), strings.TrimSpace(cond), hasCond)
		if err != nil {
			return nil, nil, err
		}
		out = append(out, d)
	}
	return out, pods, nil
}

// splitOutsideParens splits on commas that are not inside pod(...).
func splitOutsideParens(v string) ([]string, error) {
	var items []string
	depth, start := 0, 0
	for i, r := range v {
		switch r {
		case '(':
			depth++
		case ')':
			depth--
			if depth < 0 {
				return nil, fmt.Errorf("unbalanced ')' at offset %d", i)
			}
		case ',':
			if depth == 0 {
				items = append(items, v[start:i])
				start = i + 1
			}
		}
	}
	if depth != 0 {
		return nil, errors.New("unbalanced '(': close pod(...)")
	}
	return append(items, v[start:]), nil
}

func dependency(name, cond string, hasCond bool) (condition.Dependency, error) {
	if !validContainerName(name) {
		return condition.Dependency{}, fmt.Errorf("%s is not a container name (lowercase letters, digits and '-', at most 63)", Quote(name))
	}
	c := condition.Default
	if hasCond {
		var err error
		if c, err = condition.Parse(cond); err != nil {
			return condition.Dependency{}, fmt.Errorf("%s: %w", name, err)
		}
	}
	return condition.Dependency{Container: name, Condition: c}, nil
}

// Probe is a readiness check the daemon runs itself, from inside the pod's network namespace: a
// podorder.dev/probe.<c> annotation, or a container's own readinessProbe translated by the daemon.
type Probe struct {
	// Kind is "tcp" (connect), "http" or "https" (GET, 2xx/3xx passes) or "grpc" (the gRPC health
	// service answers SERVING).
	Kind string
	Port int
	// Path is the HTTP path, starting with "/".
	Path string
	// Headers are sent with an HTTP GET; a Host header sets the request's host.
	Headers []Header
	// Service is the gRPC health service name; "" asks for the server as a whole.
	Service string
	// Readiness is set for a container's readinessProbe, which kubelet sends to the pod's IP: a
	// socket listening on loopback only does not pass it, as it would not pass kubelet's.
	Readiness bool
	// InitialDelay is how long after the container's process started the first attempt may run.
	InitialDelay time.Duration
	// SuccessThreshold is how many consecutive attempts must pass; below 1 means 1.
	SuccessThreshold int
	// Timeout bounds one attempt; zero leaves the daemon's own bound.
	Timeout time.Duration
}

// Header is one HTTP header of a probe.
type Header struct{ Name, Value string }

// String formats the probe as it is declared.
func (p *Probe) String() string {
	var s string
	switch p.Kind {
	case "http", "https":
		s = fmt.Sprintf("%s:%d%s", p.Kind, p.Port, p.Path)
	case "grpc":
		s = fmt.Sprintf("grpc:%d", p.Port)
		if p.Service != "" {
			s += "/" + p.Service
		}
	default:
		s = fmt.Sprintf("tcp:%d", p.Port)
	}
	if p.Readiness {
		s = "readinessProbe " + s
	}
	return s
}

// ParseProbe reads "tcp:5432" or "http:8080/healthz".
func ParseProbe(v string) (*Probe, error) {
	kind, rest, _ := strings.Cut(strings.TrimSpace(v), ":")
	port, path := rest, ""
	if i := strings.IndexByte(rest, '/'); i >= 0 {
		port, path = rest[:i], rest[i:]
	}
	n, err := strconv.Atoi(port)
	bad := err != nil || n < 1 || n > 65535
	switch {
	case kind == "tcp" && !bad && path == "":
		return &Probe{Kind: kind, Port: n}, nil
	case kind == "http" && !bad && printableASCII(path):
		if path == "" {
			path = "/"
		}
		return &Probe{Kind: kind, Port: n, Path: path}, nil
	}
	return nil, fmt.Errorf("probe %s: want tcp:<port> or http:<port>/<path>, port 1-65535, the path printable ASCII", Quote(v))
}

// printableASCII rejects control characters, spaces and non-ASCII in an HTTP path: Go's client refuses
// them only when the request is sent, which would fail every attempt silently.
func printableASCII(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] <= ' ' || s[i] >= 0x7f {
			return false
		}
	}
	return true
}

// validContainerName accepts a Kubernetes container name: an RFC 1123 DNS label.
func validContainerName(s string) bool {
	if s == "" || len(s) > 63 || s[0] == '-' || s[len(s)-1] == '-' {
		return false
	}
	for _, r := range s {
		if !(r >= 'a' && r <= 'z' || r >= '0' && r <= '9' || r == '-') {
			return false
		}
	}
	return true
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

// PodDependency is a dependency on other pods: met when at least one pod matching Selector (in
// Namespace, or the dependent's own namespace when empty) meets Condition for all its containers.
type PodDependency struct {
	// Name is the synthetic dependency name the hook waits on, derived from the declaration.
	Name string
	// Namespace is set only for a cross-namespace dependency, "pod(<namespace>/<selector>)".
	Namespace string
	// Selector is an equality-based label selector, "app=kafka,tier=broker".
	Selector  string
	Condition condition.Condition
}

// String formats the dependency as it is declared.
func (d PodDependency) String() string {
	sel := d.Selector
	if d.Namespace != "" {
		sel = d.Namespace + "/" + sel
	}
	return fmt.Sprintf("pod(%s):%s", sel, d.Condition)
}

// parsePodDependency reads "pod(app=mysql):ready" or "pod(other-ns/app=mysql)".
func parsePodDependency(item string) (PodDependency, error) {
	inner, rest, ok := strings.Cut(strings.TrimPrefix(item, "pod("), ")")
	if !ok {
		return PodDependency{}, fmt.Errorf("%s: want pod(<label>=<value>[,...])[:condition]", Quote(item))
	}
	d := PodDependency{Condition: condition.Default}
	if rest = strings.TrimSpace(rest); rest != "" {
		c, ok := strings.CutPrefix(rest, ":")
		if !ok {
			return PodDependency{}, fmt.Errorf("%s: want pod(...):<condition> after the selector", Quote(item))
		}
		cond, err := condition.Parse(strings.TrimSpace(c))
		if err != nil {
			return PodDependency{}, fmt.Errorf("%s: %w", Quote(item), err)
		}
		d.Condition = cond
	}
	if ns, sel, hasNS := strings.Cut(inner, "/"); hasNS {
		if !validContainerName(ns) {
			return PodDependency{}, fmt.Errorf("%s: %s is not a namespace name", Quote(item), Quote(ns))
		}
		d.Namespace, inner = ns, sel
	}
	var terms []string
	for _, term := range strings.Split(inner, ",") {
		k, v, ok := strings.Cut(strings.TrimSpace(term), "=")
		k, v = strings.TrimSpace(k), strings.TrimSpace(v)
		if !ok || !validLabelKey(k) || !validLabelValue(v) {
			return PodDependency{}, fmt.Errorf("%s: selector term %s: want <label>=<value>", Quote(item), Quote(strings.TrimSpace(term)))
		}
		terms = append(terms, k+"="+v)
	}
	sort.Strings(terms)
	d.Selector = strings.Join(terms, ",")
	d.Name = podDependencyName(d)
	return d, nil
}

// podDependencyName names the synthetic tombstone of a pod dependency. The dot cannot appear in a
// container name (a DNS label), so it never names a container; 128 bits of SHA-256 of the normalised
// declaration never name two different selectors in practice (and checkPodLimits refuses it if so).
func podDependencyName(d PodDependency) string {
	sum := sha256.Sum256([]byte(d.String()))
	return "pod." + hex.EncodeToString(sum[:16])
}

func validLabelKey(k string) bool {
	prefix, name, hasPrefix := strings.Cut(k, "/")
	if !hasPrefix {
		name, prefix = prefix, ""
	}
	if hasPrefix && (prefix == "" || len(prefix) > 253 || strings.Trim(prefix, "abcdefghijklmnopqrstuvwxyz0123456789-.") != "") {
		return false
	}
	return name != "" && validLabelValue(name)
}

func validLabelValue(v string) bool {
	if len(v) > 63 {
		return false
	}
	for i, r := range v {
		alnum := r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9'
		if !alnum && (i == 0 || i == len(v)-1 || (r != '-' && r != '_' && r != '.')) {
			return false
		}
	}
	return true
}

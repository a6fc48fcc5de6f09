// Package decl reads what a pod declares to podorder — its podorder.dev/ labels and annotations —
// into per-container Declared, and checks the declarations against each other and, when known, against
// the pod's container names. It is pure: no I/O, so every rule is unit-tested.
//
// API v1, for a dependent container <c>:
//
//	label       podorder.dev/after.<c>: db.cache_started.migrate_completed
//	annotation  podorder.dev/after.<c>: "db, cache:started, migrate:completed"
//	either      podorder.dev/timeout.<c>: "5m"
//	annotation  podorder.dev/probe.<c>: "tcp:5432" | "http:8080/healthz"
//	either      podorder.dev/readiness.<c>: podorder | kubelet | notify
//	annotation  podorder.dev/readiness.<c>: file:/run/ready
//	label       podorder.dev/stop-with.<c>: main.worker_failed
//	annotation  podorder.dev/stop-with.<c>: "main, worker:failed"
//	either      podorder.dev/stop-grace.<c>: "20s"
//	either      podorder.dev/stop-signal.<c>: "SIGINT"
//
// The keys are one table, kinds (keys.go): each kind's reader, and the syntax the admission policy
// checks at `kubectl apply`, which ValidationPolicy renders (policy.go) and go generate writes to
// daemonset/base/validation.yaml.
package decl

import (
	"errors"
	"fmt"
	"path"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"time"
	"unicode/utf8"

	"github.com/podorder/podorder/hooks/dependency"
)

// Domain prefixes every key podorder reads.
const Domain = "podorder.dev/"

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
	// MaxSignals is the most containers of one pod whose readiness is a signal of their own
	// (podorder.dev/readiness.<c>: notify or file:<path>): each costs the daemon a socket or a
	// watch.
	MaxSignals = 16
	// MaxReadinessPath is the longest path of podorder.dev/readiness.<c>: file:<path>.
	MaxReadinessPath = 512
	// MaxTimeout is the longest hold a container may declare.
	MaxTimeout = 24 * time.Hour
	// maxQuoted is how much of a declared value an error message repeats.
	maxQuoted = 80
)

// Declared is what one container of a pod declares, and so everything podorder does for it: for a
// container that waits, its hold; for one that is only waited on or bound with stop-with, no hold at
// all (hence not "Hold").
type Declared struct {
	// After lists the dependencies, sorted by container name; empty for a container that is only
	// waited on. A dependency on other pods appears here under its PodDependency.Name.
	After []dependency.Dependency
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
	// Signal is how the container's own process says it is ready (podorder.dev/readiness.<c>:
	// notify or file:<path>); nil when it declares none. It then alone decides the container's
	// readiness: podorder runs no probe for it and does not wait for kubelet's verdict.
	Signal *Signal
}

// Signal is a readiness the container's own process gives: a READY=1 datagram on its
// NOTIFY_SOCKET, or a path appearing in its mount namespace.
type Signal struct {
	// Kind is ReadinessNotify or ReadinessFile.
	Kind string
	// Path is the absolute, clean path of ReadinessFile.
	Path string
}

// String formats the signal as it is declared: "notify", "file:/run/ready".
func (s *Signal) String() string {
	if s.Kind == ReadinessFile {
		return ReadinessFile + ":" + s.Path
	}
	return s.Kind
}

// ReadinessPath checks the path of podorder.dev/readiness.<c>: file:<path>. It is resolved inside
// the container's root by the daemon, which refuses to leave it anyway; a path that is not
// absolute and clean is refused here so that what the owner wrote is what is watched.
func ReadinessPath(p string) (string, error) {
	const want = "want file:<absolute path>, such as file:/run/ready: clean (no '.', '..', '//' or trailing '/'), printable ASCII without spaces"
	switch {
	case len(p) > MaxReadinessPath:
		return "", fmt.Errorf("the path has %d bytes, more than the %d podorder reads: %s", len(p), MaxReadinessPath, want)
	case !strings.HasPrefix(p, "/") || p == "/":
		return "", fmt.Errorf("path %s is not absolute: %s", Quote(p), want)
	case path.Clean(p) != p:
		return "", fmt.Errorf("path %s is not clean: %s", Quote(p), want)
	}
	for i := 0; i < len(p); i++ {
		if p[i] <= ' ' || p[i] > '~' {
			return "", fmt.Errorf("path %s has a byte that is not printable ASCII: %s", Quote(p), want)
		}
	}
	return p, nil
}

// Pod is a pod's parsed declarations.
type Pod struct {
	// Declared maps container name to its declarations; containers with no key are absent.
	Declared map[string]*Declared
	// errs maps container name to what is wrong with its declarations.
	errs map[string]error
	// errAll fails every container of the pod: the declarations as a whole are over a limit, or a
	// key names no valid container.
	errAll error
	// warnings maps container name to what will likely bite at runtime, though podorder obeys it.
	warnings map[string][]string
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

// For returns the declarations of one container: nil with no error when it has none.
func (p *Pod) For(container string) (*Declared, error) {
	if p.errAll != nil {
		return nil, p.errAll
	}
	if err := p.errs[container]; err != nil {
		return nil, err
	}
	return p.Declared[container], nil
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

func (p *Pod) hold(c string) *Declared {
	h := p.Declared[c]
	if h == nil {
		h = &Declared{Timeout: DefaultTimeout}
		p.Declared[c] = h
	}
	return h
}

// warn records a warning about container c's declarations.
func (p *Pod) warn(c, msg string) {
	if p.warnings == nil {
		p.warnings = map[string][]string{}
	}
	p.warnings[c] = append(p.warnings[c], msg)
}

// Warnings returns what will likely bite at runtime in container c's declarations, though podorder
// obeys them.
func (p *Pod) Warnings(c string) []string { return p.warnings[c] }

func (p *Pod) fail(c string, err error) {
	if prev := p.errs[c]; prev != nil {
		err = errors.Join(prev, err)
	}
	p.errs[c] = err
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

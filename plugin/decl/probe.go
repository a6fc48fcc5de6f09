package decl

import (
	"fmt"
	"strconv"
	"strings"
	"time"
)

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
	return nil, fmt.Errorf("probe %s: %s", Quote(v), probeGrammar)
}

// readProbe reads podorder.dev/probe.<c>.
func (r *reader) readProbe(k key) error {
	pr, err := ParseProbe(k.value)
	if err != nil {
		return err
	}
	r.pod.hold(k.container).Probe = pr
	return nil
}

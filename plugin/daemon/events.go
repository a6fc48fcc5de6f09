//go:build linux

package daemon

import (
	"context"
	"log/slog"
	"sync"

	"github.com/podorder/podorder/plugin"
	"github.com/podorder/podorder/plugin/appready"
	"github.com/podorder/podorder/plugin/kernlisten"
	"github.com/podorder/podorder/plugin/preflight"
	"github.com/podorder/podorder/plugin/probe"
)

// readinessEventsCheck names the source of readiness events in `podorder status`' node lines; it
// is a fact about the node, not a preflight check: polling works, only slower.
const readinessEventsCheck preflight.Check = "readiness_events"

// openListenEvents is kernlisten.Open; tests replace it.
var openListenEvents = func() (probe.ListenSource, error) {
	s, err := kernlisten.Open()
	if err != nil {
		return nil, err
	}
	return s, nil
}

// readinessEvents is which source of LISTEN events the probes follow, and why.
type readinessEvents struct {
	metrics interface{ ReadinessEvents(source string) }
	log     *slog.Logger

	mu             sync.Mutex
	source, reason string
}

// set records the source, in the metric and one log line.
func (e *readinessEvents) set(source, reason string, level slog.Level, err error) {
	e.mu.Lock()
	e.source, e.reason = source, reason
	e.mu.Unlock()
	if e.metrics != nil {
		e.metrics.ReadinessEvents(source)
	}
	attrs := []any{"source", source}
	if err != nil {
		attrs = append(attrs, "error", err)
	}
	e.log.Log(context.Background(), level, "readiness events: "+reason, attrs...)
}

// verdict is the source as a line of `podorder status`.
func (e *readinessEvents) verdict() preflight.Verdict {
	e.mu.Lock()
	defer e.mu.Unlock()
	return preflight.Verdict{Check: readinessEventsCheck, Result: preflight.Pass, Summary: "readiness events: " + e.source, Message: e.reason}
}

const polling = "probes of closed ports poll every 10 ms, backing off to 100 ms"

// followListenEvents makes prober follow the kernel's LISTEN events unless mode is "none" or the
// kernel does not allow them, and keeps the source's state for the metric and `podorder status`.
// When the source fails later, the probes poll again and the state says so.
func followListenEvents(ctx context.Context, mode string, prober *probe.Runner, metrics interface{ ReadinessEvents(string) }, log *slog.Logger) *readinessEvents {
	e := &readinessEvents{metrics: metrics, log: log}
	if mode == "none" {
		e.set("none", "off (--readiness-events=none); "+polling, slog.LevelInfo, nil)
		return e
	}
	src, err := openListenEvents()
	if err != nil {
		e.set("none", "the kernel's LISTEN events are unavailable; "+polling+
			" (they need BTF, kernel 5.8+, and CAP_BPF with CAP_PERFMON or CAP_SYS_ADMIN: docs/security.md)", slog.LevelWarn, err)
		return e
	}
	e.set(kernlisten.Name, "the kernel's LISTEN events (an eBPF program on the raw tracepoint sock:inet_sock_set_state) make waiting probes due at once; "+
		"a closed port is otherwise attempted every 1 s, backing off to 10 s", slog.LevelInfo, nil)
	go func() {
		err := prober.Follow(ctx, src)
		if ctx.Err() != nil {
			return
		}
		e.set("none", "the kernel's LISTEN events stopped; "+polling, slog.LevelWarn, err)
	}()
	return e
}

// appSignals is appready's notify sockets and path watches as the plugin takes them.
type appSignals struct {
	notify *appready.Notifier
	files  *appready.Files
}

func (s appSignals) OpenNotify(podUID, dir string) (plugin.NotifySocket, error) {
	sock, err := s.notify.Open(podUID, dir)
	if err != nil {
		return nil, err
	}
	return sock, nil
}

func (s appSignals) WatchFile(podUID string, pid uint32, path string, ready func()) (func(), error) {
	return s.files.Watch(podUID, pid, path, ready)
}

package preflight

import (
	"log/slog"
	"sync"
)

// Metrics receives each check's result: podorder_preflight_ok{check}, 1 or 0, absent while unknown.
type Metrics interface {
	PreflightChecked(check string, result Result)
}

// Events records Events on the daemon's Node object.
type Events interface {
	NodeEvent(warning bool, reason, message string)
}

// Node holds the latest verdict of each check and reports each change, and only changes: one log
// line (warn for a failure), the metric, a Warning Event on the Node for a failure, and a Normal
// PodorderReady Event whenever the node becomes ready after not being so.
type Node struct {
	log     *slog.Logger
	metrics Metrics // nil: none
	events  Events  // nil: no API

	// mu guards everything that follows.
	mu       sync.Mutex
	verdicts map[Check]Verdict
	ready    bool
}

// NewNode returns a Node whose checks are all unknown; metrics and events may be nil.
func NewNode(log *slog.Logger, metrics Metrics, events Events) *Node {
	n := &Node{log: log, metrics: metrics, events: events, verdicts: map[Check]Verdict{}}
	for _, c := range Checks {
		n.verdicts[c] = Initial(c)
	}
	return n
}

// Observe takes a check's new verdict and reports it if it differs from the previous one.
func (n *Node) Observe(v Verdict) {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.verdicts[v.Check] == v {
		return
	}
	n.verdicts[v.Check] = v
	attrs := []any{"check", string(v.Check), "result", string(v.Result), "summary", v.Summary}
	if v.Result == Fail {
		n.log.Warn(v.Message, append(attrs, "reason", v.Reason)...)
	} else {
		n.log.Info(v.Message, attrs...)
	}
	if n.metrics != nil {
		n.metrics.PreflightChecked(string(v.Check), v.Result)
	}
	if n.events != nil && v.Result == Fail {
		n.events.NodeEvent(true, v.Reason, v.Message)
	}
	msg, ready := Ready(n.verdictsLocked())
	if ready && !n.ready {
		n.log.Info(msg)
		if n.events != nil {
			n.events.NodeEvent(false, ReasonReady, msg)
		}
	}
	n.ready = ready
}

// Verdict returns a check's latest verdict.
func (n *Node) Verdict(c Check) Verdict {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.verdicts[c]
}

// Verdicts returns every check's latest verdict, in the order of Checks, for `podorder status`.
func (n *Node) Verdicts() []Verdict {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.verdictsLocked()
}

func (n *Node) verdictsLocked() []Verdict {
	out := make([]Verdict, 0, len(Checks))
	for _, c := range Checks {
		out = append(out, n.verdicts[c])
	}
	return out
}

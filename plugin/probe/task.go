package probe

import (
	"context"
	"time"

	"github.com/podorder/podorder/plugin/decl"
)

// task is one probe. It is always in exactly one place — the due heap, its pod's waiting
// attempts, or a worker — so it can never be queued twice and the queues are bounded by the
// number of probes.
type task struct {
	pod      *podShare
	probe    *decl.Probe
	port     uint16 // the probe's port, its key for events
	netns    string
	netnsIno uint64  // the inode of its network namespace, to match events; 0 when unknown
	ns       *nsFile // nil for the daemon's own namespace; guarded by Runner.mu unless a worker owns the task
	ready    func()
	interval time.Duration
	timeout  time.Duration
	setns    func(fd, nstype int) error
	ctx      context.Context // cancelled by stop, to free a worker from an attempt that no longer matters
	cancel   context.CancelFunc

	// Guarded by Runner.mu.
	notBefore  time.Time     // when the first attempt was due: no attempt comes sooner
	begun      time.Time     // when the first attempt was due, or the last event came: the back-off counts from it
	period     time.Duration // the current period, Interval until the back-off starts
	slowPeriod time.Duration // the period while events are live and the port is closed, EventInterval at first
	burst      int           // attempts left of the burst an event armed
	closed     bool          // the last attempt found nothing listening on the port
	last       time.Time     // when the last attempt started
	passes     int           // consecutive passed attempts, towards the probe's SuccessThreshold
	at         time.Time     // when the next attempt is due
	index      int           // position in the due heap, -1 when not in it
	busy       bool          // waiting for a worker or running: a worker owns it and will release it
	queued     bool          // waiting for a worker, in its pod's due attempts
	stopped    bool
	passed     bool
	warned     bool // whether entering the namespace failing was already logged
	diagWarned bool // whether listing the listeners failing was already logged
	// slow says the probe's last attempt took slowAttempt or more: a server that answers late or
	// never. Its next attempts share a few workers with every other slow probe of the node, so that
	// slow servers in any number of namespaces leave workers to everyone else.
	slow bool
	// runningSlow is set while a worker runs a slow attempt: it counts in Runner.slowBusy.
	runningSlow bool
}

// taskHeap orders probes by when their next attempt is due.
type taskHeap []*task

func (h taskHeap) Len() int           { return len(h) }
func (h taskHeap) Less(i, j int) bool { return h[i].at.Before(h[j].at) }
func (h taskHeap) Swap(i, j int) {
	h[i], h[j] = h[j], h[i]
	h[i].index = i
	h[j].index = j
}
func (h *taskHeap) Push(x any) {
	t := x.(*task)
	t.index = len(*h)
	*h = append(*h, t)
}
func (h *taskHeap) Pop() any {
	old := *h
	t := old[len(old)-1]
	old[len(old)-1] = nil
	t.index = -1
	*h = old[:len(old)-1]
	return t
}

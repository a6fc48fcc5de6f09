package probe

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"runtime/debug"
	"time"
)

// work runs attempts until no probe is due. Workers exit when idle rather than wait, so the
// pool costs nothing on a node without probes and never exceeds Workers goroutines.
func (r *Runner) work(t *task) {
	for t != nil {
		var tainted bool
		start := time.Now()
		err := r.attempt(t, &tainted)
		if tainted {
			// Run nothing more here, not even a log handler that might open a socket: the thread
			// may still be in the pod's namespace. This goroutine exits still locked to it, so the
			// runtime discards the thread, and a new goroutine takes over its worker slot.
			go r.takeOver(t, start, err)
			return
		}
		r.finish(t, start, err)
		r.mu.Lock()
		t = r.nextLocked()
		r.mu.Unlock()
	}
}

// takeOver finishes the attempt of a worker whose thread was discarded and works in its place,
// so the pool keeps its size.
func (r *Runner) takeOver(t *task, start time.Time, err error) {
	r.logger().Error("cannot return a probe worker to the daemon's network namespace; discarding its thread",
		"netns", t.netns, "probe", t.probe.String(), "error", err)
	r.finish(t, start, err)
	r.mu.Lock()
	t = r.nextLocked()
	r.mu.Unlock()
	r.work(t)
}

// finish records the outcome of one attempt of t and calls ready when it passed.
func (r *Runner) finish(t *task, start time.Time, err error) {
	if r.Attempted != nil && !errors.Is(err, context.Canceled) {
		r.Attempted(err)
	}
	r.mu.Lock()
	t.busy = false
	t.pod.busy--
	t.pod.ns.busy--
	r.running--
	if t.runningSlow {
		r.slowBusy--
		t.runningSlow = false
	}
	slowAfter := slowAttempt
	if t.timeout > 0 {
		slowAfter = min(slowAfter, t.timeout/2)
	}
	t.slow = timedOut(err) || time.Since(start) >= slowAfter
	r.dropLocked(t.pod)
	switch {
	case t.stopped:
		r.releaseLocked(t)
		r.mu.Unlock()
		r.logger().Debug("probe attempt ended after stop", "probe", t.probe.String(), "error", err)
		return
	case err != nil:
		t.passes = 0
		t.closed = errors.Is(err, errNotListening)
		r.scheduleLocked(t, start, true)
		r.mu.Unlock()
		if pe := (*panicError)(nil); errors.As(err, &pe) {
			r.logger().Error("probe attempt panicked", "probe", t.probe.String(), "netns", t.netns, "panic", pe.value, "stack", pe.stack)
		}
		r.logger().Debug("probe attempt failed", "probe", t.probe.String(), "netns", t.netns, "error", err)
		return
	case t.passes+1 < t.probe.SuccessThreshold:
		t.passes++
		r.scheduleLocked(t, start, false)
		r.mu.Unlock()
		return
	}
	t.passed = true
	t.cancel()
	r.endLocked(t)
	r.releaseLocked(t)
	r.mu.Unlock()
	defer func() {
		if v := recover(); v != nil {
			r.logger().Error("probe ready callback panicked", "probe", t.probe.String(), "panic", v, "stack", string(debug.Stack()))
		}
	}()
	t.ready()
}

// slowAttempt is how long an attempt may take before its probe counts as slow: a probe of the pod's
// own network answers in a few milliseconds, even on a loaded node.
const slowAttempt = 250 * time.Millisecond

// timedOut reports whether an attempt ended because its time ran out, rather than with an answer:
// the mark of a server that accepts and never answers.
func timedOut(err error) bool {
	var ne net.Error
	return errors.Is(err, context.DeadlineExceeded) || errors.Is(err, os.ErrDeadlineExceeded) || (errors.As(err, &ne) && ne.Timeout())
}

// panicError is a panic during an attempt, kept to be logged by finish, on a thread known to be
// in the daemon's namespace.
type panicError struct {
	value any
	stack string
}

func (e *panicError) Error() string { return fmt.Sprintf("panic: %v", e.value) }

// attempt runs one check of t. A panic fails the attempt instead of the daemon. *tainted is set
// when the thread could not be returned to the daemon's namespace and is still locked: the caller
// must then exit without unlocking it. attempt logs nothing, as it may end on such a thread.
func (r *Runner) attempt(t *task, tainted *bool) (err error) {
	defer func() {
		if v := recover(); v != nil {
			err = &panicError{value: v, stack: string(debug.Stack())}
		}
	}()
	ctx, cancel := context.WithTimeout(t.ctx, t.timeout)
	defer cancel()
	// t.ns is stable while the worker owns t: it is released only when no worker does.
	conn, addr, err := r.dial(ctx, t, tainted)
	if err != nil {
		return err
	}
	defer conn.Close()
	return check(ctx, conn, addr, t)
}

package kube

import (
	"runtime/debug"
)

// enqueue schedules w for delivery if its answer is known and differs from the last one it was
// given. Called with sel.mu held; the delivery itself runs without it.
func (sel *namespacePods) enqueue(w *watcher) {
	if w.queued || w.stopped || w.gen > sel.syncedGen || (w.sent && w.met == (w.meeting > 0)) {
		return
	}
	w.queued = true
	sel.queue = append(sel.queue, w)
	if !sel.delivering {
		sel.delivering = true
		go sel.deliver()
	}
}

// deliver calls update for the queued watchers, one at a time and without any lock of this package,
// with each watcher's answer as it is when its turn comes: a change undone meanwhile is not
// reported.
func (sel *namespacePods) deliver() {
	for {
		sel.mu.Lock()
		if len(sel.queue) == 0 {
			sel.queue = nil // let a burst's backing array go
			sel.delivering = false
			sel.mu.Unlock()
			return
		}
		w := sel.queue[0]
		sel.queue[0] = nil
		sel.queue = sel.queue[1:]
		w.queued = false
		met := w.meeting > 0
		if w.stopped || (w.sent && w.met == met) {
			sel.mu.Unlock()
			continue
		}
		w.sent, w.met = true, met
		update := w.update
		sel.mu.Unlock()
		sel.call(update, met)
	}
}

// call runs one update, so that a panic in it cannot end the delivery of the others.
func (sel *namespacePods) call(update func(bool), met bool) {
	defer sel.recoverPanic("pod dependency update")
	update(met)
}

// recoverPanic turns a panic into an error log: an event handler that panics would otherwise kill the
// daemon and with it every container it holds.
func (sel *namespacePods) recoverPanic(what string) {
	if r := recover(); r != nil {
		sel.log.Error("panic in "+what, "panic", r, "stack", string(debug.Stack()))
	}
}

package probe

import (
	"slices"
)

// dispatchLocked queues t's due attempt in its pod's turn and starts workers while an idle worker
// slot and an attempt that may run both exist.
func (r *Runner) dispatchLocked(t *task) {
	t.busy, t.queued = true, true
	pod := t.pod
	if len(pod.due) == 0 {
		if len(pod.ns.pods) == 0 {
			r.turns = append(r.turns, pod.ns)
		}
		pod.ns.pods = append(pod.ns.pods, pod)
	}
	pod.due = append(pod.due, t)
	for r.busy < positive(r.Workers, DefaultWorkers) {
		next := r.takeLocked()
		if next == nil {
			return
		}
		r.busy++
		go r.work(next)
	}
}

// takeLocked takes the next waiting attempt: that of the first namespace in turn below its worker
// limit, of its first pod in turn below its limit, oldest first. The namespace and the pod then
// wait for their next turn behind the others. A namespace or pod at its limit keeps its place:
// its attempts wait for one of its own to end, which frees a worker that takes them first.
// It costs O(namespaces + pods waiting), with no allocation once the slices have grown.
func (r *Runner) takeLocked() *task {
	workers := positive(r.Workers, DefaultWorkers)
	podLimit, nsLimit, slowLimit := max(1, workers/2), max(1, workers-1), max(1, workers/2)
	for i, ns := range r.turns {
		if ns.busy >= nsLimit {
			continue
		}
		for j, pod := range ns.pods {
			if pod.busy >= podLimit || (pod.due[0].slow && r.slowBusy >= slowLimit) ||
				// The last free worker is for a pod with nothing running: no set of pods
				// can keep a newcomer waiting for one of their attempts to end.
				(pod.busy > 0 && r.running >= workers-1) {
				continue
			}
			t := pod.due[0]
			pod.due = slices.Delete(pod.due, 0, 1)
			ns.pods = slices.Delete(ns.pods, j, j+1)
			if len(pod.due) > 0 {
				ns.pods = append(ns.pods, pod)
			}
			r.turns = slices.Delete(r.turns, i, i+1)
			if len(ns.pods) > 0 {
				r.turns = append(r.turns, ns)
			}
			t.queued = false
			pod.busy++
			ns.busy++
			r.running++
			if t.runningSlow = t.slow; t.slow {
				r.slowBusy++
			}
			return t
		}
	}
	return nil
}

// unqueueLocked takes a stopped t out of its pod's waiting attempts.
func (r *Runner) unqueueLocked(t *task) {
	t.queued, t.busy = false, false
	pod := t.pod
	pod.due = slices.DeleteFunc(pod.due, func(d *task) bool { return d == t })
	if len(pod.due) > 0 {
		return
	}
	ns := pod.ns
	ns.pods = slices.DeleteFunc(ns.pods, func(p *podShare) bool { return p == pod })
	if len(ns.pods) == 0 {
		r.turns = slices.DeleteFunc(r.turns, func(n *nsShare) bool { return n == ns })
	}
}

// nextLocked takes the next waiting attempt, or gives up the worker slot when none may run.
func (r *Runner) nextLocked() *task {
	if t := r.takeLocked(); t != nil {
		return t
	}
	r.busy--
	return nil
}

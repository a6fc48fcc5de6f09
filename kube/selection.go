package kube

import (
	"context"
	"fmt"
	"log/slog"
	"runtime/debug"
	"sync"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	labelop "k8s.io/apimachinery/pkg/selection"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/tools/cache"

	"github.com/podorder/podorder/condition"
)

// Dependencies on other pods are answered in memory over one pod informer per namespace, never one
// per selector: a pod may declare thousands of distinct selectors, and an informer each (a LIST, a
// WATCH and a cache apiece) would cost the API server and this daemon's heap in proportion to them.
//
// Cost, with P pods in a namespace and W watchers on it:
//   - memory: the informer's cache of P pods stripped by stripPod, one map entry per pod for
//     the handler's view, and O(1) per watcher (a count, no per-pod state);
//   - an event for a pod with L labels: O(L) index look-ups, then one label match and one PodMeets
//     for each watcher whose indexed term (one k=v of its selector) the pod carries before or after
//     the event, plus the watchers with no indexable term; at worst O(W), when every selector
//     shares the pod's term;
//   - Watch: one pass over the P pods, to start the new watcher's count.

// selection is the pods of one namespace, listed and watched once for every dependency on pods of
// that namespace, and stopped when the last of them is gone.
type selection struct {
	namespace string
	log       *slog.Logger
	informer  cache.SharedIndexInformer
	cancel    context.CancelFunc
	// done is closed once the informer has stopped, so that its end can be awaited.
	done chan struct{}
	// refs counts the watchers that have not stopped; guarded by Source.mu, which decides when the
	// informer ends.
	refs int

	mu sync.Mutex
	// synced is set once the first list has been handled: before, "no pod meets" is not an answer.
	synced bool
	// pods is the namespace as the event handler has seen it, by store key. Watchers are counted
	// against this view rather than the informer's store, which runs ahead of the events still to
	// be handled and would count a change twice or not at all.
	pods map[string]*corev1.Pod
	// byTerm and unindexed hold every active watcher, so that an event reaches only the watchers
	// its pod's labels can concern.
	byTerm    map[term]map[*watcher]struct{}
	unindexed map[*watcher]struct{}
	// queue holds the watchers whose answer may have changed, delivered in order by one goroutine
	// at a time (delivering), so that one watcher's updates never overlap or cross.
	queue      []*watcher
	delivering bool
}

// term is one label a selector requires, which indexes its watcher.
type term struct{ key, value string }

// watcher is one Watch call. Its fields below selector are guarded by selection.mu.
type watcher struct {
	selector labels.Selector
	cond     condition.Condition
	update   func(bool)
	term     *term // nil when the selector requires no single label value

	meeting   int  // pods of the namespace that match selector and meet cond
	sent, met bool // whether update was called, and with what
	queued    bool
	stopped   bool
}

// Watch implements plugin.PodWatcher over a namespace-wide informer shared by every watcher of that
// namespace.
func (s *Source) Watch(namespace, selector string, cond condition.Condition, update func(met bool)) (stop func()) {
	parsed, err := labels.Parse(selector)
	if err != nil {
		// The plugin validates selectors first; one that still fails here can never be met, and
		// answering false would look like a pod that is merely not ready yet.
		s.log.Error("pod dependency selector not usable; it will never be met", "namespace", namespace, "selector", selector, "error", err)
		return func() {}
	}
	w := &watcher{selector: parsed, cond: cond, update: update, term: indexTerm(parsed)}

	s.mu.Lock()
	sel := s.selected[namespace]
	if sel == nil {
		sel = s.newSelection(namespace)
		s.selected[namespace] = sel
	}
	sel.refs++
	s.mu.Unlock()

	// The plugin calls Watch under its own lock and update takes it: add only queues the first
	// answer, for the delivery goroutine.
	sel.add(w)

	var once sync.Once
	return func() {
		once.Do(func() {
			sel.remove(w)
			s.release(sel)
		})
	}
}

// release drops one watcher's hold on sel and stops its informer with the last one.
func (s *Source) release(sel *selection) {
	s.mu.Lock()
	defer s.mu.Unlock()
	sel.refs--
	if sel.refs > 0 {
		return
	}
	if s.selected[sel.namespace] == sel {
		delete(s.selected, sel.namespace)
	}
	sel.cancel()
}

// newSelection starts the informer of a namespace. Called with s.mu held, so that two first
// watchers of a namespace cannot start two informers.
func (s *Source) newSelection(namespace string) *selection {
	parent := s.ctx
	if parent == nil {
		// Watch before Start: still answer, and stop with stop.
		parent = context.Background()
	}
	ctx, cancel := context.WithCancel(parent)
	factory := informers.NewSharedInformerFactoryWithOptions(s.client, 0, informers.WithNamespace(namespace))
	sel := &selection{
		namespace: namespace,
		log:       s.log.With("namespace", namespace),
		informer:  factory.Core().V1().Pods().Informer(),
		cancel:    cancel,
		done:      make(chan struct{}),
		pods:      map[string]*corev1.Pod{},
		byTerm:    map[term]map[*watcher]struct{}{},
		unindexed: map[*watcher]struct{}{},
	}
	// Both only fail on an informer that has already run, and this one has not.
	if err := sel.informer.SetTransform(stripPod); err != nil {
		sel.log.Error("pod informer keeps whole pods", "error", err)
	}
	reg, err := sel.informer.AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc:    func(obj any) { sel.observe(obj, false) },
		UpdateFunc: func(_, obj any) { sel.observe(obj, false) },
		DeleteFunc: func(obj any) { sel.observe(obj, true) },
	})
	if err != nil {
		sel.log.Error("watch pods for pod dependencies", "error", err)
		close(sel.done)
		return sel
	}
	go func() {
		defer close(sel.done)
		sel.informer.RunWithContext(ctx)
	}()
	go func() {
		// The handler's own sync, not the informer's: it also means every event of the first
		// list has reached observe.
		select {
		case <-reg.HasSyncedChecker().Done():
			sel.markSynced()
		case <-ctx.Done():
		}
	}()
	return sel
}

// indexTerm picks a label that every pod matching selector carries, or nil if there is none.
func indexTerm(selector labels.Selector) *term {
	reqs, selectable := selector.Requirements()
	if !selectable {
		return nil
	}
	for _, r := range reqs {
		switch r.Operator() {
		case labelop.Equals, labelop.DoubleEquals, labelop.In:
			if vs := r.ValuesUnsorted(); len(vs) == 1 {
				return &term{r.Key(), vs[0]}
			}
		}
	}
	return nil
}

// counts is 1 when pod exists, matches w's selector and meets w's condition.
func (w *watcher) counts(pod *corev1.Pod) int {
	if pod != nil && w.selector.Matches(labels.Set(pod.Labels)) && PodMeets(pod, w.cond) {
		return 1
	}
	return 0
}

// add starts counting for w and, once the namespace is listed, queues its first answer.
func (sel *selection) add(w *watcher) {
	sel.mu.Lock()
	defer sel.mu.Unlock()
	if w.term != nil {
		set := sel.byTerm[*w.term]
		if set == nil {
			set = map[*watcher]struct{}{}
			sel.byTerm[*w.term] = set
		}
		set[w] = struct{}{}
	} else {
		sel.unindexed[w] = struct{}{}
	}
	for _, pod := range sel.pods {
		w.meeting += w.counts(pod)
	}
	if sel.synced {
		sel.enqueue(w)
	}
}

// remove stops w's updates, including any already queued.
func (sel *selection) remove(w *watcher) {
	sel.mu.Lock()
	defer sel.mu.Unlock()
	w.stopped = true
	if w.term == nil {
		delete(sel.unindexed, w)
		return
	}
	if set := sel.byTerm[*w.term]; set != nil {
		delete(set, w)
		if len(set) == 0 {
			delete(sel.byTerm, *w.term)
		}
	}
}

// markSynced gives every watcher its first answer, now that the whole namespace has been seen.
func (sel *selection) markSynced() {
	sel.mu.Lock()
	defer sel.mu.Unlock()
	sel.synced = true
	for w := range sel.unindexed {
		sel.enqueue(w)
	}
	for _, set := range sel.byTerm {
		for w := range set {
			sel.enqueue(w)
		}
	}
}

// observe applies one informer event to the namespace view and to the counts of the watchers it
// concerns. deleted events carry the last state or a tombstone, and only their key is used: the
// state that was counted is the one in sel.pods.
func (sel *selection) observe(obj any, deleted bool) {
	defer sel.recoverPanic("pod event")
	key, err := cache.DeletionHandlingMetaNamespaceKeyFunc(obj)
	if err != nil {
		sel.log.Error("pod event without a usable key", "error", err)
		return
	}
	var pod *corev1.Pod
	if !deleted {
		p, ok := obj.(*corev1.Pod)
		if !ok || p == nil {
			sel.log.Error("pod event with an unexpected object", "type", fmt.Sprintf("%T", obj))
			return
		}
		pod = p
	}
	sel.mu.Lock()
	defer sel.mu.Unlock()
	old := sel.pods[key]
	if pod == nil {
		delete(sel.pods, key)
	} else {
		sel.pods[key] = pod
	}
	sel.recount(old, pod)
}

// recount moves the counts of the watchers concerned from old to pod, either of which may be nil.
// A watcher is concerned only if its indexed term is a label of old or of pod, or it has none:
// otherwise its selector matches neither and its count cannot change.
func (sel *selection) recount(old, pod *corev1.Pod) {
	visit := func(w *watcher) {
		if d := w.counts(pod) - w.counts(old); d != 0 {
			w.meeting += d
			if sel.synced {
				sel.enqueue(w)
			}
		}
	}
	for w := range sel.unindexed {
		visit(w)
	}
	var now map[string]string
	if pod != nil {
		now = pod.Labels
		for k, v := range now {
			for w := range sel.byTerm[term{k, v}] {
				visit(w)
			}
		}
	}
	if old != nil {
		for k, v := range old.Labels {
			if nv, ok := now[k]; ok && nv == v {
				continue // visited above
			}
			for w := range sel.byTerm[term{k, v}] {
				visit(w)
			}
		}
	}
}

// enqueue schedules w for delivery if its answer differs from the last one it was given. Called
// with sel.mu held; the delivery itself runs without it.
func (sel *selection) enqueue(w *watcher) {
	if w.queued || w.stopped || (w.sent && w.met == (w.meeting > 0)) {
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
func (sel *selection) deliver() {
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
func (sel *selection) call(update func(bool), met bool) {
	defer sel.recoverPanic("pod dependency update")
	update(met)
}

// recoverPanic turns a panic into an error log: an event handler that panics would otherwise kill the
// daemon and with it every container it holds.
func (sel *selection) recoverPanic(what string) {
	if r := recover(); r != nil {
		sel.log.Error("panic in "+what, "panic", r, "stack", string(debug.Stack()))
	}
}

// stripPod keeps what label matching and PodMeets read, so that a namespace-wide cache costs about
// a name, labels and a few statuses per pod; managedFields, annotations, specs and messages, often
// most of a pod's size, are dropped. Whoever makes PodMeets read more must keep it here too.
// Anything else, such as a tombstone, passes through as it is.
func stripPod(obj any) (any, error) {
	pod, ok := obj.(*corev1.Pod)
	if !ok || pod == nil {
		return obj, nil
	}
	out := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{
		Name:              pod.Name,
		Namespace:         pod.Namespace,
		UID:               pod.UID,
		ResourceVersion:   pod.ResourceVersion,
		Labels:            pod.Labels,
		DeletionTimestamp: pod.DeletionTimestamp,
	}}
	if n := len(pod.Spec.Containers); n > 0 {
		out.Spec.Containers = make([]corev1.Container, n)
		for i, c := range pod.Spec.Containers {
			out.Spec.Containers[i].Name = c.Name
		}
	}
	out.Status.Phase = pod.Status.Phase
	if n := len(pod.Status.Conditions); n > 0 {
		out.Status.Conditions = make([]corev1.PodCondition, n)
		for i, c := range pod.Status.Conditions {
			out.Status.Conditions[i] = corev1.PodCondition{Type: c.Type, Status: c.Status}
		}
	}
	if n := len(pod.Status.ContainerStatuses); n > 0 {
		out.Status.ContainerStatuses = make([]corev1.ContainerStatus, n)
		for i, cs := range pod.Status.ContainerStatuses {
			out.Status.ContainerStatuses[i] = corev1.ContainerStatus{Name: cs.Name, Started: cs.Started, State: stripState(cs.State)}
		}
	}
	return out, nil
}

// stripState drops a state's messages: a termination message alone may be 4 KiB per container.
func stripState(st corev1.ContainerState) corev1.ContainerState {
	var out corev1.ContainerState
	if st.Running != nil {
		out.Running = &corev1.ContainerStateRunning{StartedAt: st.Running.StartedAt}
	}
	if st.Waiting != nil {
		out.Waiting = &corev1.ContainerStateWaiting{Reason: st.Waiting.Reason}
	}
	if st.Terminated != nil {
		out.Terminated = &corev1.ContainerStateTerminated{ExitCode: st.Terminated.ExitCode, Reason: st.Terminated.Reason}
	}
	return out
}

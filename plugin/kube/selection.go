package kube

import (
	"context"
	"fmt"
	"log/slog"
	"runtime/debug"
	"slices"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/labels"
	labelop "k8s.io/apimachinery/pkg/selection"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/cache"

	"github.com/podorder/podorder/hooks/condition"
)

// Dependencies on other pods are answered in memory over one pod informer per namespace, never one
// per selector: a pod may declare thousands of distinct selectors, and an informer each (a LIST, a
// WATCH and a cache apiece) would cost the API server and this daemon's heap in proportion to them.
//
// Cost, with P pods in a namespace and W watchers on it:
//   - memory: the informer's cache of P pods stripped by stripPod to the label keys the
//     watchers' selectors use (at most MaxLabelKeys), one map entry per pod for the handler's
//     view, and O(1) per watcher (a count, no per-pod state);
//   - an event for a pod with L labels: O(L) index look-ups, then one label match and one PodMeets
//     for each watcher whose indexed term (one k=v of its selector) the pod carries before or after
//     the event, plus the watchers with no indexable term; at worst O(W), when every selector
//     shares the pod's term;
//   - Watch: one pass over the P pods, to start the new watcher's count; and, when its selector
//     uses a label key the namespace's cache does not keep, a new LIST shared by the Watch calls
//     of the next relistDelay (a pod's dependencies come together).

// MaxLabelKeys bounds the distinct label keys the selectors on one namespace's pods may use at once.
// The cache keeps these labels of each pod and no others, whatever number of labels a tenant gives
// its pods; each new key costs a new LIST of the namespace, which this bounds too.
const MaxLabelKeys = 64

// selection is the pods of one namespace, listed and watched once for every dependency on pods of
// that namespace, and stopped when the last of them is gone.
type selection struct {
	namespace string
	log       *slog.Logger
	client    kubernetes.Interface
	ctx       context.Context
	cancel    context.CancelFunc
	// done is closed once the selection has ended and its informer has stopped, so that its end can
	// be awaited.
	done chan struct{}
	// refs counts the watchers that have not stopped; guarded by Source.mu, which decides when the
	// informer ends.
	refs int

	mu sync.Mutex
	// feed is the informer in use, replaced by one that keeps more label keys when a watcher
	// needs them; events of any other are ignored.
	feed *feed
	// keyRefs counts, for each label key, the active watchers whose selector uses it.
	keyRefs map[string]int
	// pending is the generation of the feed about to replace feed, 0 if none.
	pending int
	// syncedGen is the generation of the newest feed whose first list has been handled. A watcher
	// is answered only once the feed it needs has been: before, "no pod meets" is not an answer.
	syncedGen int
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

// feed is one informer of the namespace's pods, keeping the labels of keys and no others.
type feed struct {
	gen      int
	keys     map[string]struct{}
	informer cache.SharedIndexInformer
	cancel   context.CancelFunc
	done     chan struct{}
	// seen holds the pods this feed has reported until its first list has been handled; those of
	// the view it has not are gone. Guarded by selection.mu.
	seen map[string]struct{}
}

// watcher is one Watch call. Its fields below selector are guarded by selection.mu.
type watcher struct {
	selector labels.Selector
	cond     condition.Condition
	update   func(bool)
	term     *term // nil when the selector requires no single label value
	keys     []string
	gen      int // the feed whose first list must be handled before answering

	meeting   int  // pods of the namespace that match selector and meet cond
	sent, met bool // whether update was called, and with what
	queued    bool
	stopped   bool
}

// Watch implements kubeapi.PodWatcher over a namespace-wide informer shared by every watcher of that
// namespace. A selector that cannot be parsed, or that would take the namespace's label keys past
// MaxLabelKeys, is refused with an error that says why, for the plugin to refuse the container.
func (s *Source) Watch(namespace, selector string, cond condition.Condition, update func(met bool)) (stop func(), err error) {
	parsed, err := labels.Parse(selector)
	if err != nil {
		// The plugin validates selectors first; one that still fails here can never be met, and
		// answering false would look like a pod that is merely not ready yet.
		return nil, fmt.Errorf("selector %q: %w", selector, err)
	}
	w := &watcher{selector: parsed, cond: cond, update: update, term: indexTerm(parsed), keys: selectorKeys(parsed)}

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
	if err := sel.add(w); err != nil {
		s.release(sel)
		return nil, err
	}

	var once sync.Once
	return func() {
		once.Do(func() {
			sel.remove(w)
			s.release(sel)
		})
	}, nil
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

// newSelection prepares the pods of a namespace; its first watcher starts the informer. Called
// with s.mu held, so that two first watchers of a namespace cannot make two selections.
func (s *Source) newSelection(namespace string) *selection {
	parent := s.ctx
	if parent == nil {
		// Watch before Start: still answer, and stop with stop.
		parent = context.Background()
	}
	ctx, cancel := context.WithCancel(parent)
	sel := &selection{
		namespace: namespace,
		log:       s.log.With("namespace", namespace),
		client:    s.client,
		ctx:       ctx,
		cancel:    cancel,
		done:      make(chan struct{}),
		keyRefs:   map[string]int{},
		pods:      map[string]*corev1.Pod{},
		byTerm:    map[term]map[*watcher]struct{}{},
		unindexed: map[*watcher]struct{}{},
	}
	go func() {
		<-ctx.Done()
		// No feed starts once ctx has ended (startFeedLocked), so this one is the last.
		sel.mu.Lock()
		f := sel.feed
		sel.mu.Unlock()
		if f != nil {
			<-f.done
		}
		close(sel.done)
	}()
	return sel
}

// relistDelay gathers the new label keys of a burst of Watch calls, such as one pod's dependencies,
// into one new LIST of the namespace.
var relistDelay = 100 * time.Millisecond

// restartLocked has the feed replaced by one that keeps the label keys the watchers use now: pods
// already in the view were stripped of the new keys. The first feed starts at once; a replacement
// after relistDelay, while the current feed goes on serving the watchers that do not need it.
// Called with sel.mu held.
func (sel *selection) restartLocked() {
	switch {
	case sel.feed == nil:
		sel.startFeedLocked(1)
	case sel.pending == 0:
		sel.pending = sel.feed.gen + 1
		time.AfterFunc(relistDelay, func() {
			sel.mu.Lock()
			defer sel.mu.Unlock()
			gen := sel.pending
			sel.pending = 0
			sel.startFeedLocked(gen)
		})
	}
}

// startFeedLocked replaces the feed by one of generation gen that keeps the label keys the
// watchers use now. The view is kept, and every pod the new feed lists replaces its older copy, so
// that each watcher's count stays the sum over the view; watchers that need the new feed wait for
// its first list. Called with sel.mu held.
func (sel *selection) startFeedLocked(gen int) {
	if sel.ctx.Err() != nil {
		return
	}
	if old := sel.feed; old != nil {
		old.cancel()
	}
	keys := make(map[string]struct{}, len(sel.keyRefs))
	for k := range sel.keyRefs {
		keys[k] = struct{}{}
	}
	ctx, cancel := context.WithCancel(sel.ctx)
	f := &feed{
		gen:      gen,
		keys:     keys,
		informer: informers.NewSharedInformerFactoryWithOptions(sel.client, 0, informers.WithNamespace(sel.namespace)).Core().V1().Pods().Informer(),
		cancel:   cancel,
		done:     make(chan struct{}),
		seen:     map[string]struct{}{},
	}
	sel.feed = f
	// Both only fail on an informer that has already run, and this one has not.
	if err := f.informer.SetTransform(func(obj any) (any, error) { return stripPod(obj, keys) }); err != nil {
		sel.log.Error("pod informer keeps whole pods", "error", err)
	}
	reg, err := f.informer.AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc:    func(obj any) { sel.observe(f, obj, false) },
		UpdateFunc: func(_, obj any) { sel.observe(f, obj, false) },
		DeleteFunc: func(obj any) { sel.observe(f, obj, true) },
	})
	if err != nil {
		sel.log.Error("watch pods for pod dependencies", "error", err)
		close(f.done)
		return
	}
	go func() {
		defer close(f.done)
		f.informer.RunWithContext(ctx)
	}()
	go func() {
		// The handler's own sync, not the informer's: it also means every event of the first
		// list has reached observe.
		select {
		case <-reg.HasSyncedChecker().Done():
			sel.feedSynced(f)
		case <-ctx.Done():
		}
	}()
}

// selectorKeys lists the label keys selector reads.
func selectorKeys(selector labels.Selector) []string {
	reqs, _ := selector.Requirements()
	var keys []string
	for _, r := range reqs {
		if !slices.Contains(keys, r.Key()) {
			keys = append(keys, r.Key())
		}
	}
	return keys
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

// add starts counting for w and, once the namespace is listed with the labels w's selector reads,
// queues its first answer. It refuses a selector that would take the namespace's label keys past
// MaxLabelKeys.
func (sel *selection) add(w *watcher) error {
	sel.mu.Lock()
	defer sel.mu.Unlock()
	var missing []string
	for _, k := range w.keys {
		if sel.keyRefs[k] == 0 {
			missing = append(missing, k)
		}
	}
	if n := len(sel.keyRefs) + len(missing); n > MaxLabelKeys {
		return fmt.Errorf("the selectors on pods of namespace %s would use %d label keys, more than the %d podorder keeps per namespace: select on labels that other dependencies on this namespace already use",
			sel.namespace, n, MaxLabelKeys)
	}
	for _, k := range w.keys {
		sel.keyRefs[k]++
	}
	restart := sel.feed == nil
	if !restart {
		for _, k := range w.keys {
			if _, ok := sel.feed.keys[k]; !ok {
				restart = true
			}
		}
	}
	if restart {
		sel.restartLocked()
	}
	switch {
	case restart && sel.pending != 0:
		w.gen = sel.pending
	case sel.feed != nil:
		w.gen = sel.feed.gen
	}
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
	sel.enqueue(w)
	return nil
}

// remove stops w's updates, including any already queued.
func (sel *selection) remove(w *watcher) {
	sel.mu.Lock()
	defer sel.mu.Unlock()
	w.stopped = true
	for _, k := range w.keys {
		// The feed keeps the key until a new key restarts it: dropping it now would cost a LIST.
		if sel.keyRefs[k]--; sel.keyRefs[k] <= 0 {
			delete(sel.keyRefs, k)
		}
	}
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

// feedSynced drops from the view the pods f did not list, which are gone, and gives every watcher
// waiting for f its first answer, now that the whole namespace has been seen with its labels.
func (sel *selection) feedSynced(f *feed) {
	sel.mu.Lock()
	defer sel.mu.Unlock()
	if sel.feed != f {
		return
	}
	for key, pod := range sel.pods {
		if _, ok := f.seen[key]; !ok {
			delete(sel.pods, key)
			sel.recount(pod, nil)
		}
	}
	f.seen = nil
	sel.syncedGen = f.gen
	for w := range sel.unindexed {
		sel.enqueue(w)
	}
	for _, set := range sel.byTerm {
		for w := range set {
			sel.enqueue(w)
		}
	}
}

// observe applies one event of feed f to the namespace view and to the counts of the watchers it
// concerns. deleted events carry the last state or a tombstone, and only their key is used: the
// state that was counted is the one in sel.pods.
func (sel *selection) observe(f *feed, obj any, deleted bool) {
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
	if sel.feed != f {
		return // a feed replaced, still draining
	}
	if f.seen != nil {
		f.seen[key] = struct{}{}
	}
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
			sel.enqueue(w)
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

// enqueue schedules w for delivery if its answer is known and differs from the last one it was
// given. Called with sel.mu held; the delivery itself runs without it.
func (sel *selection) enqueue(w *watcher) {
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
// a name, the labels of keys and a few statuses per pod; managedFields, annotations, other labels,
// specs and messages, often most of a pod's size, are dropped. Whoever makes PodMeets read more
// must keep it here too. Anything else, such as a tombstone, passes through as it is.
func stripPod(obj any, keys map[string]struct{}) (any, error) {
	pod, ok := obj.(*corev1.Pod)
	if !ok || pod == nil {
		return obj, nil
	}
	out := &corev1.Pod{ObjectMeta: strippedMeta(pod)}
	// Over the keys, not the labels: a pod may carry thousands.
	for k := range keys {
		if v, ok := pod.Labels[k]; ok {
			if out.Labels == nil {
				out.Labels = map[string]string{}
			}
			out.Labels[k] = v
		}
	}
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

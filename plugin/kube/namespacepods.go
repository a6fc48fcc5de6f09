package kube

import (
	"context"
	"fmt"
	"log/slog"
	"sync"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/client-go/kubernetes"

	"github.com/podorder/podorder/hooks/dependency"
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

// namespacePods is the pods of one namespace, listed and watched once for every dependency on pods of
// that namespace, and stopped when the last of them is gone.
type namespacePods struct {
	namespace string
	log       *slog.Logger
	client    kubernetes.Interface
	ctx       context.Context
	cancel    context.CancelFunc
	// done is closed once the namespace's watch has ended and its informer has stopped, so that its end can
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

// watcher is one Watch call. Its fields below selector are guarded by namespacePods.mu.
type watcher struct {
	selector labels.Selector
	cond     dependency.Condition
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
func (s *Source) Watch(namespace, selector string, cond dependency.Condition, update func(met bool)) (stop func(), err error) {
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
		sel = s.newNamespacePods(namespace)
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
func (s *Source) release(sel *namespacePods) {
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

// newNamespacePods prepares the pods of a namespace; its first watcher starts the informer. Called
// with s.mu held, so that two first watchers of a namespace cannot make two selections.
func (s *Source) newNamespacePods(namespace string) *namespacePods {
	parent := s.ctx
	if parent == nil {
		// Watch before Start: still answer, and stop with stop.
		parent = context.Background()
	}
	ctx, cancel := context.WithCancel(parent)
	sel := &namespacePods{
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

// add starts counting for w and, once the namespace is listed with the labels w's selector reads,
// queues its first answer. It refuses a selector that would take the namespace's label keys past
// MaxLabelKeys.
func (sel *namespacePods) add(w *watcher) error {
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
func (sel *namespacePods) remove(w *watcher) {
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

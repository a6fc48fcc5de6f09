package kube

import (
	"context"
	"fmt"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/tools/cache"
)

// feed is one informer of the namespace's pods, keeping the labels of keys and no others.
type feed struct {
	gen      int
	keys     map[string]struct{}
	informer cache.SharedIndexInformer
	cancel   context.CancelFunc
	done     chan struct{}
	// seen holds the pods this feed has reported until its first list has been handled; those of
	// the view it has not are gone. Guarded by namespacePods.mu.
	seen map[string]struct{}
}

// relistDelay gathers the new label keys of a burst of Watch calls, such as one pod's dependencies,
// into one new LIST of the namespace.
var relistDelay = 100 * time.Millisecond

// restartLocked has the feed replaced by one that keeps the label keys the watchers use now: pods
// already in the view were stripped of the new keys. The first feed starts at once; a replacement
// after relistDelay, while the current feed goes on serving the watchers that do not need it.
// Called with sel.mu held.
func (sel *namespacePods) restartLocked() {
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
func (sel *namespacePods) startFeedLocked(gen int) {
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

// feedSynced drops from the view the pods f did not list, which are gone, and gives every watcher
// waiting for f its first answer, now that the whole namespace has been seen with its labels.
func (sel *namespacePods) feedSynced(f *feed) {
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
func (sel *namespacePods) observe(f *feed, obj any, deleted bool) {
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

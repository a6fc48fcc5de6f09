package kube

import (
	"context"
	"sync"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/tools/cache"

	"github.com/podorder/podorder/condition"
)

// selection is one label-selected pod informer, shared by every waiter on the same namespace and
// selector, and stopped when the last one is gone.
type selection struct {
	informer cache.SharedIndexInformer
	cancel   context.CancelFunc

	mu       sync.Mutex
	watchers map[int]*watcher
	nextID   int
}

type watcher struct {
	cond   condition.Condition
	update func(bool)
	last   *bool
}

// Watch implements plugin.PodWatcher.
func (s *Source) Watch(namespace, selector string, cond condition.Condition, update func(met bool)) (stop func()) {
	key := namespace + "/" + selector
	s.mu.Lock()
	sel := s.selected[key]
	if sel == nil {
		sel = s.newSelection(namespace, selector)
		s.selected[key] = sel
	}
	s.mu.Unlock()

	sel.mu.Lock()
	id := sel.nextID
	sel.nextID++
	sel.watchers[id] = &watcher{cond: cond, update: update}
	sel.mu.Unlock()
	// The plugin calls Watch under its own lock and update takes it: never call back from here.
	go sel.evaluate()

	return func() {
		sel.mu.Lock()
		delete(sel.watchers, id)
		empty := len(sel.watchers) == 0
		sel.mu.Unlock()
		if empty {
			s.mu.Lock()
			if s.selected[key] == sel {
				delete(s.selected, key)
				sel.cancel()
			}
			s.mu.Unlock()
		}
	}
}

func (s *Source) newSelection(namespace, selector string) *selection {
	factory := informers.NewSharedInformerFactoryWithOptions(s.client, 0, informers.WithNamespace(namespace),
		informers.WithTweakListOptions(func(o *metav1.ListOptions) { o.LabelSelector = selector }))
	ctx, cancel := context.WithCancel(s.ctx)
	sel := &selection{informer: factory.Core().V1().Pods().Informer(), cancel: cancel, watchers: map[int]*watcher{}}
	evaluate := func(any) { sel.evaluate() }
	_, _ = sel.informer.AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc:    evaluate,
		UpdateFunc: func(_, obj any) { sel.evaluate() },
		DeleteFunc: evaluate,
	})
	go sel.informer.Run(ctx.Done())
	// Events during the first list arrive before HasSynced: answer once the list is complete.
	go func() {
		if cache.WaitForCacheSync(ctx.Done(), sel.informer.HasSynced) {
			sel.evaluate()
		}
	}()
	return sel
}

// evaluate tells every watcher whose answer changed. Until the first list, nothing is known.
func (sel *selection) evaluate() {
	if !sel.informer.HasSynced() {
		return
	}
	pods := sel.informer.GetStore().List()
	sel.mu.Lock()
	var calls []func()
	for _, w := range sel.watchers {
		met := false
		for _, obj := range pods {
			if PodMeets(obj.(*corev1.Pod), w.cond) {
				met = true
				break
			}
		}
		if w.last == nil || *w.last != met {
			w.last = &met
			update := w.update
			calls = append(calls, func() { update(met) })
		}
	}
	sel.mu.Unlock()
	for _, call := range calls {
		call()
	}
}

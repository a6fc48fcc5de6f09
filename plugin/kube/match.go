package kube

import (
	"slices"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/selection"
)

// term is one label a selector requires, which indexes its watcher.
type term struct{ key, value string }

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
		case selection.Equals, selection.DoubleEquals, selection.In:
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

// recount moves the counts of the watchers concerned from old to pod, either of which may be nil.
// A watcher is concerned only if its indexed term is a label of old or of pod, or it has none:
// otherwise its selector matches neither and its count cannot change.
func (sel *namespacePods) recount(old, pod *corev1.Pod) {
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

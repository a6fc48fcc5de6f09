package kube

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/kubernetes/fake"
	k8stesting "k8s.io/client-go/testing"
	"k8s.io/client-go/tools/cache"

	"github.com/podorder/podorder/hooks/dependency"
)

// failAfter bounds every wait: it is a failure timeout, never a way to let something happen.
const failAfter = 10 * time.Second

func newWatchSource(t *testing.T, objs ...runtime.Object) (*Source, *fake.Clientset) {
	t.Helper()
	return sourceOf(t, fake.NewClientset(objs...))
}

func sourceOf(t *testing.T, client *fake.Clientset) (*Source, *fake.Clientset) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	// The informers' goroutines may still log after the test returns, when writing to t races with
	// the testing package: keep the log in a buffer, shown if the test failed.
	logs := &lockedBuffer{}
	t.Cleanup(func() {
		cancel()
		if t.Failed() {
			t.Log(logs.String())
		}
	})
	return &Source{
		client:   client,
		log:      slog.New(slog.NewTextHandler(logs, nil)),
		ctx:      ctx,
		selected: map[string]*namespacePods{},
	}, client
}

// lockedBuffer is a log destination safe for goroutines that outlive the test.
type lockedBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *lockedBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *lockedBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// answers is what update receives, in order.
type answers chan bool

func watch(t *testing.T, s *Source, namespace, selector string, cond dependency.Condition) (answers, func()) {
	t.Helper()
	ch := make(answers, 64)
	stop, err := s.Watch(namespace, selector, cond, func(met bool) { ch <- met })
	require.NoError(t, err)
	t.Cleanup(stop)
	return ch, stop
}

func (a answers) next(t *testing.T) bool {
	t.Helper()
	select {
	case met := <-a:
		return met
	case <-time.After(failAfter):
		require.FailNow(t, "no update within the failure bound")
		return false
	}
}

// none asserts that nothing was delivered yet; callers first receive an update that is queued after
// any the watcher could have had (deliveries of one namespace are in event order).
func (a answers) none(t *testing.T) {
	t.Helper()
	select {
	case met := <-a:
		assert.Fail(t, "unexpected update", "met=%v", met)
	default:
	}
}

func testPod(name string, lbls map[string]string, ready bool) *corev1.Pod {
	status := corev1.ConditionFalse
	if ready {
		status = corev1.ConditionTrue
	}
	return &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: name, Labels: lbls},
		Spec:       corev1.PodSpec{Containers: []corev1.Container{{Name: "c", Image: "registry.example/c:1"}}},
		Status: corev1.PodStatus{Phase: corev1.PodRunning, Conditions: []corev1.PodCondition{
			{Type: corev1.PodReady, Status: status, Reason: "r", Message: "m"},
		}},
	}
}

func setPod(t *testing.T, client *fake.Clientset, pod *corev1.Pod) {
	t.Helper()
	_, err := client.CoreV1().Pods(pod.Namespace).Update(context.Background(), pod, metav1.UpdateOptions{})
	require.NoError(t, err)
}

func (s *Source) selectionOf(namespace string) *namespacePods {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.selected[namespace]
}

func (s *Source) selections() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.selected)
}

// currentFeed is the informer the namespace's pods come from to now.
func (sel *namespacePods) currentFeed() *feed {
	sel.mu.Lock()
	defer sel.mu.Unlock()
	return sel.feed
}

func podLists(client *fake.Clientset) map[string]int {
	lists := map[string]int{}
	for _, a := range client.Actions() {
		if a.GetVerb() == "list" && a.GetResource().Resource == "pods" {
			lists[a.GetNamespace()]++
		}
	}
	return lists
}

func TestWatchSharesOneInformerPerNamespace(t *testing.T) {
	s, client := newWatchSource(t, testPod("db", map[string]string{"app": "db", "n": "7"}, true))
	var all []answers
	for i := range 200 {
		ch, _ := watch(t, s, "ns", fmt.Sprintf("app=db,n=%d", i), dependency.Ready)
		all = append(all, ch)
	}
	for i, ch := range all {
		assert.Equal(t, i == 7, ch.next(t), "selector n=%d", i)
	}
	assert.Equal(t, 1, s.selections())
	assert.Equal(t, map[string]int{"ns": 1}, podLists(client), "one LIST for 200 selectors")

	other, _ := watch(t, s, "other", "app=db", dependency.Ready)
	assert.False(t, other.next(t))
	assert.Equal(t, 2, s.selections())
	assert.Equal(t, map[string]int{"ns": 1, "other": 1}, podLists(client))
}

func TestWatchFollowsMatchingPod(t *testing.T) {
	tests := []struct {
		name string
		// unmeet makes the matching pod stop meeting the condition.
		unmeet func(t *testing.T, client *fake.Clientset, pod *corev1.Pod)
	}{
		{"no longer ready", func(t *testing.T, client *fake.Clientset, pod *corev1.Pod) {
			pod.Status.Conditions[0].Status = corev1.ConditionFalse
			setPod(t, client, pod)
		}},
		{"deleted", func(t *testing.T, client *fake.Clientset, pod *corev1.Pod) {
			require.NoError(t, client.CoreV1().Pods(pod.Namespace).Delete(context.Background(), pod.Name, metav1.DeleteOptions{}))
		}},
		{"terminating", func(t *testing.T, client *fake.Clientset, pod *corev1.Pod) {
			now := metav1.Now()
			pod.DeletionTimestamp = &now
			setPod(t, client, pod)
		}},
		{"relabelled away", func(t *testing.T, client *fake.Clientset, pod *corev1.Pod) {
			pod.Labels = map[string]string{"app": "web"}
			setPod(t, client, pod)
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			db := testPod("db", map[string]string{"app": "db"}, false)
			s, client := newWatchSource(t, db.DeepCopy())
			ch, _ := watch(t, s, "ns", "app=db", dependency.Ready)
			require.False(t, ch.next(t), "not ready yet")

			db.Status.Conditions[0].Status = corev1.ConditionTrue
			setPod(t, client, db)
			require.True(t, ch.next(t), "ready")

			tt.unmeet(t, client, db)
			require.False(t, ch.next(t))
		})
	}
}

func TestWatchIgnoresPodsNotMatchingSelector(t *testing.T) {
	half := testPod("half", map[string]string{"app": "db"}, true)
	other := testPod("other", map[string]string{"app": "web", "tier": "backend"}, true)
	barrier := testPod("barrier", map[string]string{"app": "barrier"}, false)
	s, client := newWatchSource(t, half.DeepCopy(), other.DeepCopy(), barrier.DeepCopy())
	ch, _ := watch(t, s, "ns", "app=db,tier=backend", dependency.Ready)
	barrierCh, _ := watch(t, s, "ns", "app=barrier", dependency.Ready)
	require.False(t, ch.next(t), "ready pods match only part of the selector")
	require.False(t, barrierCh.next(t))

	// Changes to pods that do not match must not be reported; the barrier's update comes after
	// any they would have caused, so an empty channel then means none.
	half.Status.Conditions[0].Status = corev1.ConditionFalse
	setPod(t, client, half)
	half.Status.Conditions[0].Status = corev1.ConditionTrue
	half.Labels["tier"] = "frontend"
	setPod(t, client, half)
	require.NoError(t, client.CoreV1().Pods("ns").Delete(context.Background(), "other", metav1.DeleteOptions{}))
	barrier.Status.Conditions[0].Status = corev1.ConditionTrue
	setPod(t, client, barrier)
	require.True(t, barrierCh.next(t))
	ch.none(t)

	half.Labels["tier"] = "backend"
	setPod(t, client, half)
	assert.True(t, ch.next(t), "relabelled to match")
}

func TestWatchFirstAnswerWaitsForTheList(t *testing.T) {
	// Many pods listed before the ready one: answering while the list is handled would say false
	// first.
	var objs []runtime.Object
	for i := range 50 {
		objs = append(objs, testPod(fmt.Sprintf("db-%02d", i), map[string]string{"app": "db"}, i == 49))
	}
	s, _ := newWatchSource(t, objs...)
	ch, _ := watch(t, s, "ns", "app=db", dependency.Ready)
	assert.True(t, ch.next(t))

	// A watcher added after the list answers from what is known, without a new informer.
	late, _ := watch(t, s, "ns", "app=db", dependency.Ready)
	assert.True(t, late.next(t))
	assert.Equal(t, 1, s.selections())
}

func TestWatchEachCondition(t *testing.T) {
	yes := true
	succeeded := testPod("job", map[string]string{"app": "job"}, false)
	succeeded.Status.Phase = corev1.PodSucceeded
	started := testPod("srv", map[string]string{"app": "srv"}, false)
	started.Status.ContainerStatuses = []corev1.ContainerStatus{{Name: "c", Started: &yes}}
	tests := []struct {
		selector string
		cond     dependency.Condition
		expected bool
	}{
		{"app=job", dependency.Completed, true},
		{"app=job", dependency.Ready, false},
		{"app=srv", dependency.Started, true},
		{"app=srv", dependency.Ready, false},
		{"app=srv", dependency.Completed, false},
	}
	s, _ := newWatchSource(t, succeeded, started)
	for _, tt := range tests {
		t.Run(tt.selector+":"+string(tt.cond), func(t *testing.T) {
			ch, _ := watch(t, s, "ns", tt.selector, tt.cond)
			assert.Equal(t, tt.expected, ch.next(t))
		})
	}
}

func TestStopLastWatcherStopsNamespaceInformer(t *testing.T) {
	s, _ := newWatchSource(t)
	first, stopFirst := watch(t, s, "ns", "app=a", dependency.Ready)
	second, stopSecond := watch(t, s, "ns", "app=b", dependency.Ready)
	require.False(t, first.next(t))
	require.False(t, second.next(t))
	sel := s.selectionOf("ns")
	require.NotNil(t, sel)

	stopFirst()
	stopFirst() // idempotent: must not release the second watcher's hold
	assert.Same(t, sel, s.selectionOf("ns"), "a watcher remains")
	select {
	case <-sel.done:
		require.FailNow(t, "informer stopped while a watcher remains")
	default:
	}

	stopSecond()
	assert.Nil(t, s.selectionOf("ns"))
	select {
	case <-sel.done:
	case <-time.After(failAfter):
		require.FailNow(t, "informer still running after its last watcher stopped")
	}
	assert.True(t, sel.currentFeed().informer.IsStopped())

	again, _ := watch(t, s, "ns", "app=a", dependency.Ready)
	assert.False(t, again.next(t))
	assert.NotSame(t, sel, s.selectionOf("ns"), "a new watcher starts a new informer")
}

func TestWatchRejectsUnparsableSelector(t *testing.T) {
	s, client := newWatchSource(t)
	_, err := s.Watch("ns", "app in (", dependency.Ready, func(bool) { t.Error("update called for an unusable selector") })
	require.ErrorContains(t, err, `selector "app in ("`)
	assert.Zero(t, s.selections())
	assert.Empty(t, podLists(client))
}

func TestWatchSurvivesPanickingUpdate(t *testing.T) {
	s, client := newWatchSource(t, testPod("db", map[string]string{"app": "db"}, false))
	stop, err := s.Watch("ns", "app=db", dependency.Ready, func(bool) { panic("boom") })
	require.NoError(t, err)
	t.Cleanup(stop)
	ch, _ := watch(t, s, "ns", "app=db", dependency.Ready)
	require.False(t, ch.next(t))
	setPod(t, client, testPod("db", map[string]string{"app": "db"}, true))
	assert.True(t, ch.next(t), "deliveries go on after a panicking update")
}

func TestInformerCacheHoldsStrippedPods(t *testing.T) {
	yes := true
	pod := testPod("db", map[string]string{"app": "db"}, true)
	pod.Annotations = map[string]string{"big": "annotation"}
	pod.ManagedFields = []metav1.ManagedFieldsEntry{{Manager: "kubectl", Operation: metav1.ManagedFieldsOperationUpdate}}
	pod.UID, pod.ResourceVersion = "uid-1", "42"
	pod.Spec.Containers[0].Env = []corev1.EnvVar{{Name: "K", Value: "V"}}
	pod.Status.ContainerStatuses = []corev1.ContainerStatus{{Name: "c", Started: &yes, Image: "img", ImageID: "sha",
		State: corev1.ContainerState{Terminated: &corev1.ContainerStateTerminated{ExitCode: 1, Message: "4 KiB of last words"}}}}
	// The simple tracker keeps managedFields as given, where NewClientset's manages its own.
	s, client := sourceOf(t, fake.NewSimpleClientset(pod))
	stored, err := client.CoreV1().Pods("ns").Get(context.Background(), "db", metav1.GetOptions{})
	require.NoError(t, err)
	require.NotEmpty(t, stored.Annotations, "the API object has annotations")
	require.NotEmpty(t, stored.ManagedFields, "the API object has managedFields")

	ch, _ := watch(t, s, "ns", "app=db", dependency.Ready)
	require.True(t, ch.next(t))
	obj, exists, err := s.selectionOf("ns").currentFeed().informer.GetStore().GetByKey("ns/db")
	require.NoError(t, err)
	require.True(t, exists)
	cached := obj.(*corev1.Pod)
	assert.Nil(t, cached.Annotations)
	assert.Nil(t, cached.ManagedFields)
	assert.Equal(t, map[string]string{"app": "db"}, cached.Labels)
	assert.Equal(t, pod.UID, cached.UID)
	assert.Equal(t, "42", cached.ResourceVersion)
	assert.Equal(t, []corev1.Container{{Name: "c"}}, cached.Spec.Containers)
	assert.Equal(t, []corev1.PodCondition{{Type: corev1.PodReady, Status: corev1.ConditionTrue}}, cached.Status.Conditions)
	assert.Equal(t, []corev1.ContainerStatus{{Name: "c", Started: &yes, State: corev1.ContainerState{Terminated: &corev1.ContainerStateTerminated{ExitCode: 1}}}},
		cached.Status.ContainerStatuses)
}

func TestStripPodKeepsWhatPodMeetsReads(t *testing.T) {
	yes, no := true, false
	now := metav1.Now()
	running := corev1.ContainerState{Running: &corev1.ContainerStateRunning{StartedAt: now}}
	waiting := corev1.ContainerState{Waiting: &corev1.ContainerStateWaiting{Reason: "ContainerCreating", Message: "pulling"}}
	spec := corev1.PodSpec{Containers: []corev1.Container{{Name: "a", Image: "a"}, {Name: "b", Image: "b"}}}
	pods := map[string]*corev1.Pod{
		"ready": {Spec: spec, Status: corev1.PodStatus{Phase: corev1.PodRunning,
			Conditions:        []corev1.PodCondition{{Type: corev1.PodReady, Status: corev1.ConditionTrue}},
			ContainerStatuses: []corev1.ContainerStatus{{Name: "a", State: running}, {Name: "b", Started: &yes, State: waiting}}}},
		"not ready": {Spec: spec, Status: corev1.PodStatus{Phase: corev1.PodRunning,
			Conditions:        []corev1.PodCondition{{Type: corev1.PodReady, Status: corev1.ConditionFalse}},
			ContainerStatuses: []corev1.ContainerStatus{{Name: "a", State: running}, {Name: "b", Started: &no, State: waiting}}}},
		"too few statuses": {Spec: spec, Status: corev1.PodStatus{Phase: corev1.PodRunning,
			ContainerStatuses: []corev1.ContainerStatus{{Name: "a", State: running}}}},
		"succeeded":   {Spec: spec, Status: corev1.PodStatus{Phase: corev1.PodSucceeded}},
		"terminating": {ObjectMeta: metav1.ObjectMeta{DeletionTimestamp: &now}, Spec: spec, Status: corev1.PodStatus{Phase: corev1.PodSucceeded}},
		"pending":     {Spec: spec, Status: corev1.PodStatus{Phase: corev1.PodPending}},
	}
	for name, pod := range pods {
		for _, cond := range []dependency.Condition{dependency.Ready, dependency.Started, dependency.Completed} {
			stripped, err := stripPod(pod, nil)
			require.NoError(t, err)
			assert.Equal(t, PodMeets(pod, cond), PodMeets(stripped.(*corev1.Pod), cond), "%s %s", name, cond)
			again, err := stripPod(stripped, nil)
			require.NoError(t, err)
			assert.Equal(t, stripped, again, "idempotent")
		}
	}
}

func TestStripPodPassesTombstonesThrough(t *testing.T) {
	tomb := cache.DeletedFinalStateUnknown{Key: "ns/db", Obj: testPod("db", nil, true)}
	out, err := stripPod(tomb, nil)
	require.NoError(t, err)
	assert.Equal(t, tomb, out)
}

func TestObserveSurvivesMalformedEvents(t *testing.T) {
	s, _ := newWatchSource(t)
	ch, _ := watch(t, s, "ns", "app=db", dependency.Ready)
	require.False(t, ch.next(t))
	sel := s.selectionOf("ns")
	f := sel.currentFeed()
	for _, obj := range []any{nil, "not a pod", (*corev1.Pod)(nil), &corev1.Service{}} {
		assert.NotPanics(t, func() { sel.observe(f, obj, false) })
		assert.NotPanics(t, func() { sel.observe(f, obj, true) })
	}
	// A tombstone of a pod never seen is a no-op; one of a counted pod takes it away.
	pod := testPod("db", map[string]string{"app": "db"}, true)
	sel.observe(f, pod, false)
	require.True(t, ch.next(t))
	sel.observe(f, cache.DeletedFinalStateUnknown{Key: "ns/db", Obj: pod}, true)
	assert.False(t, ch.next(t))
}

// manyLabels is a hostile pod's label map: n labels besides extra.
func manyLabels(n int, extra map[string]string) map[string]string {
	lbls := make(map[string]string, n+len(extra))
	for i := range n {
		lbls[fmt.Sprintf("n%d", i)] = "v"
	}
	for k, v := range extra {
		lbls[k] = v
	}
	return lbls
}

func cachedLabels(t *testing.T, s *Source, key string) map[string]string {
	t.Helper()
	obj, exists, err := s.selectionOf("ns").currentFeed().informer.GetStore().GetByKey(key)
	require.NoError(t, err)
	require.True(t, exists)
	return obj.(*corev1.Pod).Labels
}

func TestStripPodKeepsOnlyTheLabelsOfKeys(t *testing.T) {
	pod := testPod("db", manyLabels(10_000, map[string]string{"app": "db"}), true)
	tests := []struct {
		name string
		keys map[string]struct{}
		want map[string]string
	}{
		{"no key", nil, nil},
		{"a key the pod carries", map[string]struct{}{"app": {}}, map[string]string{"app": "db"}},
		{"keys it does not carry", map[string]struct{}{"app": {}, "tier": {}, "n9999": {}}, map[string]string{"app": "db", "n9999": "v"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			out, err := stripPod(pod, tt.keys)
			require.NoError(t, err)
			assert.Equal(t, tt.want, out.(*corev1.Pod).Labels)
		})
	}
}

func TestWatchCachesOnlyTheLabelKeysSelectorsUse(t *testing.T) {
	s, client := newWatchSource(t, testPod("db", manyLabels(10_000, map[string]string{"app": "db"}), true))
	ch, _ := watch(t, s, "ns", "app=db", dependency.Ready)
	require.True(t, ch.next(t))
	assert.Equal(t, map[string]string{"app": "db"}, cachedLabels(t, s, "ns/db"), "10,000 labels, one key used")

	// A selector on a key the cache dropped: answered only once the namespace is listed again
	// with it, never from the stripped copies (which lack n42, so "!n42" would match them).
	absent, _ := watch(t, s, "ns", "app=db,!n42", dependency.Ready)
	present, _ := watch(t, s, "ns", "n5000=v", dependency.Ready)
	assert.False(t, absent.next(t), "the pod carries n42")
	assert.True(t, present.next(t))
	assert.Equal(t, map[string]string{"app": "db", "n42": "v", "n5000": "v"}, cachedLabels(t, s, "ns/db"))
	assert.LessOrEqual(t, podLists(client)["ns"], 3, "one LIST per new key at most")

	// The first watcher follows the pod across the new informers.
	db := testPod("db", map[string]string{"app": "db"}, true)
	setPod(t, client, db)
	assert.True(t, absent.next(t), "n42 is gone")
	assert.False(t, present.next(t), "n5000 is gone")
	db.Status.Conditions[0].Status = corev1.ConditionFalse
	setPod(t, client, db)
	assert.False(t, ch.next(t), "no longer ready")
	assert.False(t, absent.next(t), "no longer ready")
	require.NoError(t, client.CoreV1().Pods("ns").Delete(context.Background(), "db", metav1.DeleteOptions{}))
	db.Name = "db-2"
	db.Status.Conditions[0].Status = corev1.ConditionTrue
	_, err := client.CoreV1().Pods("ns").Create(context.Background(), db, metav1.CreateOptions{})
	require.NoError(t, err)
	assert.True(t, ch.next(t), "a new ready pod")
}

func TestWatchRefusesSelectorsBeyondMaxLabelKeys(t *testing.T) {
	s, client := newWatchSource(t, testPod("db", map[string]string{"app": "db", "k0": "v"}, true))
	var stops []func()
	for i := range MaxLabelKeys {
		ch, stop := watch(t, s, "ns", fmt.Sprintf("k%d=v", i), dependency.Ready)
		stops = append(stops, stop)
		if i == MaxLabelKeys-1 {
			require.False(t, ch.next(t))
		}
	}
	_, err := s.Watch("ns", "app=db", dependency.Ready, func(bool) { t.Error("a refused selector is answered") })
	require.ErrorContains(t, err, "more than the 64 podorder keeps per namespace")
	assert.NotNil(t, s.selectionOf("ns"), "the namespace's watchers go on")
	reused, _ := watch(t, s, "ns", "k0=v", dependency.Ready)
	assert.True(t, reused.next(t), "a key in use is still accepted")
	lists := podLists(client)["ns"]
	assert.LessOrEqual(t, lists, MaxLabelKeys, "no LIST for a refused selector")

	stops[1]()
	freed, _ := watch(t, s, "ns", "app=db", dependency.Ready)
	assert.True(t, freed.next(t), "a key freed by a stopped watcher makes room")
}

func TestWatchOnANewKeyForgetsPodsDeletedWhileRelisting(t *testing.T) {
	s, client := newWatchSource(t, testPod("db", map[string]string{"app": "db", "tier": "x"}, true))
	first, _ := watch(t, s, "ns", "app=db", dependency.Ready)
	require.True(t, first.next(t))

	// Hold the next LIST until the pod is gone: the replaced informer no longer reports its deletion,
	// and the new one never lists it.
	release := make(chan struct{})
	var once sync.Once
	client.PrependReactor("list", "pods", func(k8stesting.Action) (bool, runtime.Object, error) {
		once.Do(func() { <-release })
		return false, nil, nil
	})
	second, _ := watch(t, s, "ns", "tier=x", dependency.Ready)
	require.NoError(t, client.CoreV1().Pods("ns").Delete(context.Background(), "db", metav1.DeleteOptions{}))
	close(release)
	assert.False(t, second.next(t), "the pod was gone before the namespace was listed with tier")
	assert.False(t, first.next(t), "the older watcher learns it from the new list")
}

// TestNamespaceCacheHeapOfHostilePods measures what a namespace's cache retains for pods of 10,000
// labels each, keeping every label (as before label keys were tracked) and keeping the one key the
// selectors use.
func TestNamespaceCacheHeapOfHostilePods(t *testing.T) {
	const pods = 20
	raw, err := json.Marshal(testPod("db", manyLabels(10_000, map[string]string{"app": "db"}), true))
	require.NoError(t, err)
	decode := func(keys func(*corev1.Pod) map[string]struct{}) any {
		out := make([]any, pods)
		for i := range out {
			pod := &corev1.Pod{}
			require.NoError(t, json.Unmarshal(raw, pod))
			out[i], err = stripPod(pod, keys(pod))
			require.NoError(t, err)
		}
		return out
	}
	all := retained(func() any {
		return decode(func(pod *corev1.Pod) map[string]struct{} {
			keys := make(map[string]struct{}, len(pod.Labels))
			for k := range pod.Labels {
				keys[k] = struct{}{}
			}
			return keys
		})
	})
	used := retained(func() any {
		return decode(func(*corev1.Pod) map[string]struct{} { return map[string]struct{}{"app": {}} })
	})
	// The second is within the noise of HeapAlloc: a stripped testPod is about a kilobyte.
	t.Logf("namespace cache of %d pods with 10,000 labels each: every label %d KiB (%d B/pod), the used key only %d KiB (%d B/pod)",
		pods, all/1024, all/pods, used/1024, used/pods)
	assert.Less(t, used*100, all)
}

func TestWatchGathersABurstOfNewLabelKeysIntoOneList(t *testing.T) {
	s, client := newWatchSource(t, testPod("db", map[string]string{"app": "db", "k7": "v"}, true))
	first, _ := watch(t, s, "ns", "app=db", dependency.Ready)
	require.True(t, first.next(t))
	var burst []answers
	for i := range 32 {
		ch, _ := watch(t, s, "ns", fmt.Sprintf("k%d=v", i), dependency.Ready)
		burst = append(burst, ch)
	}
	for i, ch := range burst {
		assert.Equal(t, i == 7, ch.next(t), "k%d", i)
	}
	assert.Equal(t, 2, podLists(client)["ns"], "the first LIST and one for the 32 new keys")
}

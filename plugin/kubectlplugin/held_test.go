package kubectlplugin

import (
	"bytes"
	"strconv"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/kubernetes/fake"
	k8stesting "k8s.io/client-go/testing"

	"github.com/podorder/podorder/plugin/podstate"
)

var t0 = time.Date(2026, 12, 4, 10, 0, 0, 0, time.UTC)

// withCondition is a pod on node with podorder's condition at status (none when status is empty).
func withCondition(namespace, name, node string, status corev1.ConditionStatus, message string) *corev1.Pod {
	p := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Namespace: namespace, Name: name},
		Spec:       corev1.PodSpec{NodeName: node},
		Status:     corev1.PodStatus{Phase: corev1.PodRunning},
	}
	p.Status.Conditions = append(p.Status.Conditions, corev1.PodCondition{Type: corev1.PodReady, Status: corev1.ConditionFalse})
	if status != "" {
		p.Status.Conditions = append(p.Status.Conditions, corev1.PodCondition{
			Type: podstate.ConditionType, Status: status, Reason: "Held", Message: message,
			LastTransitionTime: metav1.NewTime(t0),
		})
	}
	return p
}

func TestHeldListsThePodsWhoseConditionIsFalseInANamespaceOrEveryNamespace(t *testing.T) {
	finished := withCondition("shop", "done", "n1", corev1.ConditionFalse, "app waits for db (ready) since 10:00:00")
	finished.Status.Phase = corev1.PodSucceeded
	client := fake.NewClientset(
		withCondition("shop", "web", "n1", corev1.ConditionFalse, "web waits for api (ready) since 10:00:00"),
		withCondition("shop", "api", "n2", corev1.ConditionTrue, "no container is held by podorder"),
		withCondition("shop", "plain", "n2", "", ""),
		finished,
		withCondition("batch", "report", "n2", corev1.ConditionFalse, "report waits for pod(app=db):ready since 10:00:00"),
	)

	held, err := Held(t.Context(), client, "shop")
	require.NoError(t, err)
	assert.Equal(t, []HeldPod{{Namespace: "shop", Pod: "web", Node: "n1", Since: t0, Message: "web waits for api (ready) since 10:00:00"}}, held)

	held, err = Held(t.Context(), client, "")
	require.NoError(t, err)
	var names []string
	for _, h := range held {
		names = append(names, h.Namespace+"/"+h.Pod)
	}
	assert.Equal(t, []string{"batch/report", "shop/web"}, names, "ordered by namespace, then name; released, plain and finished pods left out")

	held, err = Held(t.Context(), client, "empty")
	require.NoError(t, err)
	assert.NotNil(t, held, "no held pod is an empty list, [] in JSON")
	assert.Empty(t, held)
}

func TestHeldReadsEveryPageAndAsksForPagesOfPageSize(t *testing.T) {
	var pods []runtime.Object
	for i := range 1203 {
		status := corev1.ConditionTrue
		if i%100 == 7 {
			status = corev1.ConditionFalse
		}
		pods = append(pods, withCondition("ns", "pod-"+strconv.Itoa(10000+i), "n1", status, "x waits for y"))
	}
	client := fake.NewClientset()
	var limits, continues []string
	client.PrependReactor("list", "pods", func(action k8stesting.Action) (bool, runtime.Object, error) {
		opts := action.(k8stesting.ListActionImpl).ListOptions
		limits = append(limits, strconv.FormatInt(opts.Limit, 10))
		continues = append(continues, opts.Continue)
		from := 0
		if opts.Continue != "" {
			from, _ = strconv.Atoi(opts.Continue)
		}
		to := min(from+int(opts.Limit), len(pods))
		list := &corev1.PodList{}
		for _, o := range pods[from:to] {
			list.Items = append(list.Items, *o.(*corev1.Pod))
		}
		if to < len(pods) {
			list.Continue = strconv.Itoa(to)
		}
		return true, list, nil
	})

	held, err := Held(t.Context(), client, "")
	require.NoError(t, err)
	assert.Len(t, held, 12, "one held pod in every hundred, across three pages")
	assert.Equal(t, []string{"500", "500", "500"}, limits)
	assert.Equal(t, []string{"", "500", "1000"}, continues)
}

func TestHeldTableShowsNamespacePodNodeSinceAndMessage(t *testing.T) {
	var out bytes.Buffer
	require.NoError(t, WriteHeld(&out, []HeldPod{
		{Namespace: "shop", Pod: "web-7d4b9", Node: "node-1", Since: t0, Message: "web waits for api (ready) since 10:00:00 (api has not been created yet)"},
		{Namespace: "batch", Pod: "report", Message: "report waits for db (started) since 10:02:00"},
	}, t0.Add(3*time.Minute+12*time.Second)))
	assert.Equal(t, `NAMESPACE  POD        NODE    SINCE      MESSAGE
shop       web-7d4b9  node-1  3m12s ago  web waits for api (ready) since 10:00:00 (api has not been created yet)
batch      report     -       -          report waits for db (started) since 10:02:00
`, out.String())
}

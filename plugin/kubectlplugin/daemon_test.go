package kubectlplugin

import (
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/kubernetes/fake"
)

// daemonPod is a podorder pod on node, labeled as daemonset/ and the chart label it.
func daemonPod(namespace, name, node string, phase corev1.PodPhase) *corev1.Pod {
	return &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Namespace: namespace, Name: name, Labels: map[string]string{"app.kubernetes.io/name": "podorder"}},
		Spec:       corev1.PodSpec{NodeName: node},
		Status:     corev1.PodStatus{Phase: phase},
	}
}

func node(name string) *corev1.Node { return &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: name}} }

func TestDaemonPodFindsTheOnePodorderPodOfTheNode(t *testing.T) {
	deleting := daemonPod("podorder-system", "podorder-old", "n1", corev1.PodRunning)
	deleting.DeletionTimestamp = &metav1.Time{Time: t0}
	unlabeled := daemonPod("podorder-system", "other", "n1", corev1.PodRunning)
	unlabeled.Labels = nil
	client := fake.NewClientset(node("n1"), node("n2"),
		daemonPod("podorder-system", "podorder-abcde", "n1", corev1.PodRunning),
		daemonPod("podorder-system", "podorder-fghij", "n2", corev1.PodRunning),
		daemonPod("podorder-helm", "podorder-klmno", "n1", corev1.PodRunning),
		deleting, unlabeled,
	)
	p, err := DaemonPod(t.Context(), client, "podorder-system", "n1")
	require.NoError(t, err)
	assert.Equal(t, "podorder-abcde", p.Name)
	p, err = DaemonPod(t.Context(), client, "podorder-helm", "n1")
	require.NoError(t, err)
	assert.Equal(t, "podorder-klmno", p.Name, "the namespace --podorder-namespace names")
}

func TestDaemonPodSaysWhyItFoundNone(t *testing.T) {
	deleting := daemonPod("podorder-system", "podorder-old", "n3", corev1.PodRunning)
	deleting.DeletionTimestamp = &metav1.Time{Time: t0}
	objects := []runtime.Object{node("n1"), node("n2"), node("n3"), node("n4"),
		daemonPod("podorder-system", "podorder-a", "n1", corev1.PodRunning),
		daemonPod("podorder-system", "podorder-b", "n2", corev1.PodRunning),
		daemonPod("podorder-system", "podorder-c", "n2", corev1.PodRunning),
		deleting,
		daemonPod("podorder-system", "podorder-d", "n4", corev1.PodPending),
	}
	tests := map[string]struct {
		namespace, node string
		says            string
	}{
		"no podorder pod in that namespace": {"kube-system", "n1",
			"no podorder pod on node n1: no pod in namespace kube-system matches app.kubernetes.io/name=podorder there; if podorder is installed in another namespace (a Helm release's), pass --podorder-namespace NAMESPACE"},
		"two podorder pods on the node": {"podorder-system", "n2",
			"node n2 has 2 podorder pods in namespace podorder-system matching app.kubernetes.io/name=podorder (podorder-b, podorder-c), where one is expected"},
		"the only one is being deleted": {"podorder-system", "n3",
			"the podorder pod of node n3 in namespace podorder-system is being deleted; try again once the DaemonSet has replaced it"},
		"the only one is not running yet": {"podorder-system", "n4",
			"the podorder pod of node n4, podorder-system/podorder-d, is Pending, not Running: `kubectl -n podorder-system describe pod podorder-d` says why"},
		"no such node": {"podorder-system", "n9", "there is no node n9 (`kubectl get nodes` lists them)"},
	}
	for name, tt := range tests {
		t.Run(name, func(t *testing.T) {
			_, err := DaemonPod(t.Context(), fake.NewClientset(objects...), tt.namespace, tt.node)
			require.Error(t, err)
			assert.Contains(t, err.Error(), tt.says)
		})
	}
}

func TestNodeOfNamesThePodsNodeOrWhyItHasNone(t *testing.T) {
	pending := withCondition("shop", "pending", "", "", "")
	client := fake.NewClientset(withCondition("shop", "web", "n1", "", ""), pending)
	n, err := NodeOf(t.Context(), client, "shop", "web")
	require.NoError(t, err)
	assert.Equal(t, "n1", n)
	_, err = NodeOf(t.Context(), client, "shop", "pending")
	assert.EqualError(t, err, "pod shop/pending is not scheduled to a node yet: no podorder daemon holds any of its containers")
	_, err = NodeOf(t.Context(), client, "shop", "nosuch")
	assert.EqualError(t, err, "there is no pod nosuch in namespace shop")
}

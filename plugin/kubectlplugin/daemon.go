package kubectlplugin

import (
	"context"
	"fmt"
	"strings"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/client-go/kubernetes"
)

// Where podorder's node daemon runs: daemonset/ and the Helm chart label its pods DaemonSelector
// and name its container DaemonContainer; daemonset/ installs it in DefaultNamespace, the chart in
// its release's namespace.
const (
	DaemonSelector   = "app.kubernetes.io/name=podorder"
	DaemonContainer  = "podorder"
	DefaultNamespace = "podorder-system"
)

// DaemonPod finds the podorder daemon pod of node in namespace: the one pod there that matches
// DaemonSelector, runs on node and is not being deleted.
func DaemonPod(ctx context.Context, client kubernetes.Interface, namespace, node string) (*corev1.Pod, error) {
	pods, err := client.CoreV1().Pods(namespace).List(ctx, metav1.ListOptions{
		LabelSelector: DaemonSelector,
		FieldSelector: fields.OneTermEqualSelector("spec.nodeName", node).String(),
	})
	if err != nil {
		return nil, fmt.Errorf("list the podorder pods of node %s in namespace %s: %w", node, namespace, err)
	}
	var found []*corev1.Pod
	deleting := 0
	for i := range pods.Items {
		p := &pods.Items[i]
		switch {
		case p.Spec.NodeName != node:
			// The field selector does this on the API server; not every client applies it.
		case p.DeletionTimestamp != nil:
			deleting++
		default:
			found = append(found, p)
		}
	}
	switch {
	case len(found) == 1:
		p := found[0]
		if p.Status.Phase != corev1.PodRunning {
			return nil, fmt.Errorf("the podorder pod of node %s, %s/%s, is %s, not Running: `kubectl -n %s describe pod %s` says why",
				node, p.Namespace, p.Name, phase(p), p.Namespace, p.Name)
		}
		return p, nil
	case len(found) > 1:
		var names []string
		for _, p := range found {
			names = append(names, p.Name)
		}
		return nil, fmt.Errorf("node %s has %d podorder pods in namespace %s matching %s (%s), where one is expected: is podorder installed twice in that namespace?",
			node, len(found), namespace, DaemonSelector, strings.Join(names, ", "))
	case deleting > 0:
		return nil, fmt.Errorf("the podorder pod of node %s in namespace %s is being deleted; try again once the DaemonSet has replaced it", node, namespace)
	}
	if _, err := client.CoreV1().Nodes().Get(ctx, node, metav1.GetOptions{}); apierrors.IsNotFound(err) {
		return nil, fmt.Errorf("there is no node %s (`kubectl get nodes` lists them)", node)
	}
	return nil, fmt.Errorf("no podorder pod on node %s: no pod in namespace %s matches %s there; if podorder is installed in another namespace (a Helm release's), pass --podorder-namespace NAMESPACE; otherwise its DaemonSet does not run on that node (see its nodeSelector and tolerations)",
		node, namespace, DaemonSelector)
}

// NodeOf returns the node pod namespace/name is scheduled to.
func NodeOf(ctx context.Context, client kubernetes.Interface, namespace, name string) (string, error) {
	pod, err := client.CoreV1().Pods(namespace).Get(ctx, name, metav1.GetOptions{})
	if apierrors.IsNotFound(err) {
		return "", fmt.Errorf("there is no pod %s in namespace %s", name, namespace)
	}
	if err != nil {
		return "", fmt.Errorf("get pod %s/%s: %w", namespace, name, err)
	}
	if pod.Spec.NodeName == "" {
		return "", fmt.Errorf("pod %s/%s is not scheduled to a node yet: no podorder daemon holds any of its containers", namespace, name)
	}
	return pod.Spec.NodeName, nil
}

// phase is the pod's phase for a message, Pending when the API has not set one.
func phase(p *corev1.Pod) string {
	if p.Status.Phase == "" {
		return string(corev1.PodPending)
	}
	return string(p.Status.Phase)
}

package kubectlplugin

import (
	"cmp"
	"context"
	"fmt"
	"io"
	"slices"
	"text/tabwriter"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"

	"github.com/podorder/podorder/plugin/podstate"
)

// PageSize is how many pods one list call of `held` asks the API server for: a cluster of any size
// is read in pages, and only the held pods of each page are kept.
const PageSize = 500

// HeldPod is a pod whose podorder condition is False: a container of it is held.
type HeldPod struct {
	Namespace string `json:"namespace"`
	Pod       string `json:"pod"`
	Node      string `json:"node"`
	// Since is the condition's lastTransitionTime: when the pod became held.
	Since time.Time `json:"since"`
	// Message names each held container, what it waits for and since when, as the daemon wrote it.
	Message string `json:"message"`
}

// Held lists the pods of namespace ("" for every namespace) that podorder holds, in pages of
// PageSize, ordered by namespace and name.
func Held(ctx context.Context, client kubernetes.Interface, namespace string) ([]HeldPod, error) {
	held := []HeldPod{}
	opts := metav1.ListOptions{Limit: PageSize}
	for {
		pods, err := client.CoreV1().Pods(namespace).List(ctx, opts)
		if err != nil {
			return nil, fmt.Errorf("list the pods %s: %w", inNamespace(namespace), err)
		}
		for i := range pods.Items {
			if h, ok := heldOf(&pods.Items[i]); ok {
				held = append(held, h)
			}
		}
		if pods.Continue == "" {
			break
		}
		opts.Continue = pods.Continue
	}
	slices.SortFunc(held, func(a, b HeldPod) int {
		return cmp.Or(cmp.Compare(a.Namespace, b.Namespace), cmp.Compare(a.Pod, b.Pod))
	})
	return held, nil
}

// heldOf reports whether podorder holds a container of pod: its condition is False and the pod has
// not finished (a finished pod runs no container, whatever its last condition says).
func heldOf(pod *corev1.Pod) (HeldPod, bool) {
	if pod.Status.Phase == corev1.PodSucceeded || pod.Status.Phase == corev1.PodFailed {
		return HeldPod{}, false
	}
	for _, c := range pod.Status.Conditions {
		if c.Type != podstate.ConditionType {
			continue
		}
		if c.Status != corev1.ConditionFalse {
			return HeldPod{}, false
		}
		return HeldPod{
			Namespace: pod.Namespace,
			Pod:       pod.Name,
			Node:      pod.Spec.NodeName,
			Since:     c.LastTransitionTime.Time,
			Message:   c.Message,
		}, true
	}
	return HeldPod{}, false
}

// WriteHeld prints one line per held pod, with how long it has been held at now.
func WriteHeld(out io.Writer, pods []HeldPod, now time.Time) error {
	tw := tabwriter.NewWriter(out, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "NAMESPACE\tPOD\tNODE\tSINCE\tMESSAGE")
	for _, p := range pods {
		since := "-"
		if !p.Since.IsZero() {
			since = now.Sub(p.Since).Round(time.Second).String() + " ago"
		}
		node := p.Node
		if node == "" {
			node = "-"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", p.Namespace, p.Pod, node, since, p.Message)
	}
	return tw.Flush()
}

// inNamespace names where pods were looked for, for a message.
func inNamespace(namespace string) string {
	if namespace == "" {
		return "in any namespace"
	}
	return "in namespace " + namespace
}

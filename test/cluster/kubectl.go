package cluster

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// kubectlTimeout bounds a kubectl call that has no --timeout of its own.
const kubectlTimeout = 2 * time.Minute

// Event is one core/v1 Event about an object, as `kubectl get events` returns it.
type Event struct {
	// Type is Normal or Warning.
	Type string
	// Reason is the event's short CamelCase reason, e.g. Started or BackOff.
	Reason string
	// Message is the human-readable text.
	Message string
	// Source is the reporting component, e.g. kubelet or default-scheduler.
	Source string
	// Count is how many times the event was seen.
	Count int
}

// Kubectl runs the cluster's kubectl as admin and returns its stdout; an error fails t.
func (c *Cluster) Kubectl(t testing.TB, args ...string) string {
	t.Helper()
	out, err := c.KubectlErr(args...)
	if err != nil {
		t.Fatalf("%v", err)
	}
	return out
}

// KubectlErr runs the cluster's kubectl as admin and returns its stdout; the error carries stderr.
func (c *Cluster) KubectlErr(args ...string) (string, error) {
	return c.kubectl(c.ctx, kubectlTimeout, nil, args...)
}

// ApplyYAML applies manifests (`kubectl apply -f -`).
func (c *Cluster) ApplyYAML(t testing.TB, yaml string) {
	t.Helper()
	if _, err := c.KubectlStdin(yaml, "apply", "-f", "-"); err != nil {
		t.Fatalf("%v\n--- manifest ---\n%s", err, yaml)
	}
}

// KubectlStdin runs kubectl with stdin as input and returns its stdout; the error carries stderr.
func (c *Cluster) KubectlStdin(stdin string, args ...string) (string, error) {
	return c.kubectl(c.ctx, kubectlTimeout, strings.NewReader(stdin), args...)
}

// WaitNodeReady waits up to 90 s for the node's Ready condition.
func (c *Cluster) WaitNodeReady(t testing.TB) {
	t.Helper()
	if err := c.waitFor(startTimeout, "", "node/"+c.NodeName, "condition=Ready"); err != nil {
		t.Fatalf("node %s: %v", c.NodeName, err)
	}
}

// WaitPodPhase waits until pod ns/name exists and is in phase (Pending, Running, Succeeded, Failed).
func (c *Cluster) WaitPodPhase(t testing.TB, ns, name, phase string, timeout time.Duration) {
	t.Helper()
	if err := c.waitFor(timeout, ns, "pod/"+name, "jsonpath={.status.phase}="+phase); err != nil {
		t.Fatalf("pod %s/%s phase %s: %v\n%s", ns, name, phase, err, c.describe(ns, "pod/"+name))
	}
}

// WaitPodReady waits until pod ns/name exists and has its Ready condition.
func (c *Cluster) WaitPodReady(t testing.TB, ns, name string, timeout time.Duration) {
	t.Helper()
	if err := c.waitFor(timeout, ns, "pod/"+name, "condition=Ready"); err != nil {
		t.Fatalf("pod %s/%s ready: %v\n%s", ns, name, err, c.describe(ns, "pod/"+name))
	}
}

// WaitFor waits until object (kind/name) exists in namespace ns ("" for cluster-scoped objects)
// and, unless condition is empty, meets condition in `kubectl wait --for` syntax
// (condition=Ready, jsonpath={.status.numberReady}=1, delete).
func (c *Cluster) WaitFor(t testing.TB, ns, object, condition string, timeout time.Duration) {
	t.Helper()
	if err := c.waitFor(timeout, ns, object, condition); err != nil {
		t.Fatalf("%s: %v\n%s", object, err, c.describe(ns, object))
	}
}

// PodJSON returns pod ns/name as the API server has it, decoded from JSON.
func (c *Cluster) PodJSON(t testing.TB, ns, name string) map[string]any {
	t.Helper()
	out := c.Kubectl(t, "get", "pod", name, "-n", ns, "-o", "json")
	var pod map[string]any
	if err := json.Unmarshal([]byte(out), &pod); err != nil {
		t.Fatalf("decode pod %s/%s: %v", ns, name, err)
	}
	return pod
}

// Events returns the events about the object called name in namespace ns, oldest first.
func (c *Cluster) Events(t testing.TB, ns, name string) []Event {
	t.Helper()
	out := c.Kubectl(t, "get", "events", "-n", ns, "--field-selector", "involvedObject.name="+name,
		"--sort-by=.metadata.creationTimestamp", "-o", "json")
	var list struct {
		Items []struct {
			Type, Reason, Message string
			Count                 int
			Source                struct{ Component string }
			ReportingComponent    string
		}
	}
	if err := json.Unmarshal([]byte(out), &list); err != nil {
		t.Fatalf("decode events of %s/%s: %v", ns, name, err)
	}
	events := make([]Event, 0, len(list.Items))
	for _, e := range list.Items {
		source := e.Source.Component
		if source == "" {
			source = e.ReportingComponent
		}
		events = append(events, Event{Type: e.Type, Reason: e.Reason, Message: e.Message, Source: source, Count: e.Count})
	}
	return events
}

// waitFor runs `kubectl wait --for=create [--for=<condition>]`: kubectl waits for the object to
// exist first (a plain wait fails at once on an object that does not exist yet), then watches for
// the condition, all within timeout.
func (c *Cluster) waitFor(timeout time.Duration, ns, object, condition string) error {
	args := []string{"wait", "--for=create", object, "--timeout=" + timeout.String()}
	if condition != "" {
		args = append(args, "--for="+condition)
	}
	if ns != "" {
		args = append(args, "-n", ns)
	}
	_, err := c.kubectl(c.ctx, timeout+10*time.Second, nil, args...)
	return err
}

// describe returns `kubectl describe` of an object for a failure message, or why it could not.
func (c *Cluster) describe(ns, object string) string {
	args := []string{"describe", object}
	if ns != "" {
		args = append(args, "-n", ns)
	}
	out, err := c.kubectl(context.Background(), 30*time.Second, nil, args...)
	if err != nil {
		return fmt.Sprintf("(describe %s: %v)", object, err)
	}
	return "--- kubectl describe ---\n" + out
}

// kubectl runs kubectl with the admin kubeconfig under ctx (cancelled when a component dies).
func (c *Cluster) kubectl(ctx context.Context, timeout time.Duration, stdin io.Reader, args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, filepath.Join(BinDir(), "kubectl"), append([]string{"--kubeconfig", c.Kubeconfig}, args...)...)
	var stdout, stderr bytes.Buffer
	cmd.Stdin, cmd.Stdout, cmd.Stderr = stdin, &stdout, &stderr
	err := cmd.Run()
	if err == nil {
		return stdout.String(), nil
	}
	if cause := context.Cause(ctx); cause != nil && !errors.Is(cause, context.DeadlineExceeded) {
		return stdout.String(), fmt.Errorf("kubectl %s: cluster failed: %w", strings.Join(args, " "), cause)
	}
	return stdout.String(), fmt.Errorf("kubectl %s: %w: %s", strings.Join(args, " "), err, strings.TrimSpace(stderr.String()))
}

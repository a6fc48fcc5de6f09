package cluster_test

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/podorder/podorder/test/cluster"
	"github.com/podorder/podorder/test/harness"
)

// TestClusterRunsPodsOnARealNode starts etcd, kube-apiserver, kube-controller-manager,
// kube-scheduler and kubelet on a private containerd, and checks that a pod with a TCP readiness
// probe becomes Ready and logs through the API, and that a DaemonSet's pod is created by the
// controller-manager, bound by the scheduler and run by kubelet.
func TestClusterRunsPodsOnARealNode(t *testing.T) {
	env := harness.Start(t, harness.Options{})
	env.ImportWorkloadImages(t)
	c := cluster.Start(t, env, cluster.Options{})
	c.WaitNodeReady(t)

	c.ApplyYAML(t, fmt.Sprintf(`apiVersion: v1
kind: Pod
metadata:
  name: smoke
  namespace: default
spec:
  nodeName: %s
  terminationGracePeriodSeconds: 5
  containers:
  - name: x
    image: %s
    imagePullPolicy: Never
    args: ["--name", "x", "--listen-after", "1s", "--port", "8080"]
    readinessProbe:
      tcpSocket:
        port: 8080
      periodSeconds: 1
`, c.NodeName, harness.WorkloadImage))
	c.WaitPodReady(t, "default", "smoke", 60*time.Second)
	assert.Contains(t, c.Kubectl(t, "logs", "-n", "default", "smoke", "-c", "x"), "START x")

	pod := c.PodJSON(t, "default", "smoke")
	status, _ := pod["status"].(map[string]any)
	assert.Equal(t, "Running", status["phase"])
	assert.NotEmpty(t, status["podIP"], "the pod gets an address from the bridge network")

	reasons := func() []string {
		var rs []string
		for _, e := range c.Events(t, "default", "smoke") {
			rs = append(rs, e.Reason)
		}
		return rs
	}()
	assert.Contains(t, reasons, "Started", "kubelet reports the container's start as an event")

	c.ApplyYAML(t, fmt.Sprintf(`apiVersion: apps/v1
kind: DaemonSet
metadata:
  name: pause
  namespace: default
spec:
  selector:
    matchLabels: {app: pause}
  template:
    metadata:
      labels: {app: pause}
    spec:
      terminationGracePeriodSeconds: 5
      containers:
      - name: pause
        image: %s
        imagePullPolicy: Never
`, harness.PauseImage))
	c.WaitFor(t, "default", "daemonset/pause", "jsonpath={.status.numberReady}=1", 60*time.Second)
	out := c.Kubectl(t, "get", "pods", "-n", "default", "-l", "app=pause",
		"-o", `jsonpath={range .items[*]}{.metadata.name} {.spec.nodeName} {.status.phase}{"\n"}{end}`)
	lines := strings.Split(strings.TrimSpace(out), "\n")
	require.Len(t, lines, 1, "one DaemonSet pod on the one node: %q", out)
	fields := strings.Fields(lines[0])
	require.Len(t, fields, 3, "pod line: %q", lines[0])
	assert.Equal(t, c.NodeName, fields[1], "the scheduler bound the DaemonSet pod to the node")
	assert.Equal(t, "Running", fields[2])
}

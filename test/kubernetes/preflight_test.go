package kubernetes

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/podorder/podorder/test/cluster"
)

// preflightScenario checks the preflight's Events on the real Node: the shipped DaemonSet, on a node
// with NRI, says PodorderReady; a second podorder pointed at a socket path where nothing serves NRI
// (this bed's containerd must keep NRI on for the other scenarios, so a wrong --nri-socket stands in
// for NRI being off: the daemon sees the same missing socket) records PodorderNRIUnreachable with
// the fix, logs it once however often it retries, and `podorder status` heads with it.
func preflightScenario(t *testing.T, b *bed) {
	t.Run("the preflight's Event on the Node: NRI off is a Warning that says what to do", func(t *testing.T) {
		node := b.c.Kubectl(t, "get", "nodes", "-o", "jsonpath={.items[0].metadata.name}")
		require.NotEmpty(t, node)

		var ready cluster.Event
		require.EventuallyWithT(t, func(c *assert.CollectT) {
			e, ok := findEvent(b.c.Events(t, "default", node), "PodorderReady")
			require.True(c, ok, "no PodorderReady Event on node %s", node)
			ready = e
		}, time.Minute, time.Second)
		assert.Equal(t, "Normal", ready.Type)
		assert.Equal(t, "podorder", ready.Source)
		assert.Contains(t, ready.Message, "podorder is ready on this node: NRI connected, containerd 2.4.2")

		const name = "podorder-nri-off"
		b.c.ApplyYAML(t, fmt.Sprintf(`apiVersion: v1
kind: Pod
metadata:
  name: %[1]s
  namespace: podorder-system
spec:
  # This cluster has no kube-proxy: the API server is reached on the node's loopback, as the
  # DaemonSet does.
  hostNetwork: true
  serviceAccountName: podorder
  automountServiceAccountToken: true
  terminationGracePeriodSeconds: 1
  containers:
  - name: podorder
    image: %[2]s
    imagePullPolicy: Never
    args: ["daemon", "--nri-socket=/nri-off/nri.sock", "--store-dir=/store", "--hook-binary=/podorder-hook",
           "--plugin-index=11", "--health-addr=", "--metrics-addr=", "--stop-with=false"]
    env:
    - name: NODE_NAME
      valueFrom: {fieldRef: {fieldPath: spec.nodeName}}
    - {name: KUBERNETES_SERVICE_HOST, value: "%[3]s"}
    - {name: KUBERNETES_SERVICE_PORT, value: "%[4]s"}
    volumeMounts:
    - {name: store, mountPath: /store}
  volumes:
  - name: store
    emptyDir: {}
`, name, PodorderImage, b.apiHost, b.apiPort))
		t.Cleanup(func() { _, _ = b.c.KubectlErr("delete", "pod", "-n", "podorder-system", name, "--wait=false") })
		b.c.WaitFor(t, "podorder-system", "pod/"+name, "jsonpath={.status.phase}=Running", 2*time.Minute)

		var unreachable cluster.Event
		ok := assert.EventuallyWithT(t, func(c *assert.CollectT) {
			e, ok := findEvent(b.c.Events(t, "default", node), "PodorderNRIUnreachable")
			require.True(c, ok, "no PodorderNRIUnreachable Event on node %s", node)
			unreachable = e
		}, time.Minute, time.Second)
		if !ok {
			logs, _ := b.c.KubectlErr("logs", "-n", "podorder-system", name)
			t.Fatalf("the podorder pointed where nothing serves NRI logged:\n%s", logs)
		}
		assert.Equal(t, "Warning", unreachable.Type)
		assert.Equal(t, "podorder", unreachable.Source)
		for _, want := range []string{
			"containerd's NRI socket /nri-off/nri.sock does not exist: NRI is off in containerd",
			`[plugins."io.containerd.nri.v1.nri"] block of podorder's daemonset/containerd-nri.toml`,
			"disable = false",
			"restart containerd",
			"--nri-socket",
		} {
			assert.Contains(t, unreachable.Message, want)
		}
		t.Logf("RESULT the Node's Event with NRI off: %s %s: %s", unreachable.Type, unreachable.Reason, unreachable.Message)

		// Retries come every 5 s at most: after 12 s there have been several, and one message.
		time.Sleep(12 * time.Second)
		logs := b.c.Kubectl(t, "logs", "-n", "podorder-system", name)
		assert.Equal(t, 1, strings.Count(logs, "does not exist: NRI is off"), "the actionable message is logged once:\n%s", logs)
		status := b.c.Kubectl(t, "exec", "-n", "podorder-system", name, "--", "/podorder", "status", "--store-dir=/store")
		assert.True(t, strings.HasPrefix(status, "node: NRI unreachable (missing), containerd unknown, runtime unknown\n  PodorderNRIUnreachable: "), status)
	})
}

// findEvent returns the newest Event with reason.
func findEvent(events []cluster.Event, reason string) (cluster.Event, bool) {
	for i := len(events) - 1; i >= 0; i-- {
		if events[i].Reason == reason {
			return events[i], true
		}
	}
	return cluster.Event{}, false
}

package kubernetes

import (
	"bytes"
	"fmt"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/podorder/podorder/test/chart"
	"github.com/podorder/podorder/test/harness"
)

// helmScenario replaces the kustomize install with the Helm chart, as an operator would, and orders a
// pod through it.
func helmScenario(t *testing.T, b *bed) {
	t.Run("installed with the Helm chart, podorder orders a pod", func(t *testing.T) {
		b.c.Kubectl(t, "delete", "-k", b.overlay, "--wait=true")
		b.c.Kubectl(t, "create", "namespace", "podorder-helm")
		b.c.Kubectl(t, "label", "namespace", "podorder-helm", "pod-security.kubernetes.io/enforce=privileged")
		repo, err := filepath.Abs("../..")
		require.NoError(t, err)
		// This cluster's differences from a node's: the image is the one the tests built, and the
		// API server has no Service path (no kube-proxy).
		args := []string{"install", "podorder", filepath.Join(repo, "charts/podorder"), "--namespace", "podorder-helm",
			"--kubeconfig", b.c.Kubeconfig, "--wait", "--timeout", "2m",
			"--set", "image.tag=test", "--set", "api.host=" + b.apiHost, "--set-string", "api.port=" + b.apiPort,
		}
		cmd := exec.Command(chart.Helm(t), args...)
		var out bytes.Buffer
		cmd.Stdout, cmd.Stderr = &out, &out
		require.NoError(t, cmd.Run(), "helm install: %s", out.String())
		b.c.WaitFor(t, "podorder-helm", "daemonset/podorder", "jsonpath={.status.numberReady}=1", 2*time.Minute)

		b.c.ApplyYAML(t, fmt.Sprintf(`apiVersion: v1
kind: Pod
metadata:
  name: through-helm
  namespace: default
  labels:
    podorder.dev/after.app: db
spec:
  terminationGracePeriodSeconds: 1
  containers:
  - name: app
    image: %[1]s
    imagePullPolicy: Never
    args: ["--name", "app"]
  - name: db
    image: %[1]s
    imagePullPolicy: Never
    args: ["--name", "db", "--listen-after", "1s", "--port", "5432"]
    readinessProbe: {tcpSocket: {port: 5432}, periodSeconds: 1}
`, harness.WorkloadImage))
		b.c.WaitPodReady(t, "default", "through-helm", 2*time.Minute)
		assert.True(t, b.event(t, "through-helm", "app", "START").At.After(b.event(t, "through-helm", "db", "LISTEN").At), "app waited for db")
		assert.Contains(t, b.reasons(t, "through-helm"), "PodorderReleased")
		assert.Equal(t, "podorder.dev/released", strings.TrimSpace(b.c.Kubectl(t, "get", "pod", "through-helm", "-o", "jsonpath={.spec.readinessGates[*].conditionType}")),
			"the chart's policies are installed")
	})
}

package kubernetes

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/podorder/podorder/plugin/kubectlplugin"
	"github.com/podorder/podorder/test/cluster"
	"github.com/podorder/podorder/test/harness"
)

// kubectlPluginScenario builds cmd/kubectl-podorder and runs it as a user does once krew installed
// it: the cluster's kubectl finds kubectl-podorder on PATH and hands it KUBECONFIG.
func kubectlPluginScenario(t *testing.T, b *bed) {
	t.Run("kubectl podorder lists a held pod across the cluster and asks its node's daemon", func(t *testing.T) {
		repo, err := filepath.Abs("../..")
		require.NoError(t, err)
		bin := t.TempDir()
		build := exec.CommandContext(t.Context(), "go", "build", "-o", filepath.Join(bin, "kubectl-podorder"), "./cmd/kubectl-podorder")
		build.Dir = repo
		out, err := build.CombinedOutput()
		require.NoError(t, err, "go build ./cmd/kubectl-podorder: %s", out)
		kubectlPodorder := func(args ...string) string {
			t.Helper()
			cmd := exec.CommandContext(t.Context(), filepath.Join(cluster.BinDir(), "kubectl"), append([]string{"podorder"}, args...)...)
			cmd.Env = append(os.Environ(), "PATH="+bin+string(os.PathListSeparator)+os.Getenv("PATH"), "KUBECONFIG="+b.c.Kubeconfig)
			var stdout, stderr bytes.Buffer
			cmd.Stdout, cmd.Stderr = &stdout, &stderr
			require.NoError(t, cmd.Run(), "kubectl podorder %s: %s", strings.Join(args, " "), stderr.String())
			return stdout.String()
		}

		// db's readinessProbe asks for a port db never opens: app stays held for its whole timeout.
		b.c.ApplyYAML(t, fmt.Sprintf(`apiVersion: v1
kind: Pod
metadata:
  name: held-for-db
  namespace: default
  labels:
    podorder.dev/after.app: db
spec:
  terminationGracePeriodSeconds: 1
  containers:
  - name: app
    image: %[1]s
    imagePullPolicy: Never
  - name: db
    image: %[1]s
    imagePullPolicy: Never
    readinessProbe: {tcpSocket: {port: 5432}, periodSeconds: 1}
`, harness.WorkloadImage))
		b.c.WaitFor(t, "default", "pod/held-for-db", "jsonpath={"+conditionPath+".status}=False", time.Minute)
		node := b.c.Kubectl(t, "get", "pod", "held-for-db", "-o", "jsonpath={.spec.nodeName}")
		// The message says how db stands, until db runs and stays unready: compare with that one.
		var message string
		require.EventuallyWithT(t, func(c *assert.CollectT) {
			message = b.c.Kubectl(t, "get", "pod", "held-for-db", "-o", "jsonpath={"+conditionPath+".message}")
			assert.Contains(c, message, "(db is running but not ready)")
		}, time.Minute, 100*time.Millisecond)
		require.Contains(t, message, "app waits for db (ready) since ")

		held := kubectlPodorder("held", "-A")
		assert.Regexp(t, `(?m)^default\s+held-for-db\s+`+regexp.QuoteMeta(node)+`\s+\d+(m\d+)?s ago\s+`+regexp.QuoteMeta(message)+`$`, held)
		t.Logf("RESULT kubectl podorder held -A:\n%s", held)

		var pods []kubectlplugin.HeldPod
		require.NoError(t, json.Unmarshal([]byte(kubectlPodorder("held", "-n", "default", "-o", "json")), &pods))
		var found *kubectlplugin.HeldPod
		for i := range pods {
			if pods[i].Pod == "held-for-db" {
				found = &pods[i]
			}
		}
		require.NotNil(t, found, "held-for-db among %+v", pods)
		assert.Equal(t, kubectlplugin.HeldPod{Namespace: "default", Pod: "held-for-db", Node: node, Since: found.Since, Message: message}, *found)
		assert.WithinDuration(t, time.Now(), found.Since, 2*time.Minute)

		status := kubectlPodorder("status", "--node", node)
		assert.Regexp(t, `(?m)^default/held-for-db\s+app\s+held\s+db \(ready\): db .+\s+\d+s ago\s+9m\d+s$`, status)
		t.Logf("RESULT kubectl podorder status --node %s:\n%s", node, status)
		assert.Regexp(t, `(?m)^default/held-for-db\s+app\s+held\s`, kubectlPodorder("status", "--pod", "default/held-for-db"), "--pod asks the daemon of the pod's node")
		assert.Contains(t, kubectlPodorder("status", "--node", node, "-o", "json"), `"pod": "default/held-for-db"`)

		assert.Regexp(t, `^podorder \d+\.\d+\.\d+`, kubectlPodorder("version"))
		b.c.Kubectl(t, "delete", "pod", "held-for-db", "--wait=false")
	})
}

package chart

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"sigs.k8s.io/yaml"
)

func helm(t *testing.T, args ...string) string {
	t.Helper()
	cmd := exec.Command(Helm(t), args...)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	require.NoError(t, err, "helm %s: %s", strings.Join(args, " "), stderr.String())
	return string(out)
}

func TestTheChartLints(t *testing.T) {
	out := helm(t, "lint", "--strict", "../../charts/podorder")
	assert.Contains(t, out, "1 chart(s) linted, 0 chart(s) failed")
}

func TestTheChartRendersTheBaseWithTheValuesApplied(t *testing.T) {
	out := helm(t, "template", "po", "../../charts/podorder", "--namespace", "ops",
		"--kube-version", "1.37.2", "--set", "image.tag=v9", "--set", "allowCrossNamespace=a=b", "--set", "logLevel=debug", "--set", "policies.validation=false")
	kinds := map[string]int{}
	var ds map[string]any
	var guard string
	for _, doc := range strings.Split(out, "\n---") {
		var obj map[string]any
		require.NoError(t, yaml.Unmarshal([]byte(doc), &obj))
		if obj == nil {
			continue
		}
		kind := obj["kind"].(string)
		kinds[kind]++
		if kind == "DaemonSet" {
			ds = obj
		}
		if kind == "ValidatingAdmissionPolicy" {
			guard = doc
		}
	}
	assert.Equal(t, map[string]int{"ServiceAccount": 1, "ClusterRole": 1, "ClusterRoleBinding": 1, "DaemonSet": 1,
		"MutatingAdmissionPolicy": 2, "MutatingAdmissionPolicyBinding": 2, "ValidatingAdmissionPolicy": 1, "ValidatingAdmissionPolicyBinding": 1}, kinds,
		"the base's objects; validation turned off")
	rendered, err := yaml.Marshal(ds)
	require.NoError(t, err)
	for _, want := range []string{"image: registry.local/podorder/podorder:v9", "--allow-cross-namespace=a=b", "--log-level=debug", "hostPID: true", "KILL"} {
		assert.Contains(t, string(rendered), want)
	}
	assert.Contains(t, guard, `request.userInfo.username == "system:serviceaccount:ops:podorder"`, "the status guard names the release's service account")
}

func TestTheChartCarriesTheBasesPolicies(t *testing.T) {
	for _, name := range []string{"lifecycle.yaml", "readiness.yaml", "validation.yaml"} {
		base, err := os.ReadFile(filepath.Join("../../daemonset", name))
		require.NoError(t, err)
		chart, err := os.ReadFile(filepath.Join("../../charts/podorder/files", name))
		require.NoError(t, err)
		assert.Equal(t, string(base), string(chart), "charts/podorder/files/%s must be a copy of daemonset/%s", name, name)
	}
}

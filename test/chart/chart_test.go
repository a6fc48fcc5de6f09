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
	assert.Equal(t, map[string]int{"ServiceAccount": 1, "ClusterRole": 2, "ClusterRoleBinding": 1, "DaemonSet": 1,
		"MutatingAdmissionPolicy": 2, "MutatingAdmissionPolicyBinding": 2, "ValidatingAdmissionPolicy": 1, "ValidatingAdmissionPolicyBinding": 1}, kinds,
		"the base's objects; validation turned off")
	rendered, err := yaml.Marshal(ds)
	require.NoError(t, err)
	for _, want := range []string{"image: registry.local/podorder/podorder:v9", "--allow-cross-namespace=a=b", "--log-level=debug", "hostPID: true", "KILL",
		"--health-addr=127.0.0.1:8081", "--metrics-addr=:8443", "containerPort: 8443"} {
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

// The health endpoint has no authentication: on the node's network it listens on loopback, where
// kubelet's probes are sent; in a pod network namespace kubelet probes the pod IP, so it listens
// there. Metrics need the API to authorize scrapers.
func TestTheChartPutsHealthWhereKubeletProbesIt(t *testing.T) {
	for _, tc := range []struct {
		name    string
		set     []string
		want    []string
		wantNot []string
	}{
		{"on the node's network", nil,
			[]string{"--health-addr=127.0.0.1:8081", "host: 127.0.0.1", "--metrics-addr=:8443", "name: metrics"}, nil},
		{"in a pod network namespace", []string{"hostNetwork=false", "probes.hostNetwork=false"},
			[]string{"--health-addr=:8081", "--metrics-addr=:8443"}, []string{"host: 127.0.0.1"}},
		{"without the API", []string{"api.enabled=false"},
			[]string{"--metrics-addr=\n"}, []string{"name: metrics"}},
		{"with a metrics certificate", []string{"metricsCertSecret=podorder-metrics-tls"},
			[]string{"--metrics-cert-dir=/etc/podorder/metrics-tls", "secretName: podorder-metrics-tls"}, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			args := []string{"template", "po", "../../charts/podorder", "--namespace", "ops", "--kube-version", "1.37.2", "--show-only", "templates/daemonset.yaml"}
			for _, s := range tc.set {
				args = append(args, "--set", s)
			}
			out := helm(t, args...)
			for _, w := range tc.want {
				assert.Contains(t, out, w)
			}
			for _, w := range tc.wantNot {
				assert.NotContains(t, out, w)
			}
		})
	}
}

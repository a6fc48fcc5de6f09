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
	appsv1 "k8s.io/api/apps/v1"
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
	docs := render(t, "--set", "image.tag=v9", "--set", "allowCrossNamespace=a=b", "--set", "logLevel=debug", "--set", "policies.validation=false",
		"--api-versions", mutatingAPI)
	kinds := map[string]int{}
	for kind, objs := range docs {
		kinds[kind] = len(objs)
	}
	require.Len(t, docs["DaemonSet"], 1)
	require.Len(t, docs["ValidatingAdmissionPolicy"], 1)
	ds, guard := docs["DaemonSet"][0], docs["ValidatingAdmissionPolicy"][0]
	assert.Equal(t, map[string]int{"ServiceAccount": 1, "ClusterRole": 2, "ClusterRoleBinding": 1, "DaemonSet": 1,
		"MutatingAdmissionPolicy": 2, "MutatingAdmissionPolicyBinding": 2, "ValidatingAdmissionPolicy": 1, "ValidatingAdmissionPolicyBinding": 1}, kinds,
		"the base's objects; validation turned off")
	for _, want := range []string{"image: registry.local/podorder/podorder:v9", "--allow-cross-namespace=a=b", "--log-level=debug", "hostPID: true", "KILL",
		"--health-addr=127.0.0.1:8081", "--metrics-addr=:8443", "containerPort: 8443"} {
		assert.Contains(t, ds, want)
	}
	require.Len(t, docs["ValidatingAdmissionPolicyBinding"], 1)
	assert.Contains(t, guard, `request.userInfo.username == "system:serviceaccount:" + params.metadata.namespace`, "the status guard matches its parameter's service account")
	assert.Contains(t, docs["ValidatingAdmissionPolicyBinding"][0], "paramRef:\n    name: po-podorder\n    namespace: ops\n", "the status guard's parameter is the release's service account")
}

// The image runs one binary whose every mode is a command: a container that names none would print
// usage and exit, so each names its own.
func TestTheChartNamesTheCommandOfEachContainer(t *testing.T) {
	docs := render(t)
	require.Len(t, docs["DaemonSet"], 1)
	var ds appsv1.DaemonSet
	require.NoError(t, yaml.Unmarshal([]byte(docs["DaemonSet"][0]), &ds))
	spec := ds.Spec.Template.Spec
	require.Len(t, spec.InitContainers, 1)
	require.Len(t, spec.Containers, 1)
	require.NotEmpty(t, spec.InitContainers[0].Args)
	require.NotEmpty(t, spec.Containers[0].Args)
	assert.Equal(t, "install-hook", spec.InitContainers[0].Args[0])
	assert.Equal(t, "daemon", spec.Containers[0].Args[0])
}

func TestTheChartCarriesTheBasesPolicies(t *testing.T) {
	for _, path := range []string{"components/shutdown-order/lifecycle.yaml", "components/readiness-gate/readiness.yaml", "base/status-writes.yaml", "base/validation.yaml"} {
		base, err := os.ReadFile(filepath.Join("../../daemonset", path))
		require.NoError(t, err)
		name := filepath.Base(path)
		chart, err := os.ReadFile(filepath.Join("../../charts/podorder/files", name))
		require.NoError(t, err)
		assert.Equal(t, string(base), string(chart), "charts/podorder/files/%s must be a copy of daemonset/%s", name, path)
	}
}

// render returns what helm template renders with args, each object as YAML by kind.
func render(t *testing.T, args ...string) map[string][]string {
	t.Helper()
	out := helm(t, append([]string{"template", "po", "../../charts/podorder", "--namespace", "ops", "--kube-version", "1.37.2"}, args...)...)
	docs := map[string][]string{}
	for _, doc := range strings.Split(out, "\n---") {
		var obj map[string]any
		require.NoError(t, yaml.Unmarshal([]byte(doc), &obj))
		if obj == nil {
			continue
		}
		// Marshalled again, so that every object reads the same way whatever its template wrote.
		y, err := yaml.Marshal(obj)
		require.NoError(t, err)
		docs[obj["kind"].(string)] = append(docs[obj["kind"].(string)], string(y))
	}
	return docs
}

func TestThePodStatusGrantShipsOnlyWithItsGuard(t *testing.T) {
	tests := map[string]struct {
		args      []string
		wantGrant bool
	}{
		"defaults":                   {nil, true},
		"no readinessGate policy":    {[]string{"--set", "policies.readinessGate=false"}, true},
		"no policies at all":         {[]string{"--set", "policies.readinessGate=false", "--set", "policies.shutdownOrder=false", "--set", "policies.validation=false"}, true},
		"no API, no readinessGate":   {[]string{"--set", "api.enabled=false", "--set", "policies.readinessGate=false"}, false},
		"no API, no policies at all": {[]string{"--set", "api.enabled=false", "--set", "policies.readinessGate=false", "--set", "policies.validation=false"}, false},
	}
	for name, tt := range tests {
		t.Run(name, func(t *testing.T) {
			docs := render(t, tt.args...)
			rules := strings.Join(docs["ClusterRole"], "\n")
			assert.Equal(t, tt.wantGrant, strings.Contains(rules, "pods/status"), "pods/status in the ClusterRoles:\n%s", rules)
			guarded := len(docs["ValidatingAdmissionPolicy"]) > 0 && len(docs["ValidatingAdmissionPolicyBinding"]) > 0
			if tt.wantGrant {
				assert.True(t, guarded, "the pods/status grant comes with the status guard")
			}
		})
	}
}

func TestImpossibleCombinationsFailToRender(t *testing.T) {
	tests := map[string]struct {
		set  []string
		want string
	}{
		"the readinessGate without the API":      {[]string{"api.enabled=false"}, "policies.readinessGate=true needs api.enabled=true"},
		"host-network probes from a pod network": {[]string{"hostNetwork=false"}, "probes.hostNetwork=true needs hostNetwork=true"},
	}
	for name, tt := range tests {
		t.Run(name, func(t *testing.T) {
			args := []string{"template", "po", "../../charts/podorder", "--kube-version", "1.37.2"}
			for _, s := range tt.set {
				args = append(args, "--set", s)
			}
			out, err := exec.Command(Helm(t), args...).CombinedOutput()
			require.Error(t, err, "%s", out)
			assert.Contains(t, string(out), tt.want)
		})
	}
}

func TestStopWithOffDropsHostPIDAndKill(t *testing.T) {
	tests := map[string]struct {
		stopWith          string
		want, wantMissing []string
	}{
		"on (the default)": {"true", []string{"hostPID: true", "- KILL"}, []string{"--stop-with=false"}},
		"off":              {"false", []string{"--stop-with=false"}, []string{"hostPID", "KILL"}},
	}
	for name, tt := range tests {
		t.Run(name, func(t *testing.T) {
			out := helm(t, "template", "po", "../../charts/podorder", "--kube-version", "1.37.2", "--show-only", "templates/daemonset.yaml",
				"--set", "stopWith="+tt.stopWith)
			var ds map[string]any
			require.NoError(t, yaml.Unmarshal([]byte(out), &ds))
			rendered, err := yaml.Marshal(ds)
			require.NoError(t, err)
			for _, w := range tt.want {
				assert.Contains(t, string(rendered), w)
			}
			for _, w := range tt.wantMissing {
				assert.NotContains(t, string(rendered), w)
			}
			assert.Contains(t, string(rendered), "automountServiceAccountToken: false", "the init container gets no API token")
			assert.Contains(t, string(rendered), "type: RuntimeDefault")
		})
	}
}

// Probes follow the kernel's LISTEN events by default (the daemon's own default: no flag), and the
// value turns them off.
func TestTheChartTurnsReadinessEventsOffOnlyWhenAsked(t *testing.T) {
	args := []string{"template", "po", "../../charts/podorder", "--namespace", "ops", "--kube-version", "1.37.2", "--show-only", "templates/daemonset.yaml"}
	assert.NotContains(t, helm(t, args...), "- --readiness-events")
	assert.Contains(t, helm(t, append(args, "--set", "probes.readinessEvents=none")...), "- --readiness-events=none\n")
	out, err := exec.Command(Helm(t), append(args, "--set", "probes.readinessEvents=sometimes")...).CombinedOutput()
	assert.Error(t, err, "the schema refuses a value other than auto and none")
	assert.Contains(t, string(out), "readinessEvents")
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
			[]string{"--health-addr=:8081", "--metrics-addr=:8443"}, []string{"host: 127.0.0.1", "--probe-host-network"}},
		{"without the API", []string{"api.enabled=false", "policies.readinessGate=false"},
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

func TestFileReadinessGrantsSysPtraceOnlyWhenAskedFor(t *testing.T) {
	tests := map[string]struct {
		set  []string
		want []string
	}{
		"off (the default)":  {nil, []string{"SYS_ADMIN", "KILL"}},
		"on":                 {[]string{"--set", "fileReadiness=true"}, []string{"SYS_ADMIN", "KILL", "SYS_PTRACE"}},
		"on, stop-with off":  {[]string{"--set", "fileReadiness=true", "--set", "stopWith=false"}, []string{"SYS_ADMIN", "SYS_PTRACE"}},
		"off, stop-with off": {[]string{"--set", "stopWith=false"}, []string{"SYS_ADMIN"}},
	}
	for name, tt := range tests {
		t.Run(name, func(t *testing.T) {
			out := helm(t, append([]string{"template", "po", "../../charts/podorder", "--kube-version", "1.37.2", "--show-only", "templates/daemonset.yaml"}, tt.set...)...)
			var ds appsv1.DaemonSet
			require.NoError(t, yaml.Unmarshal([]byte(out), &ds))
			var got []string
			for _, c := range ds.Spec.Template.Spec.Containers[0].SecurityContext.Capabilities.Add {
				got = append(got, string(c))
			}
			assert.Equal(t, tt.want, got)
		})
	}
}

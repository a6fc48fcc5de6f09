package chart

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"sigs.k8s.io/yaml"
)

// The API the MutatingAdmissionPolicies need (Kubernetes >= 1.36), as helm template is told a
// cluster serves it.
const mutatingAPI = "admissionregistration.k8s.io/v1/MutatingAdmissionPolicy"

// renderErr runs helm template with args and returns its output and error.
func renderErr(t *testing.T, args ...string) (string, error) {
	t.Helper()
	out, err := exec.Command(Helm(t), append([]string{"template", "po", "../../charts/podorder", "--namespace", "ops", "--kube-version", "1.37.2"}, args...)...).CombinedOutput()
	return string(out), err
}

func sets(values ...string) []string {
	var args []string
	for _, v := range values {
		args = append(args, "--set", v)
	}
	return args
}

func TestMisspeltOrOutOfRangeValuesFailRenderingNamingTheKey(t *testing.T) {
	tests := map[string]struct {
		args []string
		want string
	}{
		"a misspelt key":                   {sets("imag.tag=x"), "additional properties 'imag' not allowed"},
		"a misspelt nested key":            {sets("image.tga=x"), "at '/image': additional properties 'tga' not allowed"},
		"an unknown log format":            {sets("logFormat=yaml"), "at '/logFormat': value must be one of 'text', 'json'"},
		"a plugin index above 99":          {sets("pluginIndex=100"), "at '/pluginIndex'"},
		"a plugin index of one digit":      {[]string{"--set-string", "pluginIndex=7"}, "at '/pluginIndex'"},
		"a negative plugin index":          {sets("pluginIndex=-1"), "at '/pluginIndex'"},
		"an unknown log level":             {sets("logLevel=verbose"), "at '/logLevel'"},
		"admission.mutating not auto":      {sets("admission.mutating=maybe"), "at '/admission/mutating'"},
		"a digest that is not sha256":      {sets("image.digest=latest"), "at '/image/digest'"},
		"a port out of range":              {sets("metricsPort=70000"), "at '/metricsPort'"},
		"a daemon flag without its dashes": {sets("extraArgs[0]=log-level=debug"), "at '/extraArgs/0'"},
	}
	for name, tt := range tests {
		t.Run(name, func(t *testing.T) {
			out, err := renderErr(t, tt.args...)
			require.Error(t, err, "%s", out)
			assert.Contains(t, out, tt.want)
		})
	}
}

func TestEveryShippedValueIsInTheSchema(t *testing.T) {
	// helm template validates the defaults against the schema; every default passes.
	_, err := renderErr(t)
	require.NoError(t, err)
	out, err := renderErr(t, sets("pluginIndex=5", "pluginIndex=5")...)
	require.NoError(t, err, out)
	assert.Contains(t, out, "value: \"05\"", "an integer plugin index is written with two digits")
}

func TestTheMutatingPoliciesFollowTheCluster(t *testing.T) {
	tests := map[string]struct {
		args       []string
		wantPolicy []string
	}{
		"auto on a cluster with the API": {[]string{"--api-versions", mutatingAPI}, []string{"podorder-prestop", "podorder-readiness-gate"}},
		"auto on a cluster without it":   {nil, nil},
		"forced on":                      {sets("admission.mutating=true"), []string{"podorder-prestop", "podorder-readiness-gate"}},
		"forced off":                     {append(sets("admission.mutating=false"), "--api-versions", mutatingAPI), nil},
		"no readinessGate":               {append(sets("policies.readinessGate=false"), "--api-versions", mutatingAPI), []string{"podorder-prestop"}},
		"no API, no readinessGate":       {append(sets("api.enabled=false", "policies.readinessGate=false"), "--api-versions", mutatingAPI), []string{"podorder-prestop"}},
	}
	for name, tt := range tests {
		t.Run(name, func(t *testing.T) {
			docs := render(t, tt.args...)
			var policies, bindings []string
			for _, p := range docs["MutatingAdmissionPolicy"] {
				policies = append(policies, metadataName(t, p))
			}
			for _, b := range docs["MutatingAdmissionPolicyBinding"] {
				bindings = append(bindings, metadataName(t, b))
			}
			assert.Equal(t, tt.wantPolicy, policies)
			assert.Equal(t, tt.wantPolicy, bindings)
			apiOn := !strings.Contains(strings.Join(tt.args, " "), "api.enabled=false")
			guard := false
			for _, p := range docs["ValidatingAdmissionPolicy"] {
				guard = guard || metadataName(t, p) == "podorder-status-writes"
			}
			assert.Equal(t, apiOn, guard, "the status guard ships with the API, whatever the mutating policies")
		})
	}
}

// Each policy the chart renders is daemonset/'s, object for object, with the release's labels
// added and the status guard's parameter set to the release's ServiceAccount.
func TestTheChartsPoliciesAreTheManifestsWithTheReleaseLabels(t *testing.T) {
	docs := render(t, "--api-versions", mutatingAPI)
	rendered := map[string]map[string]any{}
	for _, kind := range []string{"MutatingAdmissionPolicy", "MutatingAdmissionPolicyBinding", "ValidatingAdmissionPolicy", "ValidatingAdmissionPolicyBinding"} {
		for _, doc := range docs[kind] {
			var obj map[string]any
			require.NoError(t, yaml.Unmarshal([]byte(doc), &obj))
			rendered[kind+"/"+metadataName(t, doc)] = obj
		}
	}
	var files []map[string]any
	for _, path := range []string{"components/shutdown-order/lifecycle.yaml", "components/readiness-gate/readiness.yaml", "base/status-writes.yaml", "base/validation.yaml"} {
		data, err := os.ReadFile(filepath.Join("../../daemonset", path))
		require.NoError(t, err)
		for _, doc := range strings.Split(string(data), "\n---\n") {
			var obj map[string]any
			require.NoError(t, yaml.Unmarshal([]byte(doc), &obj))
			files = append(files, obj)
		}
	}
	require.Len(t, rendered, len(files))
	for _, want := range files {
		meta := want["metadata"].(map[string]any)
		key := want["kind"].(string) + "/" + meta["name"].(string)
		got, ok := rendered[key]
		require.True(t, ok, "%s is rendered", key)
		spec := want["spec"].(map[string]any)
		if ref, ok := spec["paramRef"].(map[string]any); ok {
			ref["name"], ref["namespace"] = "po-podorder", "ops"
		}
		assert.Equal(t, spec, got["spec"], "%s: the spec of daemonset/'s", key)
		labels := got["metadata"].(map[string]any)["labels"].(map[string]any)
		assert.Equal(t, "po", labels["app.kubernetes.io/instance"], key)
	}
}

// Every object, cluster-scoped ones included, says which release it belongs to.
func TestEveryObjectCarriesTheReleaseLabels(t *testing.T) {
	docs := render(t, sets("admission.mutating=true", "namespace.create=true", "namespace.name=podorder-system",
		"metrics.monitoringAPI=true", "metrics.serviceMonitor.enabled=true", "metrics.prometheusRule.enabled=true",
		"metrics.podMonitor.enabled=true", "metrics.authorizationSecret.name=scrape-token",
		"metrics.readers[0].kind=ServiceAccount", "metrics.readers[0].name=prometheus", "metrics.readers[0].namespace=monitoring")...)
	kinds := 0
	for kind, objs := range docs {
		for _, doc := range objs {
			kinds++
			var obj struct {
				Metadata struct {
					Name      string
					Namespace string
					Labels    map[string]string
				}
			}
			require.NoError(t, yaml.Unmarshal([]byte(doc), &obj))
			for _, key := range []string{"helm.sh/chart", "app.kubernetes.io/instance", "app.kubernetes.io/managed-by", "app.kubernetes.io/name"} {
				assert.NotEmpty(t, obj.Metadata.Labels[key], "%s %s: label %s", kind, obj.Metadata.Name, key)
			}
			if obj.Metadata.Namespace != "" {
				assert.Equal(t, "podorder-system", obj.Metadata.Namespace, "%s %s goes to namespace.name", kind, obj.Metadata.Name)
			}
		}
	}
	for _, kind := range []string{"Namespace", "Service", "ServiceMonitor", "PodMonitor", "PrometheusRule", "ClusterRoleBinding"} {
		assert.NotEmpty(t, docs[kind], kind)
	}
	assert.Len(t, docs["ClusterRoleBinding"], 2, "the daemon's and the metrics readers'")
}

func TestTheChartCreatesItsNamespaceOnlyApartFromTheRelease(t *testing.T) {
	docs := render(t, sets("namespace.create=true", "namespace.name=podorder-system")...)
	require.Len(t, docs["Namespace"], 1)
	ns := docs["Namespace"][0]
	assert.Contains(t, ns, "name: podorder-system")
	assert.Contains(t, ns, "pod-security.kubernetes.io/enforce: privileged")
	assert.Contains(t, docs["ClusterRoleBinding"][0], "namespace: podorder-system", "the subject is in the created namespace")
	assert.Empty(t, render(t)["Namespace"], "no Namespace by default")

	for _, args := range [][]string{sets("namespace.create=true"), sets("namespace.create=true", "namespace.name=ops")} {
		out, err := renderErr(t, args...)
		require.Error(t, err, "%s", out)
		assert.Contains(t, out, "namespace.create=true needs namespace.name, a namespace other than the release's (ops)")
	}
}

func TestAnImageDigestPinsTheImage(t *testing.T) {
	digest := "sha256:" + strings.Repeat("ab", 32)
	ds := render(t, sets("image.digest="+digest, "image.tag=ignored")...)["DaemonSet"][0]
	assert.Equal(t, 2, strings.Count(ds, "image: registry.local/podorder/podorder@"+digest), "the init container and the daemon")
	assert.NotContains(t, ds, "ignored")
}

func TestTheNewPodValuesReachTheDaemonSet(t *testing.T) {
	ds := render(t, sets("podLabels.team=a", "podLabels.app\\.kubernetes\\.io/name=other", "podAnnotations.note=b",
		"affinity.nodeAffinity.requiredDuringSchedulingIgnoredDuringExecution.nodeSelectorTerms[0].matchExpressions[0].key=pool",
		"affinity.nodeAffinity.requiredDuringSchedulingIgnoredDuringExecution.nodeSelectorTerms[0].matchExpressions[0].operator=Exists",
		"updateStrategy.type=OnDelete", "updateStrategy.rollingUpdate=null", "imagePullSecrets[0].name=regcred",
		"extraArgs[0]=--log-level=debug", "extraEnv[0].name=GOMEMLIMIT", "extraEnv[0].value=100MiB", "fullnameOverride=po-ds")...)["DaemonSet"][0]
	for _, want := range []string{"team: a", "note: b", "tolerate-missing-nri-plugins.noderesource.dev: \"true\"", "key: pool",
		"type: OnDelete", "name: regcred", "- --log-level=debug", "name: GOMEMLIMIT", "name: po-ds", "serviceAccountName: po-ds"} {
		assert.Contains(t, ds, want)
	}
	assert.NotContains(t, ds, "name: other", "podLabels cannot change the selector's labels")
}

func metadataName(t *testing.T, doc string) string {
	t.Helper()
	var obj struct{ Metadata struct{ Name string } }
	require.NoError(t, yaml.Unmarshal([]byte(doc), &obj))
	return obj.Metadata.Name
}

func TestTheValidationMayWarnAndAuditForAGradualRolloutAndTheGuardAlwaysDenies(t *testing.T) {
	actions := func(args ...string) map[string][]string {
		out := map[string][]string{}
		for _, doc := range render(t, args...)["ValidatingAdmissionPolicyBinding"] {
			var b struct {
				Metadata struct{ Name string }
				Spec     struct{ ValidationActions []string }
			}
			require.NoError(t, yaml.Unmarshal([]byte(doc), &b))
			out[b.Metadata.Name] = b.Spec.ValidationActions
		}
		return out
	}
	assert.Equal(t, map[string][]string{"podorder-pod-declarations": {"Deny"}, "podorder-template-declarations": {"Deny"}, "podorder-status-writes": {"Deny"}},
		actions(), "enforced by default")
	assert.Equal(t, map[string][]string{"podorder-pod-declarations": {"Warn", "Audit"}, "podorder-template-declarations": {"Warn", "Audit"}, "podorder-status-writes": {"Deny"}},
		actions(sets("admission.validationActions={Warn,Audit}")...), "the guard on podorder's status writes is never relaxed")
	out, err := renderErr(t, sets("admission.validationActions={Block}")...)
	require.Error(t, err)
	assert.Contains(t, out, "at '/admission/validationActions/0': value must be one of 'Deny', 'Warn', 'Audit'")
}

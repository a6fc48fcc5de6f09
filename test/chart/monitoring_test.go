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

// The metrics endpoint is HTTPS and wants a bearer token the API server allows to get /metrics.
func TestTheServiceMonitorScrapesWithABearerTokenOverHTTPS(t *testing.T) {
	on := sets("metrics.serviceMonitor.enabled=true")
	tests := map[string]struct {
		args          []string
		want, wantNot []string
	}{
		"Prometheus' own token, the self-signed certificate": {append(on, "--api-versions", "monitoring.coreos.com/v1"),
			[]string{"scheme: https", "bearerTokenFile: /var/run/secrets/kubernetes.io/serviceaccount/token", "insecureSkipVerify: true", "port: metrics"},
			[]string{"authorization"}},
		"a token Secret and a CA": {append(on, "--api-versions", "monitoring.coreos.com/v1", "--set", "metrics.authorizationSecret.name=scrape-token",
			"--set", "metrics.tls.caSecret.name=podorder-ca", "--set", "metrics.tls.serverName=podorder"),
			[]string{"authorization:", "name: scrape-token", "name: podorder-ca", "key: ca.crt", "serverName: podorder"},
			[]string{"bearerTokenFile", "insecureSkipVerify"}},
	}
	for name, tt := range tests {
		t.Run(name, func(t *testing.T) {
			docs := render(t, tt.args...)
			require.Len(t, docs["ServiceMonitor"], 1)
			require.Len(t, docs["Service"], 1, "the headless Service it selects")
			for _, w := range tt.want {
				assert.Contains(t, docs["ServiceMonitor"][0], w)
			}
			for _, w := range tt.wantNot {
				assert.NotContains(t, docs["ServiceMonitor"][0], w)
			}
		})
	}
}

func TestTheMonitoringObjectsNeedTheirAPIOrAreForced(t *testing.T) {
	on := sets("metrics.serviceMonitor.enabled=true", "metrics.prometheusRule.enabled=true")
	assert.Empty(t, render(t, on...)["ServiceMonitor"], "no monitoring.coreos.com/v1, nothing rendered")
	assert.Empty(t, render(t, on...)["PrometheusRule"])
	assert.Len(t, render(t, append(on, "--api-versions", "monitoring.coreos.com/v1")...)["ServiceMonitor"], 1)
	assert.Len(t, render(t, append(on, "--set", "metrics.monitoringAPI=true")...)["PrometheusRule"], 1, "forced")
	assert.Empty(t, render(t, "--api-versions", "monitoring.coreos.com/v1")["ServiceMonitor"], "off by default")
}

func TestImpossibleMonitoringCombinationsFailToRender(t *testing.T) {
	tests := map[string]struct {
		args []string
		want string
	}{
		"a PodMonitor without a token Secret": {sets("metrics.podMonitor.enabled=true"), "metrics.podMonitor.enabled=true needs metrics.authorizationSecret.name"},
		"a ServiceMonitor without the API": {sets("metrics.serviceMonitor.enabled=true", "api.enabled=false", "policies.readinessGate=false"),
			"metrics.serviceMonitor and metrics.podMonitor need api.enabled=true"},
	}
	for name, tt := range tests {
		t.Run(name, func(t *testing.T) {
			out, err := renderErr(t, tt.args...)
			require.Error(t, err, "%s", out)
			assert.Contains(t, out, tt.want)
		})
	}
}

// The alerts docs/operating.md recommends, on metrics the daemon exports.
func TestThePrometheusRuleAlertsOnWhatTheOperatingGuideNames(t *testing.T) {
	docs := render(t, sets("metrics.prometheusRule.enabled=true", "metrics.monitoringAPI=true")...)
	require.Len(t, docs["PrometheusRule"], 1)
	var rule struct {
		Spec struct {
			Groups []struct {
				Rules []struct{ Alert, Expr string }
			}
		}
	}
	require.NoError(t, yaml.Unmarshal([]byte(docs["PrometheusRule"][0]), &rule))
	require.Len(t, rule.Spec.Groups, 1)
	guide, err := os.ReadFile("../../docs/operating.md")
	require.NoError(t, err)
	alerts := map[string]string{}
	for _, r := range rule.Spec.Groups[0].Rules {
		alerts[r.Alert] = r.Expr
	}
	for alert, metric := range map[string]string{
		"PodorderHoldsFailing":     "podorder_hold_duration_seconds_count",
		"PodorderSlowNRIHandlers":  "podorder_nri_handler_duration_seconds",
		"PodorderAPINotSynced":     "podorder_api_synced",
		"PodorderStoreWriteErrors": "podorder_store_write_errors_total",
	} {
		assert.Contains(t, alerts[alert], metric, alert)
		assert.Contains(t, string(guide), "`"+metric, "docs/operating.md names %s", metric)
	}
}

// notes renders the chart's NOTES.txt with args: helm template does not print it, so a copy of the
// chart renders it as a value of a YAML document.
func notes(t *testing.T, args ...string) string {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "podorder")
	require.NoError(t, os.CopyFS(dir, os.DirFS("../../charts/podorder")))
	require.NoError(t, os.Rename(filepath.Join(dir, "templates/NOTES.txt"), filepath.Join(dir, "files/NOTES.txt")))
	require.NoError(t, os.WriteFile(filepath.Join(dir, "templates/notes.yaml"),
		[]byte("notes: {{ tpl (.Files.Get \"files/NOTES.txt\") . | toJson }}\n"), 0o644))
	cmd := exec.Command(Helm(t), append([]string{"template", "po", dir, "--namespace", "ops", "--kube-version", "1.37.2", "--show-only", "templates/notes.yaml"}, args...)...)
	out, err := cmd.CombinedOutput()
	require.NoError(t, err, "%s", out)
	var doc struct{ Notes string }
	require.NoError(t, yaml.Unmarshal(out, &doc))
	return doc.Notes
}

func TestTheNotesSayWhatIsMissingWithoutTheMutatingPolicies(t *testing.T) {
	without := notes(t)
	for _, want := range []string{
		"The MutatingAdmissionPolicies were not installed: this cluster does not serve\nadmissionregistration.k8s.io/v1 MutatingAdmissionPolicy (Kubernetes < 1.36)",
		"readinessGates:\n        - conditionType: podorder.dev/released",
		`command: ["/.podorder/hook", "--prestop", "--container=<the container's name>"]`,
		"kubectl label namespace ops pod-security.kubernetes.io/enforce=privileged",
		"ClusterRole po-podorder-metrics-reader",
	} {
		assert.Contains(t, without, want)
	}
	with := notes(t, "--api-versions", mutatingAPI)
	assert.NotContains(t, with, "MutatingAdmissionPolicies were not installed")

	off := notes(t, "--api-versions", mutatingAPI, "--set", "admission.mutating=false")
	assert.Contains(t, off, "The MutatingAdmissionPolicies were not installed: admission.mutating=false")

	noAPI := notes(t, "--set", "api.enabled=false", "--set", "policies.readinessGate=false")
	assert.NotContains(t, noAPI, "readinessGates", "no readinessGate to add without the API")
	assert.Contains(t, noAPI, "--prestop")
	assert.True(t, strings.Contains(noAPI, "api.enabled=false"))

	monitoring := notes(t, "--set", "metrics.serviceMonitor.enabled=true")
	assert.Contains(t, monitoring, "The ServiceMonitor, PodMonitor and PrometheusRule were not rendered")
}

// The Grafana dashboard ships off; on, it is a ConfigMap Grafana's sidecar loads, holding
// files/dashboard.json as it is (plugin/metrics checks its queries against the daemon's registry).
func TestTheGrafanaDashboardIsAConfigMapForGrafanasSidecarWhenAskedFor(t *testing.T) {
	for _, cm := range render(t)["ConfigMap"] {
		assert.NotContains(t, cm, "grafana_dashboard", "off by default")
	}
	docs := render(t, "--set", "metrics.grafanaDashboard.enabled=true", "--set", "metrics.grafanaDashboard.namespace=monitoring",
		"--set", "metrics.grafanaDashboard.annotations.grafana_folder=podorder")
	var dashboard map[string]any
	for _, doc := range docs["ConfigMap"] {
		var cm struct {
			Metadata struct {
				Name, Namespace     string
				Labels, Annotations map[string]string
			}
			Data map[string]string
		}
		require.NoError(t, yaml.Unmarshal([]byte(doc), &cm))
		if cm.Metadata.Labels["grafana_dashboard"] != "1" {
			continue
		}
		assert.Equal(t, "monitoring", cm.Metadata.Namespace)
		assert.Equal(t, "podorder", cm.Metadata.Annotations["grafana_folder"])
		want, err := os.ReadFile("../../charts/podorder/files/dashboard.json")
		require.NoError(t, err)
		assert.JSONEq(t, string(want), cm.Data["podorder.json"])
		require.NoError(t, yaml.Unmarshal([]byte(cm.Data["podorder.json"]), &dashboard))
	}
	require.NotNil(t, dashboard, "a ConfigMap labelled grafana_dashboard: \"1\"")
	assert.Equal(t, "podorder", dashboard["title"])
}

package metrics

import (
	"encoding/json"
	"errors"
	"os"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/podorder/podorder/plugin/preflight"
)

// dashboard is the chart's Grafana dashboard (metrics.grafanaDashboard).
const dashboard = "../../charts/podorder/files/dashboard.json"

// registered lists the metric names the daemon's registry serves, each metric observed once so that
// every vector has a series.
func registered(t *testing.T) []string {
	m := New(func() float64 { return 0 }, func() float64 { return 1 })
	m.HoldEnded("released", time.Second)
	m.Released(time.Millisecond)
	m.Handled("CreateContainer", time.Microsecond)
	m.ProbeAttempted(nil)
	m.ProbeAttempted(errors.New("refused"))
	m.StoreWriteFailed()
	m.Reconnected()
	m.ConditionWriteFailed()
	m.PreflightChecked("nri_socket", preflight.Pass)
	families, err := m.registry.Gather()
	require.NoError(t, err)
	var names []string
	for _, f := range families {
		names = append(names, f.GetName())
	}
	return names
}

// queries lists every PromQL expression of a dashboard, in panels, rows and variables alike.
func queries(t *testing.T, path string) []string {
	data, err := os.ReadFile(path)
	require.NoError(t, err)
	var doc any
	require.NoError(t, json.Unmarshal(data, &doc), "%s is not JSON", path)
	var out []string
	var walk func(v any)
	walk = func(v any) {
		switch v := v.(type) {
		case map[string]any:
			for k, x := range v {
				if s, ok := x.(string); ok && (k == "expr" || k == "definition") {
					out = append(out, s)
				}
				walk(x)
			}
		case []any:
			for _, x := range v {
				walk(x)
			}
		}
	}
	walk(doc)
	return out
}

func TestEveryMetricTheDashboardQueriesIsOneTheDaemonServes(t *testing.T) {
	served := registered(t)
	exprs := queries(t, dashboard)
	require.NotEmpty(t, exprs)
	name := regexp.MustCompile(`\bpodorder_[a-z_]+\b`)
	queried := map[string]bool{}
	for _, e := range exprs {
		found := name.FindAllString(e, -1)
		assert.NotEmpty(t, found, "a query of no podorder metric: %s", e)
		for _, n := range found {
			base := n
			for _, suffix := range []string{"_bucket", "_sum", "_count"} {
				if s, ok := strings.CutSuffix(n, suffix); ok && slices.Contains(served, s) {
					base = s
				}
			}
			assert.Contains(t, served, base, "the dashboard queries %s, which the daemon does not serve: %s", n, e)
			queried[base] = true
		}
	}
	for _, want := range []string{"podorder_holds", "podorder_hold_duration_seconds", "podorder_release_latency_seconds", "podorder_probe_attempts_total",
		"podorder_nri_handler_duration_seconds", "podorder_api_synced", "podorder_preflight_ok"} {
		assert.True(t, queried[want], "the dashboard shows %s", want)
	}
}

func TestTheDashboardIsOneGrafanaLoads(t *testing.T) {
	data, err := os.ReadFile(dashboard)
	require.NoError(t, err)
	var d struct {
		Title, UID string
		Panels     []struct {
			ID      int
			Type    string
			GridPos struct{ X, Y, W, H int }
		}
	}
	require.NoError(t, json.Unmarshal(data, &d))
	assert.Equal(t, "podorder", d.UID)
	ids := map[int]bool{}
	for _, p := range d.Panels {
		assert.False(t, ids[p.ID], "panel id %d twice", p.ID)
		ids[p.ID] = true
		assert.LessOrEqual(t, p.GridPos.X+p.GridPos.W, 24, "panel %d is wider than Grafana's 24 columns", p.ID)
	}
}

package metrics

import (
	"errors"
	"io"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/podorder/podorder/plugin/preflight"
)

func TestMetricsAreServedWithBoundedLabels(t *testing.T) {
	m := New(func() float64 { return 3 }, func() float64 { return 1 })
	m.HoldEnded("released", 1500*time.Millisecond)
	m.Released(200 * time.Microsecond)
	m.Handled("CreateContainer", 30*time.Microsecond)
	m.ProbeAttempted(nil)
	m.ProbeAttempted(errors.New("connection refused"))
	m.StoreWriteFailed()
	m.Reconnected()
	m.ConditionWriteFailed()
	m.PreflightChecked("nri_socket", preflight.Pass)
	m.PreflightChecked("runtime_version", preflight.Fail)
	m.PreflightChecked("containerd_version", preflight.Pass)
	m.PreflightChecked("containerd_version", preflight.Unknown)
	m.ReadinessEvents("ebpf")

	rec := httptest.NewRecorder()
	m.Handler().ServeHTTP(rec, httptest.NewRequest("GET", "/metrics", nil))
	body, err := io.ReadAll(rec.Body)
	require.NoError(t, err)
	for _, want := range []string{
		`podorder_holds 3`,
		`podorder_api_synced 1`,
		`podorder_hold_duration_seconds_count{outcome="released"} 1`,
		`podorder_hold_duration_seconds_count{outcome="timeout"} 0`,
		`podorder_release_latency_seconds_count 1`,
		`podorder_nri_handler_duration_seconds_count{event="CreateContainer"} 1`,
		`podorder_probe_attempts_total{result="passed"} 1`,
		`podorder_probe_attempts_total{result="failed"} 1`,
		`podorder_store_write_errors_total 1`,
		`podorder_runtime_reconnects_total 1`,
		`podorder_condition_write_errors_total 1`,
		`podorder_preflight_ok{check="nri_socket"} 1`,
		`podorder_preflight_ok{check="runtime_version"} 0`,
		`podorder_readiness_events{source="ebpf"} 1`,
		`podorder_readiness_events{source="none"} 0`,
		`go_goroutines `,
		`process_resident_memory_bytes `,
	} {
		assert.Contains(t, string(body), want)
	}
	assert.NotContains(t, string(body), `podorder_preflight_ok{check="containerd_version"}`, "unknown: no series")
}

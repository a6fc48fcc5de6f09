package daemon

import (
	"bytes"
	"context"
	"flag"
	"log/slog"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestTheEndpointsDefaultToLoopbackHealthAndHTTPSMetrics(t *testing.T) {
	var cfg Config
	cfg.RegisterFlags(flag.NewFlagSet("podorder", flag.ContinueOnError))
	assert.Equal(t, "127.0.0.1:8081", cfg.HealthAddr, "unauthenticated, so only the node reaches it")
	assert.Equal(t, ":8443", cfg.MetricsAddr)
	assert.Empty(t, cfg.MetricsCertDir)
	assert.True(t, cfg.MetricsSecure)
}

func TestWithoutTheAPIMetricsAreOffAndTheLogSaysWhy(t *testing.T) {
	var logs bytes.Buffer
	log := slog.New(slog.NewTextHandler(&logs, nil))
	dir := t.TempDir()
	cfg := Config{StoreDir: filepath.Join(dir, "store"), NRISocket: filepath.Join(dir, "nri.sock"), MetricsAddr: "127.0.0.1:0", MetricsSecure: true}
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	require.NoError(t, Run(ctx, cfg, log))
	assert.Contains(t, logs.String(), "metrics are off: the metrics endpoint lets the Kubernetes API server authorize each scraper")
	assert.NotContains(t, logs.String(), "serving metrics")
}

package daemon

import (
	"bytes"
	"context"
	"flag"
	"io"
	"log/slog"
	"net"
	"net/http"
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

func TestWithMetricsSecureFalseMetricsAreServedOverPlainHTTPWithoutTheAPI(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	addr := l.Addr().String()
	l.Close()
	dir := t.TempDir()
	cfg := Config{StoreDir: filepath.Join(dir, "store"), NRISocket: filepath.Join(dir, "nri.sock"), MetricsAddr: addr}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error)
	go func() { done <- Run(ctx, cfg, slog.New(slog.DiscardHandler)) }()
	defer func() { cancel(); require.NoError(t, <-done) }()

	var body []byte
	require.EventuallyWithT(t, func(c *assert.CollectT) {
		res, err := http.Get("http://" + addr + "/metrics")
		require.NoError(c, err)
		defer res.Body.Close()
		body, err = io.ReadAll(res.Body)
		require.NoError(c, err)
	}, 10*time.Second, 20*time.Millisecond)
	assert.Contains(t, string(body), "podorder_holds 0")
}

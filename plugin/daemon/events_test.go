//go:build linux

package daemon

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/podorder/podorder/plugin/probe"
)

// sourceMetric records the podorder_readiness_events source.
type sourceMetric struct {
	mu     sync.Mutex
	source []string
}

func (m *sourceMetric) ReadinessEvents(source string) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.source = append(m.source, source)
}

func (m *sourceMetric) sources() []string {
	m.mu.Lock()
	defer m.mu.Unlock()
	return append([]string(nil), m.source...)
}

// failingSource watches until told to fail.
type failingSource struct{ fail chan error }

func (s failingSource) Watch(ctx context.Context, _ func([]probe.Listen)) error {
	select {
	case <-ctx.Done():
		return nil
	case err := <-s.fail:
		return err
	}
}

func withOpen(t *testing.T, open func() (probe.ListenSource, error)) {
	t.Helper()
	was := openListenEvents
	openListenEvents = open
	t.Cleanup(func() { openListenEvents = was })
}

func TestTheSourceInUseIsLoggedOnceAndMeasuredAndFallsBackWhenItFails(t *testing.T) {
	src := failingSource{fail: make(chan error, 1)}
	withOpen(t, func() (probe.ListenSource, error) { return src, nil })
	var logs syncBuffer
	m := &sourceMetric{}
	e := followListenEvents(t.Context(), "auto", probe.NewRunner(nil), m, slog.New(slog.NewTextHandler(&logs, nil)))
	assert.Equal(t, []string{"ebpf"}, m.sources())
	assert.Equal(t, "readiness events: ebpf", e.verdict().Summary)
	assert.Contains(t, logs.String(), "level=INFO msg=\"readiness events: the kernel's LISTEN events")

	src.fail <- errors.New("ring buffer gone")
	require.EventuallyWithT(t, func(c *assert.CollectT) {
		assert.Contains(c, logs.String(), "level=WARN msg=\"readiness events: the kernel's LISTEN events stopped; probes of closed ports poll")
	}, 5*time.Second, time.Millisecond)
	assert.Equal(t, []string{"ebpf", "none"}, m.sources())
	assert.Equal(t, "readiness events: none", e.verdict().Summary)
	assert.Contains(t, logs.String(), "ring buffer gone")
}

func TestWhenTheKernelRefusesTheSourceProbesPollAndTheLogSaysWhy(t *testing.T) {
	withOpen(t, func() (probe.ListenSource, error) { return nil, errors.New("no BTF") })
	var logs bytes.Buffer
	m := &sourceMetric{}
	e := followListenEvents(t.Context(), "auto", probe.NewRunner(nil), m, slog.New(slog.NewTextHandler(&logs, nil)))
	assert.Equal(t, []string{"none"}, m.sources())
	assert.Equal(t, "readiness events: none", e.verdict().Summary)
	assert.Contains(t, logs.String(), "no BTF")
	assert.Contains(t, e.verdict().Message, "docs/security.md")
}

func TestReadinessEventsNoneOpensNothing(t *testing.T) {
	withOpen(t, func() (probe.ListenSource, error) {
		t.Fatal("opened the source with --readiness-events=none")
		return nil, nil
	})
	m := &sourceMetric{}
	e := followListenEvents(t.Context(), "none", probe.NewRunner(nil), m, slog.New(slog.DiscardHandler))
	assert.Equal(t, []string{"none"}, m.sources())
	assert.Contains(t, e.verdict().Message, "--readiness-events=none")
}

package e2e

import (
	"fmt"
	"math/rand/v2"
	"os"
	"slices"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/podorder/podorder/test/harness"
)

// TestMeasure reports podorder's latencies on the real runtime; `make bench` runs it
// (PODORDER_BENCH=1). It asserts nothing about speed: the machines are noisy, so it reports
// medians and ratios side by side instead.
func TestMeasure(t *testing.T) {
	if os.Getenv("PODORDER_BENCH") != "1" {
		t.Skip("set PODORDER_BENCH=1 (make bench) to measure")
	}
	const n = 50
	env := harness.Start(t, harness.Options{})
	env.ImportWorkloadImages(t)

	createStart := func(name string, labels map[string]string) time.Duration {
		pod := env.RunPod(t, harness.PodSpec{Name: name, Labels: labels, Containers: []harness.ContainerSpec{{Name: "app", Args: args("app")}}})
		c := pod.Container("app")
		require.NoError(t, c.StartErr)
		started(t, c)
		env.StopPod(t, pod)
		return c.CreateTook + c.StartTook
	}
	var without, withPlain, withDeclared []time.Duration
	for i := range n {
		without = append(without, createStart(fmt.Sprintf("noplugin-%d", i), nil))
	}
	po := startPodorder(t, env)
	for i := range n {
		withPlain = append(withPlain, createStart(fmt.Sprintf("plain-%d", i), nil))
		// Declared (a tombstone is written) but not held, so the start itself is comparable.
		withDeclared = append(withDeclared, createStart(fmt.Sprintf("declared-%d", i), map[string]string{"podorder.dev/timeout.app": "1m"}))
	}
	t.Logf("RESULT create+start median of %d: no plugin %s; podorder, pod without keys %s (x%.2f); podorder, pod with keys %s (x%.2f)",
		n, median(without), median(withPlain), ratio(withPlain, without), median(withDeclared), ratio(withDeclared, without))

	var recorded, listened []time.Duration
	for i := range n {
		port := freePort(t)
		delay := time.Duration(rand.IntN(100)) * time.Millisecond
		pod := env.RunPod(t, harness.PodSpec{
			Name:        fmt.Sprintf("hold-%d", i),
			Labels:      map[string]string{"podorder.dev/after.app": "db"},
			Annotations: map[string]string{"podorder.dev/probe.db": fmt.Sprintf("tcp:%d", port)},
			Containers: []harness.ContainerSpec{
				{Name: "app", Args: args("app")},
				{Name: "db", Args: args("db", "--listen-after", delay.String(), "--port", fmt.Sprint(port))},
			},
		})
		appStart := started(t, pod.Container("app"))
		dbListen := harness.WaitWorkloadEvent(t, pod.Container("db"), "LISTEN", 10*time.Second).At
		ts, err := po.Store.Read(pod.Spec.UID, "db")
		require.NoError(t, err)
		require.NotNil(t, ts.ReadyAt)
		recorded = append(recorded, appStart.Sub(*ts.ReadyAt))
		listened = append(listened, appStart.Sub(dbListen))
		env.StopPod(t, pod)
	}
	t.Logf("RESULT release latency over %d holds: ready recorded → first line median %s p99 %s; port open → first line median %s p99 %s (100 ms probe period)",
		n, median(recorded), p99(recorded), median(listened), p99(listened))
}

func median(d []time.Duration) time.Duration { return quantile(d, 0.5) }
func p99(d []time.Duration) time.Duration    { return quantile(d, 0.99) }

func quantile(d []time.Duration, q float64) time.Duration {
	s := slices.Clone(d)
	slices.Sort(s)
	return s[int(q*float64(len(s)-1)+0.5)].Round(100 * time.Microsecond)
}

func ratio(a, b []time.Duration) float64 { return float64(median(a)) / float64(median(b)) }

package e2e

import (
	"fmt"
	"math/rand/v2"
	"os"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/podorder/podorder/test/harness"
)

// TestMeasure reports podorder's costs and latencies on the real runtime (containerd with NRI and
// runc, driven through CRI); `make bench` runs it (PODORDER_BENCH=1). It asserts nothing about
// speed, since machines are noisy: it prints medians and ratios side by side in RESULT tables,
// with compared variants interleaved so that drift on the machine hits both. It does assert what
// must hold whatever the speed: a held container starts only after what it waits for.
//
// PODORDER_BENCH_SAMPLES (default 100) sets the samples per create+start variant, for a quick run.
// The release latency is TestMeasureReleaseSweep's and TestMeasureReleaseSplit's.
func TestMeasure(t *testing.T) {
	if os.Getenv("PODORDER_BENCH") != "1" {
		t.Skip("set PODORDER_BENCH=1 (make bench) to measure")
	}
	samples := envInt("PODORDER_BENCH_SAMPLES", 100)
	env := harness.Start(t, harness.Options{})
	env.ImportWorkloadImages(t)
	po := startPodorder(t, env)
	m := &measurement{env: env, po: po}

	t.Run("a pod without podorder keys costs nothing", func(t *testing.T) { m.withoutKeys(t, samples) })
	t.Run("a held container's create and start cost nothing", func(t *testing.T) { m.heldCreateStart(t, samples) })
	t.Run("a whole pod lifecycle costs nothing, beside a no-op NRI plugin", func(t *testing.T) {
		m.fullCycles(t, samples, envInt("PODORDER_BENCH_BUSY_PODS", 20))
	})
}

// measurement is the bed TestMeasure's parts share: one containerd and one podorder.
type measurement struct {
	env  *harness.Env
	po   *Podorder
	mu   sync.Mutex
	pods int   // names pods uniquely
	port ports // hands out the dependencies' ports (pods share the host's network)
}

func (m *measurement) name(prefix string) string {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.pods++
	return fmt.Sprintf("%s-%d", prefix, m.pods)
}

func (m *measurement) takePort(t *testing.T) int {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.port.next == 0 {
		m.port.next = 20000
	}
	return m.port.take(t)
}

// createStart runs a one-container pod and returns how long CRI CreateContainer plus
// StartContainer took; it waits for the container's first line, so only a running container counts.
func (m *measurement) createStart(t *testing.T, prefix string) (time.Duration, *harness.Pod) {
	t.Helper()
	pod := m.env.RunPod(t, harness.PodSpec{Name: m.name(prefix), Containers: []harness.ContainerSpec{{Name: "app", Args: args("app")}}})
	c := pod.Container("app")
	started(t, c)
	m.env.StopPod(t, pod)
	return c.CreateTook + c.StartTook, pod
}

// withoutKeys compares CRI create+start with no NRI plugin connected and with podorder connected,
// for a pod without podorder keys: what every other pod of a node pays for podorder being there.
//
// The variable is whether containerd has the plugin, so podorder must be stopped and started between
// the variants; restarting it per sample would measure its reconnection. Two containerds (one with,
// one without) would compare two runtimes with their own state and caches. So one containerd runs
// both, in blocks of 10 in the order A B B A (no plugin, podorder, podorder, no plugin, …), which
// cancels a linear drift, and the first create after each switch is a warm-up that counts for
// neither: it may pay for containerd noticing the plugin come or go.
func (m *measurement) withoutKeys(t *testing.T, n int) {
	const block = 10
	var without, with []time.Duration
	running := true
	for b := 0; len(without) < n || len(with) < n; b++ {
		plugin := b%4 == 1 || b%4 == 2
		switch {
		case plugin && !running:
			m.po.start(t)
		case !plugin && running:
			m.po.stop()
		}
		running = plugin
		m.createStart(t, "warm-up")
		for range block {
			d, pod := m.createStart(t, "without-keys")
			if plugin {
				with = append(with, d)
				_, err := os.Stat(m.po.Store.PodDir(pod.Spec.UID))
				assert.True(t, os.IsNotExist(err), "podorder made a store directory for pod %s, which has no podorder keys", pod.Spec.Name)
			} else {
				without = append(without, d)
			}
		}
	}
	if !running {
		m.po.start(t)
	}
	logTable(t, "CRI create+start of a container, pod without podorder keys (blocks of 10, A B B A)",
		row{variant: "no NRI plugin", d: without},
		row{variant: "podorder running", d: with})
}

// heldCreateStart compares CRI create+start of a container podorder holds with the same container in
// a pod without keys, pairs interleaved in a random order. With runc ≥ 1.2.8 StartContainer returns
// before the startContainer hook runs, so the hold itself is not in the time; the test proves it:
// the held container's dependency is created only after its StartContainer returned, so a
// StartContainer that waited for the release would never return before its timeout.
func (m *measurement) heldCreateStart(t *testing.T, n int) {
	var held, plain []time.Duration
	for range n {
		variants := []bool{true, false}
		rand.Shuffle(2, func(i, j int) { variants[i], variants[j] = variants[j], variants[i] })
		for _, hold := range variants {
			spec := harness.PodSpec{Name: m.name("plain")}
			if hold {
				spec = harness.PodSpec{Name: m.name("held"), Labels: map[string]string{
					"podorder.dev/after.app":   "db",
					"podorder.dev/timeout.app": "30s",
				}}
			}
			pod := m.env.RunPod(t, spec)
			app := m.env.CreateStartContainer(t, pod, harness.ContainerSpec{Name: "app", Args: args("app")})
			require.NoError(t, app.CreateErr)
			require.NoError(t, app.StartErr)
			dbCreated := time.Now()
			started(t, m.env.CreateStartContainer(t, pod, harness.ContainerSpec{Name: "db", Args: args("db")}))
			appStart := started(t, app)
			if hold {
				held = append(held, app.CreateTook+app.StartTook)
				require.True(t, appStart.After(dbCreated), "held app of pod %s started at %s, before its dependency db was created at %s",
					spec.Name, appStart.Format(time.StampMicro), dbCreated.Format(time.StampMicro))
			} else {
				plain = append(plain, app.CreateTook+app.StartTook)
			}
			m.env.StopPod(t, pod)
		}
	}
	logTable(t, "CRI create+start of a container, podorder running (pairs interleaved; the hold itself excluded)",
		row{variant: "pod without podorder keys", d: plain},
		row{variant: "held (after.app: db)", d: held})
}

// releaseSample is one dependency's port opening and the dependent's first line.
type releaseSample struct {
	listen, start time.Time
	ready         time.Time // podorder's ready record of the dependency; zero for the poller
}

// row is one variant of a RESULT table.
type row struct {
	variant string
	d       []time.Duration
	noRatio bool // a part of another row, not a variant to compare
}

// logTable prints rows as RESULT lines: samples, median, the 99th percentile when there are at least
// 100 samples (else the maximum, named so), and each row's median over the first row's.
func logTable(t *testing.T, title string, rows ...row) {
	t.Helper()
	var b strings.Builder
	fmt.Fprintf(&b, "RESULT %s\n", title)
	fmt.Fprintf(&b, "RESULT   %-48s %7s %10s %16s %7s\n", "variant", "samples", "median", "p99 (or max)", "ratio")
	for i, r := range rows {
		tail := "p99 " + fmtDuration(quantile(r.d, 0.99))
		if len(r.d) < 100 {
			tail = "max " + fmtDuration(slices.Max(r.d))
		}
		ratioCol := "-"
		switch {
		case i == 0:
			ratioCol = "1"
		case !r.noRatio:
			ratioCol = fmt.Sprintf("x%.2f", float64(median(r.d))/float64(median(rows[0].d)))
		}
		fmt.Fprintf(&b, "RESULT   %-48s %7d %10s %16s %7s\n", r.variant, len(r.d), fmtDuration(median(r.d)), tail, ratioCol)
	}
	t.Log("\n" + strings.TrimRight(b.String(), "\n"))
}

// fmtDuration keeps three significant digits or so: 41.2ms, 1.23ms, 312µs.
func fmtDuration(d time.Duration) string {
	switch {
	case d >= 10*time.Millisecond || d <= -10*time.Millisecond:
		return d.Round(100 * time.Microsecond).String()
	case d >= time.Millisecond || d <= -time.Millisecond:
		return d.Round(10 * time.Microsecond).String()
	default:
		return d.Round(time.Microsecond).String()
	}
}

func median(d []time.Duration) time.Duration { return quantile(d, 0.5) }

// quantile is the nearest-rank quantile of d.
func quantile(d []time.Duration, q float64) time.Duration {
	s := slices.Clone(d)
	slices.Sort(s)
	return s[int(q*float64(len(s)-1)+0.5)]
}

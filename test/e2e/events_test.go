package e2e

import (
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/podorder/podorder/test/harness"
)

// These tests run the real daemon beside containerd and runc, with the kernel's LISTEN events
// (an eBPF program, so as root on a kernel that allows it).

// readinessSource is the source the daemon said it uses, from its log.
func readinessSource(t *testing.T, po *Podorder) string {
	t.Helper()
	recs := po.waitLog(t, "readiness events: ", 1, 10*time.Second)
	return fmt.Sprint(recs[len(recs)-1]["source"])
}

// scrape reads the daemon's metrics, served over plain HTTP on loopback.
func scrape(t *testing.T, addr string) string {
	t.Helper()
	res, err := http.Get("http://" + addr + "/metrics")
	require.NoError(t, err)
	defer res.Body.Close()
	body, err := io.ReadAll(res.Body)
	require.NoError(t, err)
	return string(body)
}

// eventPorts hands out ports from a random base in 28000-31999: pods here share the host's network
// with those of other tests, whose servers count up from 20000.
func eventPorts() *ports { return &ports{next: 28000 + rand.N(4000)} }

// heldUntilListen runs a pod whose app waits, through podorder's tcp probe, for db, which listens
// listenAfter after it starts; it returns db's LISTEN, podorder's ready record and app's START.
func heldUntilListen(t *testing.T, env *harness.Env, po *Podorder, name string, port int, listenAfter time.Duration) (releaseSample, error) {
	spec := harness.PodSpec{Name: name,
		Labels:      map[string]string{"podorder.dev/after.app": "db", "podorder.dev/timeout.app": "1m"},
		Annotations: map[string]string{"podorder.dev/probe.db": fmt.Sprintf("tcp:%d", port)},
		Containers: []harness.ContainerSpec{{Name: "app", Args: args("app")},
			{Name: "db", Args: args("db", "--listen-after", listenAfter.String(), "--port", strconv.Itoa(port))}}}
	pod, err := env.TryRunPod(t, spec)
	if err != nil {
		return releaseSample{}, err
	}
	defer func() { _ = env.TryStopPod(pod) }()
	var s releaseSample
	for _, w := range []struct {
		c, kind string
		at      *time.Time
	}{{"db", "LISTEN", &s.listen}, {"app", "START", &s.start}} {
		ev, err := harness.AwaitWorkloadEvent(pod.Container(w.c), w.kind, listenAfter+30*time.Second)
		if err != nil {
			return s, fmt.Errorf("pod %s: %w", name, err)
		}
		*w.at = ev.At
	}
	ts, err := po.Store.Read(pod.Spec.UID, "db")
	if err != nil || ts == nil || ts.ReadyAt == nil {
		return s, fmt.Errorf("pod %s: no ready record of db (err %v)", name, err)
	}
	s.ready = *ts.ReadyAt
	return s, nil
}

// heldInParallel runs n heldUntilListen pods at once and returns their samples.
func heldInParallel(t *testing.T, env *harness.Env, po *Podorder, prefix string, ports *ports, n int, listenAfter func(i int) time.Duration) []releaseSample {
	t.Helper()
	samples := make([]releaseSample, n)
	errs := make([]error, n)
	var wg sync.WaitGroup
	for i := range n {
		port := ports.take(t)
		wg.Add(1)
		go func() {
			defer wg.Done()
			samples[i], errs[i] = heldUntilListen(t, env, po, fmt.Sprintf("%s-%d", prefix, i), port, listenAfter(i))
		}()
	}
	wg.Wait()
	for _, err := range errs {
		require.NoError(t, err)
	}
	return samples
}

// The event path end to end: db listens 6 s after it starts, when the probe of its closed port
// waits on the safety net (1 s, backing off to 10 s). A release within a fraction of a second,
// three times, is the kernel's event at work; the safety net would take seconds on average.
func TestAListenEventReleasesTheDependentWithinAFractionOfTheSafetyNet(t *testing.T) {
	if _, err := os.Stat("/sys/kernel/btf/vmlinux"); err != nil {
		// Where the kernel has BTF (this kind of machine: FACTS.md), the source must be eBPF.
		t.Skipf("the kernel offers no BTF (%v): podorder polls here, which TestWithReadinessEventsOffProbesPollAndStillRelease covers", err)
	}
	env := harness.Start(t, harness.Options{})
	env.ImportWorkloadImages(t)
	metricsAddr := fmt.Sprintf("127.0.0.1:%d", freePort(t))
	po := startPodorder(t, env, "--metrics-addr="+metricsAddr, "--metrics-secure=false")
	require.Equal(t, "ebpf", readinessSource(t, po), "this test needs the eBPF source: root, BTF and a kernel of 5.8 or later")
	assert.Contains(t, scrape(t, metricsAddr), `podorder_readiness_events{source="ebpf"} 1`)
	status, err := exec.Command(filepath.Join(buildPodorder(t), "podorder"), "status", "--store-dir="+po.Store.Root).CombinedOutput()
	require.NoError(t, err, "%s", status)
	assert.Regexp(t, `^node: .+\nreadiness events: ebpf \(the kernel's LISTEN events`, string(status), "podorder status names the source after the node's line")

	ps := eventPorts()
	samples := heldInParallel(t, env, po, "late", ps, 3, func(i int) time.Duration { return 6*time.Second + time.Duration(i)*150*time.Millisecond })
	for i, s := range samples {
		pass, release := s.ready.Sub(s.listen), s.start.Sub(s.listen)
		t.Logf("pod %d: LISTEN → probe passed %s, → app's START %s", i, pass, release)
		assert.Positive(t, pass, "pod %d: the probe passed before db listened", i)
		assert.Less(t, pass, 200*time.Millisecond, "pod %d: the probe passed %s after LISTEN; the safety net alone takes seconds", i, pass)
		assert.Less(t, release, 500*time.Millisecond, "pod %d: app started %s after LISTEN", i, release)
	}
}

// Without events (the fallback, as on a kernel without BTF), probes poll and still release.
func TestWithReadinessEventsOffProbesPollAndStillRelease(t *testing.T) {
	env := harness.Start(t, harness.Options{})
	env.ImportWorkloadImages(t)
	po := startPodorder(t, env, "--readiness-events=none")
	require.Equal(t, "none", readinessSource(t, po))

	samples := heldInParallel(t, env, po, "polled", eventPorts(), 1, func(int) time.Duration { return time.Second })
	assert.Less(t, samples[0].ready.Sub(samples[0].listen), 2*time.Second)
}

// TestMeasureReadinessEvents measures, with the daemon restarted between variants (A B B A
// blocks), the release latency of dependencies that listen 2.5-3.5 s after they start, and the
// daemon's CPU while N probes wait on closed ports. PODORDER_BENCH=1 runs it.
func TestMeasureReadinessEvents(t *testing.T) {
	if os.Getenv("PODORDER_BENCH") != "1" {
		t.Skip("set PODORDER_BENCH=1 to measure")
	}
	blocks := envInt("PODORDER_BENCH_BLOCKS", 2)     // A B B A per block
	perBlock := envInt("PODORDER_BENCH_PODS", 10)    // pods per variant per block
	waiting := envInt("PODORDER_BENCH_WAITING", 500) // the node's cap is 512
	window := 10 * time.Second

	env := harness.Start(t, harness.Options{})
	env.ImportWorkloadImages(t)
	metricsAddr := fmt.Sprintf("127.0.0.1:%d", freePort(t))
	po := startPodorder(t, env, "--log-level=info", "--metrics-addr="+metricsAddr, "--metrics-secure=false")
	base := slices.Clone(po.args)
	use := func(variant string) {
		po.Kill(t)
		po.args = append(slices.Clone(base), "--readiness-events="+variant)
		po.Restart(t)
		require.Equal(t, map[string]string{"auto": "ebpf", "none": "none"}[variant], readinessSource(t, po))
	}
	order := []string{"auto", "none", "none", "auto"}
	ps := eventPorts()

	latency := map[string][]releaseSample{}
	for b := range blocks {
		for i, variant := range order {
			use(variant)
			samples := heldInParallel(t, env, po, fmt.Sprintf("lat-%d-%d", b, i), ps, perBlock, func(int) time.Duration {
				return 2500*time.Millisecond + rand.N(time.Second)
			})
			latency[variant] = append(latency[variant], samples...)
		}
	}
	durations := func(ss []releaseSample, to func(releaseSample) time.Time) []time.Duration {
		var d []time.Duration
		for _, s := range ss {
			d = append(d, to(s).Sub(s.listen))
		}
		return d
	}
	start := func(s releaseSample) time.Time { return s.start }
	ready := func(s releaseSample) time.Time { return s.ready }
	logTable(t, "dependency listening 2.5-3.5 s after its start: LISTEN → dependent's START",
		row{variant: "polling (--readiness-events=none)", d: durations(latency["none"], start)},
		row{variant: "kernel LISTEN events (ebpf)", d: durations(latency["auto"], start)},
		row{variant: "  polling: LISTEN → probe passed", d: durations(latency["none"], ready), noRatio: true},
		row{variant: "  events: LISTEN → probe passed", d: durations(latency["auto"], ready), noRatio: true})

	// N probes that wait on closed ports for the whole window: pods of an app waiting for up to 15
	// dbs that never listen (a pod may run 16 probes), spread over namespaces (128 probes each).
	const perPod, podsPerNamespace = 15, 8
	var pods []*harness.Pod
	for i := 0; i*perPod < waiting; i++ {
		n := min(perPod, waiting-i*perPod)
		spec := harness.PodSpec{Name: fmt.Sprintf("wait-%d", i), Namespace: fmt.Sprintf("wait-%d", i/podsPerNamespace),
			Labels:      map[string]string{"podorder.dev/timeout.app": "30m"},
			Annotations: map[string]string{},
			Containers:  []harness.ContainerSpec{{Name: "app", Args: args("app")}}}
		var after []string
		for k := range n {
			db, port := fmt.Sprintf("db%d", k), ps.take(t)
			after = append(after, db)
			spec.Annotations["podorder.dev/probe."+db] = fmt.Sprintf("tcp:%d", port)
			spec.Containers = append(spec.Containers, harness.ContainerSpec{Name: db, Args: args(db, "--listen-after", "1h", "--port", strconv.Itoa(port))})
		}
		spec.Labels["podorder.dev/after.app"] = strings.Join(after, ".")
		pods = append(pods, env.RunPod(t, spec))
	}
	defer func() {
		for _, p := range pods {
			_ = env.TryStopPod(p)
		}
	}()
	require.Eventually(t, func() bool {
		return strings.Contains(scrape(t, metricsAddr), fmt.Sprintf("podorder_holds %d", len(pods)))
	},
		2*time.Minute, 100*time.Millisecond, "every app held")
	cpu := map[string][]time.Duration{}
	for range blocks {
		for _, variant := range order {
			use(variant)
			time.Sleep(3 * time.Second) // past the probes' fast first 2 s
			before := cpuTime(t, po.pid())
			time.Sleep(window)
			cpu[variant] = append(cpu[variant], cpuTime(t, po.pid())-before)
		}
	}
	for _, variant := range []string{"none", "auto"} {
		t.Logf("RESULT daemon CPU over %s with %d probes waiting on closed ports, %s: %v (median %s, %.2f%% of a core)", window, waiting, variant,
			cpu[variant], median(cpu[variant]), 100*median(cpu[variant]).Seconds()/window.Seconds())
	}
}

// cpuTime is a process's user plus system CPU time, from /proc/<pid>/stat (in clock ticks of 10 ms).
func cpuTime(t *testing.T, pid int) time.Duration {
	t.Helper()
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	require.NoError(t, err)
	fields := strings.Fields(string(b[strings.LastIndexByte(string(b), ')')+2:]))
	utime, err := strconv.Atoi(fields[11])
	require.NoError(t, err)
	stime, err := strconv.Atoi(fields[12])
	require.NoError(t, err)
	return time.Duration(utime+stime) * 10 * time.Millisecond
}

package e2e

import (
	"bufio"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/podorder/podorder/test/checker"
	"github.com/podorder/podorder/test/harness"
)

// TestScale runs a node's worth of ordered pods through the real runtime with podorder and reports
// what the daemon costs at that size: its memory once everything is released, its CPU while idle,
// the time its Synchronize takes over 1,000 containers after a restart, and its CreateContainer
// handler's time under that load (from its own /metrics histogram). `make scale` runs it
// (PODORDER_SCALE=1), and so does `make bench`. Like TestMeasure it reports, never asserts, speed;
// it asserts that every pod started in its declared order and that the restarted daemon adopted
// every pod.
//
// PODORDER_SCALE_PODS (default 110, kubelet's default maxPods) sets the pods of the first phase,
// PODORDER_SCALE_SYNC_PODS (default 200) the pods present at the restart.
func TestScale(t *testing.T) {
	if os.Getenv("PODORDER_SCALE") != "1" && os.Getenv("PODORDER_BENCH") != "1" {
		t.Skip("set PODORDER_SCALE=1 (make scale) to run a node's worth of pods")
	}
	nodePods := envInt("PODORDER_SCALE_PODS", 110)
	syncPods := max(envInt("PODORDER_SCALE_SYNC_PODS", 200), nodePods)
	env := harness.Start(t, harness.Options{})
	env.ImportWorkloadImages(t)
	metricsAddr := fmt.Sprintf("127.0.0.1:%d", freePort(t))
	// The harness has no API server to authorize a scraper: plain HTTP, on loopback.
	po := startPodorder(t, env, "--metrics-addr="+metricsAddr, "--metrics-secure=false", "--log-level=info")
	s := &scaleRun{env: env, ports: ports{next: 21000}}
	// Registered after containerd and podorder, so it runs before they stop: removing 200 pods one
	// by one at containerd's cleanup would take minutes.
	t.Cleanup(func() { s.removeAll(t) })

	began := time.Now()
	s.run(t, nodePods)
	t.Logf("%d pods of %d containers created and released in order in %s", nodePods, len(scalePodContainers), time.Since(began).Round(time.Millisecond))
	rss, hwm := harness.ProcMemory(t, po.pid())
	// The window is the measurement, not a wait for an event: nothing is held, so nothing should run.
	idleTicks, idleCPU, idleOnCPU := procCPU(t, po.pid(), 5*time.Second)
	creates := scrapeHandlerHistogram(t, metricsAddr, "CreateContainer")

	s.run(t, syncPods-nodePods)
	containers := syncPods * len(scalePodContainers)
	po.stop()
	restarted := time.Now()
	po.start(t)
	restartToLog := time.Since(restarted)
	syncs := scrapeHandlerHistogram(t, metricsAddr, "Synchronize")
	require.EqualValues(t, 1, syncs.count, "one Synchronize since the restart")
	logged := po.Logs(t, "synchronized with the runtime")
	require.EqualValues(t, syncPods, logged[len(logged)-1]["pods"], "the restarted daemon adopts every pod")
	rssAfterSync, _ := harness.ProcMemory(t, po.pid())

	mib := func(kib int) string { return fmt.Sprintf("%.1f MiB", float64(kib)/1024) }
	t.Log("\n" + strings.Join([]string{
		fmt.Sprintf("RESULT node scale: podorder with %d pods × %d containers (after.* chains, a tcp probe per pod), all released", nodePods, len(scalePodContainers)),
		fmt.Sprintf("RESULT   daemon memory: VmRSS %s, VmHWM %s (peak, through creation)", mib(rss), mib(hwm)),
		fmt.Sprintf("RESULT   daemon idle CPU over 5 s: %.2f%% of one CPU (%d ticks utime+stime at 100 Hz; resolution 0.2%%); on-CPU time of its threads %s (schedstat)",
			idleCPU, idleTicks, fmtDuration(idleOnCPU)),
		fmt.Sprintf("RESULT   CreateContainer handler, %d calls while the pods were created (8 at a time): mean %s, p99 %s (from the daemon's histogram)",
			creates.count, fmtDuration(creates.mean()), creates.quantileBound(0.99)),
		fmt.Sprintf("RESULT   CreateContainer handler, share of calls at most: %s", creates.shares()),
		fmt.Sprintf("RESULT   Synchronize of %d pods / %d containers after a daemon restart: handler %s (histogram sum, 1 call); restart → \"synchronized\" log %s (upper bound: exec, NRI registration, 20 ms log polling)",
			syncPods, containers, fmtDuration(syncs.sum), fmtDuration(restartToLog)),
		fmt.Sprintf("RESULT   daemon memory after that Synchronize: VmRSS %s", mib(rssAfterSync)),
	}, "\n"))
}

// scalePodContainers is each scale pod, in kubelet's creation order (dependents first, so that they
// are held): web waits for api; api for db's probe, migrate's success and cache's start; migrate
// for db's probe.
var scalePodContainers = []string{"web", "api", "migrate", "cache", "db"}

// scaleRun creates the scale pods and removes them at the end.
type scaleRun struct {
	env   *harness.Env
	ports ports
	mu    sync.Mutex
	pods  []*harness.Pod
}

// run creates n more pods, at most 8 at a time as kubelet's pod workers would, each pod's
// containers one after the other, and waits until each pod's web has started; it asserts each pod's
// order from the workloads' own lines.
func (s *scaleRun) run(t *testing.T, n int) {
	const workers = 8
	specs := make(chan harness.PodSpec, n)
	for range n {
		port := s.ports.take(t)
		name := fmt.Sprintf("scale-%d", port)
		specs <- harness.PodSpec{
			Name: name,
			Labels: map[string]string{
				"podorder.dev/after.web":     "api",
				"podorder.dev/after.api":     "db.migrate_completed.cache_started",
				"podorder.dev/after.migrate": "db",
			},
			Annotations: map[string]string{"podorder.dev/probe.db": fmt.Sprintf("tcp:%d", port)},
			Containers: []harness.ContainerSpec{
				{Name: "web", Args: args("web")},
				{Name: "api", Args: args("api")},
				{Name: "migrate", Args: args("migrate", "--exit-after", "100ms")},
				{Name: "cache", Args: args("cache")},
				{Name: "db", Args: args("db", "--listen-after", "200ms", "--port", strconv.Itoa(port))},
			},
		}
	}
	close(specs)
	errs := make(chan error, n)
	var wg sync.WaitGroup
	for range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for spec := range specs {
				pod, err := s.env.TryRunPod(t, spec)
				if err != nil {
					errs <- err
					continue
				}
				s.mu.Lock()
				s.pods = append(s.pods, pod)
				s.mu.Unlock()
				wg.Add(1)
				go func() {
					defer wg.Done()
					errs <- checkScaleOrder(pod)
				}()
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		require.NoError(t, err)
	}
}

// checkScaleOrder waits for a scale pod's lines and checks its declared order: each line a
// workload stamps before the event it marks (LISTEN before listen(2), EXIT before exit) must come
// before the first line of what waits for it.
func checkScaleOrder(pod *harness.Pod) error {
	at := map[string]time.Time{}
	for _, w := range [][2]string{{"db", "LISTEN"}, {"cache", "START"}, {"migrate", "START"}, {"migrate", "EXIT"}, {"api", "START"}, {"web", "START"}} {
		ev, err := harness.AwaitWorkloadEvent(pod.Container(w[0]), w[1], 2*time.Minute)
		if err != nil {
			return fmt.Errorf("pod %s: %w", pod.Spec.Name, err)
		}
		at[w[0]+" "+w[1]] = ev.At
	}
	for _, o := range []struct {
		before, after string
		race          time.Duration
	}{
		{"db LISTEN", "migrate START", 0}, {"db LISTEN", "api START", 0}, {"migrate EXIT", "api START", 0},
		{"cache START", "api START", 0}, {"db LISTEN", "web START", 0},
		// web waits for api ready, which without a probe is api released: both are released in one
		// step and their hooks woken together, so api's first line may trail web's a little.
		{"api START", "web START", checker.DefaultStartRace},
	} {
		if !at[o.after].After(at[o.before].Add(-o.race)) {
			return fmt.Errorf("pod %s: %s at %s is not after %s at %s", pod.Spec.Name, o.after, at[o.after].Format(time.StampMicro), o.before, at[o.before].Format(time.StampMicro))
		}
	}
	return nil
}

// removeAll stops and removes every pod of the run, 8 at a time.
func (s *scaleRun) removeAll(t *testing.T) {
	pods := make(chan *harness.Pod, len(s.pods))
	for _, p := range s.pods {
		pods <- p
	}
	close(pods)
	var wg sync.WaitGroup
	for range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for p := range pods {
				if err := s.env.TryStopPod(p); err != nil {
					t.Logf("cleanup: %v", err)
				}
			}
		}()
	}
	wg.Wait()
}

// procCPU returns the clock ticks (utime+stime) a process used over window, that as a percentage
// of one CPU, and the on-CPU time its threads' schedstat counted (nanoseconds; a thread that exits
// in the window takes its share along). USER_HZ is 100 on every Linux architecture Go supports.
func procCPU(t *testing.T, pid int, window time.Duration) (ticks int, percent float64, onCPU time.Duration) {
	t.Helper()
	read := func() int {
		data, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
		require.NoError(t, err)
		// Fields after the command, which is in parentheses and may hold spaces: state is field 3,
		// utime and stime are fields 14 and 15.
		f := strings.Fields(string(data[strings.LastIndexByte(string(data), ')')+1:]))
		utime, err := strconv.Atoi(f[11])
		require.NoError(t, err)
		stime, err := strconv.Atoi(f[12])
		require.NoError(t, err)
		return utime + stime
	}
	schedstat := func() time.Duration {
		var sum time.Duration
		stats, _ := filepath.Glob(fmt.Sprintf("/proc/%d/task/*/schedstat", pid))
		for _, p := range stats {
			var ns int64
			if data, err := os.ReadFile(p); err == nil {
				if _, err := fmt.Sscan(string(data), &ns); err == nil {
					sum += time.Duration(ns)
				}
			}
		}
		return sum
	}
	before, beforeSched, began := read(), schedstat(), time.Now()
	time.Sleep(window)
	ticks = read() - before
	return ticks, float64(ticks) / 100 / time.Since(began).Seconds() * 100, schedstat() - beforeSched
}

// handlerHistogram is podorder_nri_handler_duration_seconds for one NRI event.
type handlerHistogram struct {
	buckets []bucket // by upper bound, cumulative counts
	sum     time.Duration
	count   int
}

type bucket struct {
	le    float64 // seconds; +Inf last
	count int
}

func (h handlerHistogram) mean() time.Duration {
	if h.count == 0 {
		return 0
	}
	return h.sum / time.Duration(h.count)
}

// quantileBound names the bucket the q-quantile falls in: "≤ 250µs (bucket 100µs-250µs)". A
// histogram cannot say more.
func (h handlerHistogram) quantileBound(q float64) string {
	rank := q * float64(h.count)
	lower := 0.0
	for _, b := range h.buckets {
		if float64(b.count) >= rank {
			sec := func(s float64) string { return fmtDuration(time.Duration(s * float64(time.Second))) }
			if b.le > 1e9 {
				return fmt.Sprintf("> %s (above the largest bucket)", sec(lower))
			}
			return fmt.Sprintf("≤ %s (bucket %s-%s)", sec(b.le), sec(lower), sec(b.le))
		}
		lower = b.le
	}
	return "unknown (empty histogram)"
}

// shares is the cumulative distribution over the buckets that hold any call: "≤100µs 12%, ≤250µs 80%, …".
func (h handlerHistogram) shares() string {
	var out []string
	prev := 0
	for _, b := range h.buckets {
		if b.count == prev {
			continue // no call in this bucket
		}
		bound := "≤" + fmtDuration(time.Duration(b.le*float64(time.Second)))
		if b.le > 1e9 {
			bound = "all"
		}
		out = append(out, fmt.Sprintf("%s %.1f%%", bound, 100*float64(b.count)/float64(h.count)))
		if prev = b.count; prev == h.count {
			break
		}
	}
	return strings.Join(out, ", ")
}

var metricLine = regexp.MustCompile(`^podorder_nri_handler_duration_seconds_(bucket|sum|count)\{event="([^"]+)"(?:,le="([^"]+)")?\} (\S+)$`)

// scrapeHandlerHistogram reads the daemon's /metrics for one event's handler durations.
func scrapeHandlerHistogram(t *testing.T, addr, event string) handlerHistogram {
	t.Helper()
	res, err := http.Get("http://" + addr + "/metrics")
	require.NoError(t, err)
	defer res.Body.Close()
	require.Equal(t, http.StatusOK, res.StatusCode)
	var h handlerHistogram
	sc := bufio.NewScanner(res.Body)
	for sc.Scan() {
		m := metricLine.FindStringSubmatch(sc.Text())
		if m == nil || m[2] != event {
			continue
		}
		v, err := strconv.ParseFloat(m[4], 64)
		require.NoError(t, err, sc.Text())
		switch m[1] {
		case "bucket":
			le, err := strconv.ParseFloat(m[3], 64)
			require.NoError(t, err, sc.Text())
			h.buckets = append(h.buckets, bucket{le: le, count: int(v)})
		case "sum":
			h.sum = time.Duration(v * float64(time.Second))
		case "count":
			h.count = int(v)
		}
	}
	require.NoError(t, sc.Err())
	slices.SortFunc(h.buckets, func(a, b bucket) int {
		switch {
		case a.le < b.le:
			return -1
		case a.le > b.le:
			return 1
		}
		return 0
	})
	require.NotZero(t, h.count, "no %s observations in podorder's /metrics", event)
	return h
}

package e2e

import (
	"fmt"
	"math/rand/v2"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/podorder/podorder/test/harness"
	"github.com/podorder/podorder/test/stats"
)

// TestMeasureReleaseSweep measures the release latency — the dependency's port opening (its own
// LISTEN line, stamped before listen(2)) → the dependent's first line — in pods with network
// namespaces of their own, for dependencies that become ready 0.2 s, 2 s, 5 s and 15 s after they
// start: past every fast window a poller or podorder's own probing might have. Beside podorder,
// the entrypoint it replaces polls the port every 10 ms and every 100 ms, each at a random phase.
//
// Each round runs the three variants at once with one listen delay, started in a random order, so
// that the machine's load at that moment hits all three; a round's ratios are paired, and each
// table gives the median of the per-round ratios with a 95% bootstrap interval, not a ratio of two
// unpaired medians. PODORDER_BENCH=1 (make bench) runs it; PODORDER_BENCH_SWEEP_ROUNDS (default
// 100) and PODORDER_BENCH_SWEEP_PARALLEL (rounds at once, 400 ms apart, default 4) size it;
// PODORDER_BENCH_SWEEP_READY lists other ready times.
func TestMeasureReleaseSweep(t *testing.T) {
	if os.Getenv("PODORDER_BENCH") != "1" {
		t.Skip("set PODORDER_BENCH=1 (make bench) to measure")
	}
	rounds := envInt("PODORDER_BENCH_SWEEP_ROUNDS", 100)
	parallel := envInt("PODORDER_BENCH_SWEEP_PARALLEL", 4)
	const stagger = 400 * time.Millisecond
	env := harness.Start(t, harness.Options{PodNetwork: true})
	env.ImportWorkloadImages(t)
	po := startPodorder(t, env, "--log-level=info")
	t.Logf("readiness events: %s", readinessSource(t, po))

	variants := []sweepVariant{
		{name: "podorder (tcp probe, kernel LISTEN events)", held: true},
		{name: "entrypoint polling every 10 ms, random phase", every: 10 * time.Millisecond},
		{name: "entrypoint polling every 100 ms, random phase", every: 100 * time.Millisecond},
	}
	var pods int
	var mu sync.Mutex
	name := func(prefix string) string {
		mu.Lock()
		defer mu.Unlock()
		pods++
		return fmt.Sprintf("%s-%d", prefix, pods)
	}
	for _, ready := range sweepReadyTimes(t) {
		lat := make([][]float64, len(variants)) // variant → round → seconds
		var parts []releaseParts                // podorder's rounds, split at its records
		for done := 0; done < rounds; {
			batch := min(parallel, rounds-done)
			results := make([][]float64, batch)
			split := make([]releaseParts, batch)
			errs := make(chan error, batch*len(variants))
			var wg sync.WaitGroup
			for r := range batch {
				results[r] = make([]float64, len(variants))
				delay := ready + rand.N(100*time.Millisecond) // one delay for the round's three
				// The rounds of a batch start stagger apart, so that one round's releases do not
				// land on the others' pod creations; the variants of a round start together.
				after := time.Duration(r) * stagger
				for _, v := range rand.Perm(len(variants)) {
					wg.Add(1)
					go func() {
						defer wg.Done()
						<-time.After(after)
						s, err := variants[v].once(t, env, po, name("sweep"), delay)
						results[r][v] = s.total().Seconds()
						if variants[v].held {
							split[r] = s
						}
						errs <- err
					}()
				}
			}
			wg.Wait()
			close(errs)
			for err := range errs {
				require.NoError(t, err)
			}
			for _, res := range results {
				for v := range variants {
					lat[v] = append(lat[v], res[v])
				}
			}
			parts = append(parts, split...)
			done += batch
		}
		logSweep(t, ready, variants, lat)
		logReleaseParts(t, parts)
	}
}

// sweepVariant is how the dependent waits: held by podorder, or polling by itself every every.
type sweepVariant struct {
	name  string
	held  bool
	every time.Duration
}

// sweepReadyTimes are the dependency's ready times swept: PODORDER_BENCH_SWEEP_READY (a comma-separated
// list of durations) or 0.2 s, 2 s, 5 s and 15 s.
func sweepReadyTimes(t *testing.T) []time.Duration {
	list := os.Getenv("PODORDER_BENCH_SWEEP_READY")
	if list == "" {
		return []time.Duration{200 * time.Millisecond, 2 * time.Second, 5 * time.Second, 15 * time.Second}
	}
	var out []time.Duration
	for _, f := range strings.Split(list, ",") {
		d, err := time.ParseDuration(strings.TrimSpace(f))
		require.NoError(t, err, "PODORDER_BENCH_SWEEP_READY")
		out = append(out, d)
	}
	return out
}

// releaseParts are one release's moments: db's LISTEN line, podorder's ready record of db, its
// release record of app, and app's START line. The records are the daemon's clock, the lines the
// workloads'; all read the same host clock.
type releaseParts struct {
	listen, ready, released, start time.Time
	// pid is app's process, as the kernel trace names it.
	pid int
}

func (p releaseParts) total() time.Duration { return p.start.Sub(p.listen) }

// logReleaseParts splits podorder's release latency at its own records, so the time it spends
// (event and probe; decision and tombstone; wake, hook exit, runc's exec and the app's start) can
// be told from the rest.
func logReleaseParts(t *testing.T, parts []releaseParts) {
	t.Helper()
	var b strings.Builder
	fmt.Fprintf(&b, "RESULT   podorder's release split at its records (%d releases): %-24s %10s %16s\n", len(parts), "", "median", "p99 (or max)")
	writeSegments(&b, "     ", 80, []segment[releaseParts]{
		{"LISTEN line → ready record (event, probe's connect)", func(p releaseParts) time.Time { return p.listen }, func(p releaseParts) time.Time { return p.ready }},
		{"ready record → release record (decision)", func(p releaseParts) time.Time { return p.ready }, func(p releaseParts) time.Time { return p.released }},
		{"release record → START line (tombstone, wake, hook exit, exec, app start)", func(p releaseParts) time.Time { return p.released }, func(p releaseParts) time.Time { return p.start }},
	}, parts)
	t.Log("\n" + strings.TrimRight(b.String(), "\n"))
}

// segment is one part of a release, from one of its moments to a later one.
type segment[T any] struct {
	name     string
	from, to func(T) time.Time
}

// writeSegments writes a RESULT line per segment: its median and p99 (or max) over xs, its name
// indented and padded to width.
func writeSegments[T any](b *strings.Builder, indent string, width int, segs []segment[T], xs []T) {
	for _, seg := range segs {
		var d []float64
		for _, x := range xs {
			d = append(d, seg.to(x).Sub(seg.from(x)).Seconds())
		}
		fmt.Fprintf(b, "RESULT%s%-*s %10s %16s\n", indent, width, seg.name, fmtDuration(seconds(stats.Median(d))), tail(d))
	}
}

// once runs one pod (app waits for db, which listens delay after it starts) and returns db's
// LISTEN and app's START, and for podorder its records between them; the pod is removed before it
// returns.
func (v sweepVariant) once(t *testing.T, env *harness.Env, po *Podorder, name string, delay time.Duration) (releaseParts, error) {
	var s releaseParts
	const port = "8080" // each pod has a network namespace of its own
	db := harness.ContainerSpec{Name: "db", Args: args("db", "--listen-after", delay.String(), "--port", port)}
	spec := harness.PodSpec{Name: name, PodNetwork: true, Containers: []harness.ContainerSpec{
		{Name: "app", Args: args("app", "--wait-tcp", "127.0.0.1:"+port, "--wait-every", v.every.String(), "--wait-random-phase", "--wait-exec")}, db}}
	if v.held {
		spec.Labels = map[string]string{"podorder.dev/after.app": "db", "podorder.dev/timeout.app": "2m"}
		spec.Annotations = map[string]string{"podorder.dev/probe.db": "tcp:" + port}
		spec.Containers[0] = harness.ContainerSpec{Name: "app", Args: args("app")}
	}
	pod, err := env.TryRunPod(t, spec)
	if err != nil {
		return s, err
	}
	defer func() { _ = env.TryStopPod(pod) }()
	listen, err := harness.AwaitWorkloadEvent(pod.Container("db"), "LISTEN", delay+time.Minute)
	if err != nil {
		return s, fmt.Errorf("pod %s: %w", name, err)
	}
	start, err := harness.AwaitWorkloadEvent(pod.Container("app"), "START", time.Minute)
	if err != nil {
		return s, fmt.Errorf("pod %s: %w", name, err)
	}
	if !start.At.After(listen.At) {
		return s, fmt.Errorf("pod %s (%s): app started at %s, before db listened at %s", name, v.name,
			start.At.Format(time.StampMicro), listen.At.Format(time.StampMicro))
	}
	s.listen, s.start = listen.At, start.At
	if v.held {
		err = s.readRecords(env, po, pod)
	}
	return s, err
}

// readRecords fills in podorder's records of a pod's release (db's ready, app's released) and app's
// process, which the kernel trace names.
func (s *releaseParts) readRecords(env *harness.Env, po *Podorder, pod *harness.Pod) error {
	db, err := po.Store.Read(pod.Spec.UID, "db")
	if err != nil || db == nil || db.ReadyAt == nil {
		return fmt.Errorf("pod %s: no ready record of db (err %v)", pod.Spec.Name, err)
	}
	app, err := po.Store.Read(pod.Spec.UID, "app")
	if err != nil || app == nil || app.ReleasedAt == nil {
		return fmt.Errorf("pod %s: no release record of app (err %v)", pod.Spec.Name, err)
	}
	s.ready, s.released = *db.ReadyAt, *app.ReleasedAt
	if s.pid, err = env.PID(pod.Container("app").ID); err != nil {
		return fmt.Errorf("pod %s: %w", pod.Spec.Name, err)
	}
	return nil
}

// tail is a sample's p99, or its maximum below 100 values.
func tail(d []float64) string {
	if len(d) < 100 {
		return "max " + fmtDuration(seconds(stats.Quantile(d, 1)))
	}
	return "p99 " + fmtDuration(seconds(stats.Quantile(d, 0.99)))
}

// logSweep prints one ready time's table: per variant its median and p99 (or max), and its paired
// per-round ratio to podorder with a 95% bootstrap interval.
func logSweep(t *testing.T, ready time.Duration, variants []sweepVariant, lat [][]float64) {
	t.Helper()
	var b strings.Builder
	n := len(lat[0])
	fmt.Fprintf(&b, "RESULT release latency, dependency ready %s (+0-100 ms) after its start, pod network namespaces, %d rounds of the %d variants at once\n", ready, n, len(variants))
	fmt.Fprintf(&b, "RESULT   %-48s %10s %16s %28s\n", "variant", "median", "p99 (or max)", "paired ratio to podorder")
	for v, variant := range variants {
		ratio := "1"
		if v > 0 {
			r := stats.Ratios(lat[v], lat[0])
			ci := stats.MedianCI(r, 2000, 1)
			ratio = fmt.Sprintf("×%.1f [%.1f, %.1f]", stats.Median(r), ci.Lo, ci.Hi)
		}
		fmt.Fprintf(&b, "RESULT   %-48s %10s %16s %28s\n", variant.name, fmtDuration(seconds(stats.Median(lat[v]))), tail(lat[v]), ratio)
	}
	t.Log("\n" + strings.TrimRight(b.String(), "\n"))
}

func seconds(s float64) time.Duration { return time.Duration(s * float64(time.Second)) }

// TestMeasureReleaseSplit splits podorder's release latency at every moment that can be seen:
// podorder's own records (db ready, app released), the kernel's record of the hook's exit and of
// runc's exec of app's program, and app's first line; for a tcp probe also the kernel's record of
// db's socket listening. It runs one pod at a time, alone on the machine, so that the kernel's
// events of one release cannot be mistaken for another's, and so that what it shows is each part's
// own cost rather than contention: first with db ready when its port listens (a tcp probe, the
// kernel's LISTEN event), then when it sends READY=1 (notify). PODORDER_BENCH=1 (make bench) runs
// it; PODORDER_BENCH_SPLIT_ROUNDS (default 100 of each) sizes it.
func TestMeasureReleaseSplit(t *testing.T) {
	if os.Getenv("PODORDER_BENCH") != "1" {
		t.Skip("set PODORDER_BENCH=1 (make bench) to measure")
	}
	rounds := envInt("PODORDER_BENCH_SPLIT_ROUNDS", 100)
	env := harness.Start(t, harness.Options{PodNetwork: true})
	env.ImportWorkloadImages(t)
	po := startPodorder(t, env, "--log-level=info")
	t.Logf("readiness events: %s", readinessSource(t, po))
	trace := startKernelTrace(t, 8080, "hook", "/workload")
	delay := func() time.Duration { return 200*time.Millisecond + rand.N(100*time.Millisecond) }
	tcp := sweepVariant{name: "podorder", held: true}
	var listens, notifies []releaseParts
	for i := range rounds {
		s, err := tcp.once(t, env, po, fmt.Sprintf("split-%d", i), delay())
		require.NoError(t, err)
		listens = append(listens, s)
	}
	for i := range rounds {
		s, err := notifyOnce(t, env, po, fmt.Sprintf("split-notify-%d", i), delay())
		require.NoError(t, err)
		notifies = append(notifies, s)
	}
	k := trace.read(t)
	logSplit(t, "db ready when its port listens (tcp probe, the kernel's LISTEN event)", "LISTEN", k, listens, true)
	logSplit(t, "db ready on its READY=1 (notify)", "READY", k, notifies, false)
}

// notifyOnce runs one pod whose app waits for db's READY=1, sent delay after db starts, and
// returns the moments of its release; READY=1's line stands where LISTEN's does for a tcp probe.
func notifyOnce(t *testing.T, env *harness.Env, po *Podorder, name string, delay time.Duration) (releaseParts, error) {
	var s releaseParts
	spec := notifyPod(name, "--notify-after", delay.String())
	spec.PodNetwork = true
	pod, err := env.TryRunPod(t, spec)
	if err != nil {
		return s, err
	}
	defer func() { _ = env.TryStopPod(pod) }()
	ready, err := harness.AwaitWorkloadEvent(pod.Container("db"), "READY", delay+time.Minute)
	if err != nil {
		return s, fmt.Errorf("pod %s: %w", name, err)
	}
	start, err := harness.AwaitWorkloadEvent(pod.Container("app"), "START", time.Minute)
	if err != nil {
		return s, fmt.Errorf("pod %s: %w", name, err)
	}
	s.listen, s.start = ready.At, start.At
	return s, s.readRecords(env, po, pod)
}

// logSplit prints one table of TestMeasureReleaseSplit: each part of the releases that the kernel
// trace covers, from db's signal line (signal: LISTEN or READY) to app's START line; withListen
// adds the kernel's record of db's socket listening.
func logSplit(t *testing.T, title, signal string, k kernelRecords, parts []releaseParts, withListen bool) {
	t.Helper()
	type split struct {
		releaseParts
		listening, hookExit, exec time.Time
	}
	var splits []split
	for _, p := range parts {
		listening, heard := lastBetween(k.listens, p.listen, p.ready)
		if hookExit, exec, ok := hookExitAndExec(k.exits, k.execs, p.pid); (heard || !withListen) && ok && hookExit.After(p.released) && !exec.After(p.start) {
			splits = append(splits, split{p, listening, hookExit, exec})
		}
	}
	require.NotEmpty(t, splits, "the kernel trace has no hook exit and exec for any release")
	segments := []segment[split]{{"db's " + signal + " line → db's ready record: the signal reaches podorder (podorder)",
		func(s split) time.Time { return s.listen }, func(s split) time.Time { return s.ready }}}
	if withListen {
		segments = []segment[split]{
			{"db's LISTEN line → its socket listening: the program's own listen(2) (the app)", func(s split) time.Time { return s.listen }, func(s split) time.Time { return s.listening }},
			{"listening → db's ready record: the event, the probe's connect (podorder)", func(s split) time.Time { return s.listening }, func(s split) time.Time { return s.ready }},
		}
	}
	segments = append(segments,
		segment[split]{"ready record → app's release record: the decision (podorder; one clock reading)", func(s split) time.Time { return s.ready }, func(s split) time.Time { return s.released }},
		segment[split]{"release record → the hook's exit: tombstone, wake, the hook's read and exit (podorder)", func(s split) time.Time { return s.released }, func(s split) time.Time { return s.hookExit }},
		segment[split]{"the hook's exit → app's program exec'd: runc's return from the hook, execve (runc, kernel)", func(s split) time.Time { return s.hookExit }, func(s split) time.Time { return s.exec }},
		segment[split]{"exec'd → app's START line: the program's own start (the app)", func(s split) time.Time { return s.exec }, func(s split) time.Time { return s.start }},
		segment[split]{"total: db's " + signal + " line → app's START line", func(s split) time.Time { return s.listen }, func(s split) time.Time { return s.start }},
	)
	var b strings.Builder
	fmt.Fprintf(&b, "RESULT release split, %s, db ready 0.2 s (+0-100 ms) after its start, one pod at a time in its own network namespace, %d of %d releases traced\n", title, len(splits), len(parts))
	fmt.Fprintf(&b, "RESULT   %-92s %10s %16s\n", "part (whose)", "median", "p99 (or max)")
	writeSegments(&b, "   ", 92, segments, splits)
	t.Log("\n" + strings.TrimRight(b.String(), "\n"))
}

package e2e

import (
	"bufio"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/podorder/podorder/test/harness"
)

// The churn campaign: pods with random dependency graphs, created many at once through CRI as
// kubelet would, while faults hit podorder (kill -9), containerd (restart), the store (removed) and
// the dependencies (killed, then restarted as kubelet would). An invariant checker then reads the
// workloads' own timestamps, the runtime's state and podorder's release records and reports every
// violation with its pod and container.
//
// `make test` runs a short form; `make soak` sets PODORDER_SOAK_PODS and PODORDER_SOAK_ROUNDS.

// role is what a churn container does.
type role int

const (
	server  role = iota // listens on a port after a delay and runs on (waited on: started or ready)
	plain               // runs on (waited on: started)
	job                 // exits 0 after a delay (waited on: completed)
	failjob             // exits 1 after a delay: its dependents must never start
	crasher             // exits 1 after a delay and is restarted twice, as kubelet would
)

type churnDep struct {
	container string
	condition string // started, ready, completed
}

type churnContainer struct {
	name    string
	role    role
	port    int
	deps    []churnDep
	ghost   bool // also waits for a container that never exists: must end at its timeout
	timeout time.Duration
	// attempts are the CRI attempts made, in order.
	attempts []*harness.Container
}

type churnPod struct {
	name       string
	containers []*churnContainer // in creation order (dependents often first)
	pod        *harness.Pod
}

func envInt(name string, def int) int {
	if v, err := strconv.Atoi(os.Getenv(name)); err == nil && v > 0 {
		return v
	}
	return def
}

// ports hands out ports for the campaign's servers. Pods here share the host's network: two servers
// on one port would let a probe see the wrong one. Below the ephemeral range (32768+), each port is
// handed out once and only if nothing listens on it.
type ports struct{ next int }

func (p *ports) take(t *testing.T) int {
	for ; p.next < 32768; p.next++ {
		l, err := net.Listen("tcp", fmt.Sprintf("0.0.0.0:%d", p.next))
		if err == nil {
			l.Close()
			p.next++
			return p.next - 1
		}
	}
	t.Fatal("no free port left below 32768")
	return 0
}

// newChurnPod draws a random dependency graph of 3-8 containers: a container may wait only for
// containers drawn before it, so the graph has no cycle, and the creation order is shuffled.
func newChurnPod(t *testing.T, rng *rand.Rand, ports *ports, name string) *churnPod {
	n := 3 + rng.IntN(6)
	cs := make([]*churnContainer, n)
	for i := range cs {
		c := &churnContainer{name: fmt.Sprintf("c%d", i), timeout: 20 * time.Second}
		switch r := rng.IntN(20); {
		case r < 8:
			c.role, c.port = server, ports.take(t)
		case r < 12:
			c.role = plain
		case r < 16:
			c.role = job
		case r < 17:
			c.role = failjob
		default:
			c.role = crasher
		}
		for _, j := range rng.Perm(i)[:min(i, rng.IntN(3))] {
			d := cs[j]
			cond := "started"
			switch d.role {
			case server:
				if rng.IntN(3) > 0 {
					cond = "ready"
				}
			case job, failjob:
				cond = "completed"
			}
			c.deps = append(c.deps, churnDep{d.name, cond})
		}
		if len(c.deps) > 0 && rng.IntN(25) == 0 {
			c.ghost, c.timeout = true, 3*time.Second
		}
		cs[i] = c
	}
	rng.Shuffle(n, func(i, j int) { cs[i], cs[j] = cs[j], cs[i] })
	return &churnPod{name: name, containers: cs}
}

func (p *churnPod) spec() harness.PodSpec {
	labels := map[string]string{}
	annotations := map[string]string{}
	for _, c := range p.containers {
		var after []string
		for _, d := range c.deps {
			after = append(after, d.container+":"+d.condition)
		}
		if c.ghost {
			after = append(after, "ghost:started")
		}
		if len(after) > 0 {
			annotations["podorder.dev/after."+c.name] = strings.Join(after, ", ")
			annotations["podorder.dev/timeout."+c.name] = c.timeout.String()
		}
		if c.role == server {
			annotations["podorder.dev/probe."+c.name] = fmt.Sprintf("tcp:%d", c.port)
		}
	}
	return harness.PodSpec{Name: p.name, Labels: labels, Annotations: annotations}
}

func (c *churnContainer) spec(attempt uint32) harness.ContainerSpec {
	a := args(c.name)
	switch c.role {
	case server:
		a = append(a, "--listen-after", "300ms", "--port", strconv.Itoa(c.port))
	case job:
		a = append(a, "--exit-after", "400ms", "--exit-code", "0")
	case failjob:
		a = append(a, "--exit-after", "300ms", "--exit-code", "1")
	case crasher:
		a = append(a, "--exit-after", "500ms", "--exit-code", "1")
	}
	return harness.ContainerSpec{Name: c.name, Attempt: attempt, Args: a}
}

// churn drives the pods and injects the faults.
type churn struct {
	t   *testing.T
	env *harness.Env
	po  *Podorder
	rng *rand.Rand

	mu     sync.Mutex
	faults map[string]int
}

func (ch *churn) fault(kind string) {
	ch.mu.Lock()
	defer ch.mu.Unlock()
	ch.faults[kind]++
}

// create makes one container attempt like kubelet: a CreateContainer refused because podorder is
// down (the fail-closed validator) is retried, as kubelet retries CreateContainerError.
func (ch *churn) create(p *churnPod, c *churnContainer, attempt uint32) *harness.Container {
	for try := 0; ; try++ {
		a := ch.env.CreateStartContainer(ch.t, p.pod, c.spec(attempt))
		if a.CreateErr == nil || try == 200 || !strings.Contains(a.CreateErr.Error(), "podorder") ||
			!strings.Contains(a.CreateErr.Error(), "required") {
			ch.mu.Lock()
			c.attempts = append(c.attempts, a)
			ch.mu.Unlock()
			return a
		}
		time.Sleep(100 * time.Millisecond) // kubelet backs off ~10 s; a shorter retry keeps the test short
	}
}

// runPod creates a pod and its containers one at a time, then restarts its crashers twice.
func (ch *churn) runPod(p *churnPod) {
	p.pod = ch.env.RunPod(ch.t, p.spec())
	for _, c := range p.containers {
		ch.create(p, c, 0)
	}
	for _, c := range p.containers {
		if c.role != crasher || c.attempts[0].CreateErr != nil {
			continue
		}
		for attempt := uint32(1); attempt <= 2; attempt++ {
			prev := c.attempts[len(c.attempts)-1]
			if prev.StartErr != nil {
				break
			}
			ch.env.WaitExited(ch.t, prev.ID, 90*time.Second)
			ch.create(p, c, attempt)
		}
	}
}

// wave creates pods concurrently (8 at a time, as a node's kubelet works several pods at once) and
// runs during(...) while they are being created.
func (ch *churn) wave(pods []*churnPod, during func()) {
	var wg sync.WaitGroup
	sem := make(chan struct{}, 8)
	for _, p := range pods {
		wg.Add(1)
		go func() {
			defer wg.Done()
			sem <- struct{}{}
			defer func() { <-sem }()
			ch.runPod(p)
		}()
	}
	if during != nil {
		during()
	}
	wg.Wait()
}

// settle waits until every held attempt has either started its process or exited.
func (ch *churn) settle(pods []*churnPod) {
	deadline := time.Now().Add(3 * time.Minute)
	for _, p := range pods {
		for _, c := range p.containers {
			if len(c.deps) == 0 {
				continue
			}
			for _, a := range c.attempts {
				if a.CreateErr != nil || a.StartErr != nil {
					continue
				}
				for time.Now().Before(deadline) {
					if lines, _ := harness.ReadLog(a.LogPath); hasPrefix(lines, "START ") {
						break
					}
					if st := ch.env.ContainerStatus(ch.t, a.ID); st.State == runtimeapi.ContainerState_CONTAINER_EXITED {
						break
					}
					time.Sleep(50 * time.Millisecond)
				}
			}
		}
	}
}

func hasPrefix(lines []string, prefix string) bool {
	return slices.ContainsFunc(lines, func(l string) bool { return strings.HasPrefix(l, prefix) })
}

// daemonStats is what the campaign watches of the daemon.
type daemonStats struct{ goroutines, threads, rssKiB int }

func (ch *churn) stats(addr string) (daemonStats, error) {
	var s daemonStats
	res, err := http.Get("http://" + addr + "/debug/runtime")
	if err != nil {
		return s, err
	}
	defer res.Body.Close()
	var v struct{ Goroutines int }
	if err := json.NewDecoder(res.Body).Decode(&v); err != nil {
		return s, err
	}
	s.goroutines = v.Goroutines
	f, err := os.Open(fmt.Sprintf("/proc/%d/status", ch.po.pid()))
	if err != nil {
		return s, err
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		k, v, _ := strings.Cut(sc.Text(), ":")
		n, _ := strconv.Atoi(strings.TrimSuffix(strings.TrimSpace(v), " kB"))
		switch k {
		case "Threads":
			s.threads = n
		case "VmRSS":
			s.rssKiB = n
		}
	}
	return s, nil
}

func TestChurnWithFaultsKeepsEveryInvariant(t *testing.T) {
	nPods, rounds := envInt("PODORDER_SOAK_PODS", 16), envInt("PODORDER_SOAK_ROUNDS", 1)
	seed := uint64(time.Now().UnixNano())
	if s, err := strconv.ParseUint(os.Getenv("PODORDER_SOAK_SEED"), 10, 64); err == nil {
		seed = s
	}
	t.Logf("churn: %d pods × %d rounds, seed %d (PODORDER_SOAK_SEED to replay)", nPods, rounds, seed)

	// Fail closed, as a production node should be: while podorder is down, containers of every pod
	// are refused and kubelet retries, so nothing starts unordered.
	env := harness.Start(t, harness.Options{ExtraConfig: failClosedValidator})
	env.ImportWorkloadImages(t)
	healthPort := freePort(t)
	po := startPodorder(t, env, "--health-addr=127.0.0.1:"+strconv.Itoa(healthPort))
	addr := "127.0.0.1:" + strconv.Itoa(healthPort)
	ch := &churn{t: t, env: env, po: po, rng: rand.New(rand.NewPCG(seed, seed>>1)), faults: map[string]int{}}
	base, err := ch.stats(addr)
	require.NoError(t, err)

	var peak daemonStats
	var peakMu sync.Mutex
	stopSampling := make(chan struct{})
	sampled := make(chan struct{})
	go func() {
		defer close(sampled)
		for {
			select {
			case <-stopSampling:
				return
			case <-time.After(200 * time.Millisecond):
			}
			if s, err := ch.stats(addr); err == nil {
				peakMu.Lock()
				peak.goroutines = max(peak.goroutines, s.goroutines)
				peak.threads = max(peak.threads, s.threads)
				peak.rssKiB = max(peak.rssKiB, s.rssKiB)
				peakMu.Unlock()
			}
		}
	}()

	var violations, unheld []string
	containers := 0
	portsInUse := &ports{next: 20000}
	for round := range rounds {
		var pods []*churnPod
		for i := range nPods {
			pods = append(pods, newChurnPod(t, ch.rng, portsInUse, fmt.Sprintf("churn-%d-%d", round, i)))
		}
		half := len(pods) / 2

		// Wave A, with podorder killed -9 in the middle of it and started again.
		holding := po.countLines(t, "holding")
		ch.wave(pods[:half], func() {
			po.waitLog(t, "holding", holding+1, 2*time.Minute)
			po.Kill(t)
			ch.fault("podorder kill -9")
			time.Sleep(time.Duration(200+ch.rng.IntN(800)) * time.Millisecond) // the outage itself
			po.Restart(t)
		})
		ch.settle(pods[:half])

		// containerd restarts between waves (kubelet's own calls would fail and be retried).
		synced := po.countLines(t, "synchronized with the runtime")
		env.Restart(t)
		ch.fault("containerd restart")
		po.waitLog(t, "synchronized with the runtime", synced+1, time.Minute)

		// Wave B, with the store removed and dependencies killed while it runs.
		holding = po.countLines(t, "holding")
		ch.wave(pods[half:], func() {
			po.waitLog(t, "holding", holding+1, 2*time.Minute)
			// Renamed away first: the daemon writes into it concurrently, which a plain recursive
			// removal would race with.
			// Next to the store, on its file system: a rename cannot cross devices.
			trash, err := os.MkdirTemp(filepath.Dir(po.Store.Root), "removed-")
			require.NoError(t, err)
			for _, tree := range []string{"pods", "wake"} {
				gone := filepath.Join(trash, tree)
				require.NoError(t, os.Rename(filepath.Join(po.Store.Root, tree), gone))
				require.NoError(t, os.RemoveAll(gone))
			}
			ch.fault("store removed")
		})
		for _, p := range pods[half:] {
			for _, c := range p.containers {
				last := c.attempts[len(c.attempts)-1]
				if c.role != server || last.CreateErr != nil || last.StartErr != nil || ch.rng.IntN(4) > 0 {
					continue
				}
				env.StopContainer(t, last.ID, 0)
				ch.fault("dependency killed")
				env.WaitExited(t, last.ID, 30*time.Second)
				ch.create(p, c, uint32(len(c.attempts)))
			}
		}
		ch.settle(pods[half:])

		v, u := ch.check(pods)
		violations, unheld = append(violations, v...), append(unheld, u...)
		for _, p := range pods {
			containers += len(p.containers)
			env.StopPod(t, p.pod)
		}
		// Pods created after containerd's restart are removed by RemovePodSandbox at once; for the
		// ones from before, containerd 2.4.2 sends none (see docs/operating.md), so podorder's next
		// resynchronization sweeps them.
		for _, p := range pods[half:] {
			_, err := os.Stat(po.Store.PodDir(p.pod.Spec.UID))
			assert.True(t, os.IsNotExist(err), "pod %s's tombstones are gone with the pod", p.name)
		}
	}

	close(stopSampling)
	<-sampled

	// Once the pods are gone: the daemon that lived through the churn is back to what it was with no
	// pods, and after a resynchronization the store is empty.
	var after daemonStats
	require.Eventually(t, func() bool {
		after, err = ch.stats(addr)
		return err == nil && after.goroutines <= base.goroutines+2
	}, 30*time.Second, 100*time.Millisecond, "goroutines back to baseline: %+v, baseline %+v", after, base)
	assert.LessOrEqual(t, after.threads, base.threads+12, "threads do not grow with pods or probes")
	assert.Less(t, peak.rssKiB, 128<<10, "under the DaemonSet's 128Mi limit")
	po.Kill(t)
	po.Restart(t)
	for _, tree := range []string{"pods", "wake"} {
		entries, err := os.ReadDir(filepath.Join(po.Store.Root, tree))
		if err == nil {
			assert.Empty(t, entries, "%s/ is empty once every pod is removed", tree)
		}
	}

	t.Logf("RESULT churn: %d pods, %d containers, %d rounds, faults %v, violations %d, started unheld because podorder died during their CreateContainer %d",
		nPods*rounds, containers, rounds, ch.faults, len(violations), len(unheld))
	for _, u := range unheld {
		t.Logf("unheld (NRI created it without podorder, which had died mid-request): %s", u)
	}
	t.Logf("RESULT churn daemon: baseline goroutines=%d threads=%d rss=%dKiB; peak goroutines=%d threads=%d rss=%dKiB; after goroutines=%d threads=%d rss=%dKiB",
		base.goroutines, base.threads, base.rssKiB, peak.goroutines, peak.threads, peak.rssKiB, after.goroutines, after.threads, after.rssKiB)
	for _, v := range violations {
		t.Errorf("violation: %s", v)
	}
}

// failClosedValidator makes containerd refuse every container while podorder is not registered.
const failClosedValidator = `
[plugins."io.containerd.nri.v1.nri".default_validator]
  enable = true
  required_plugins = ["podorder"]
`

// attemptFacts is what the checker knows of one container attempt.
type attemptFacts struct {
	id                   string
	created              bool
	startedAt, finished  time.Time // the runtime's
	exitCode             int32
	start, listen, exitd time.Time // the workload's own lines; zero when absent
	exitLineCode         int
}

func (ch *churn) facts(a *harness.Container) attemptFacts {
	f := attemptFacts{id: a.ID, created: a.CreateErr == nil && a.StartErr == nil}
	if !f.created {
		return f
	}
	st := ch.env.ContainerStatus(ch.t, a.ID)
	if st.StartedAt != 0 {
		f.startedAt = time.Unix(0, st.StartedAt)
	}
	if st.FinishedAt != 0 {
		f.finished = time.Unix(0, st.FinishedAt)
	}
	f.exitCode = st.ExitCode
	lines, _ := harness.ReadLog(a.LogPath)
	for _, l := range lines {
		ev, err := harness.ParseWorkloadEvent(l)
		if err != nil {
			continue
		}
		switch ev.Kind {
		case "START":
			f.start = ev.At
		case "LISTEN":
			f.listen = ev.At
		case "EXIT":
			f.exitd, f.exitLineCode = ev.At, ev.Code
		}
	}
	return f
}

// exitTolerance is how long after a dependency's process ended podorder may still count it ready or
// started: containerd reports the exit to NRI asynchronously, after the process is gone.
const exitTolerance = time.Second

// check reports every violation of podorder's promises in pods:
//   - a held container's process starts only after podorder recorded its release for that attempt;
//   - at that release, each dependency met its condition (per the runtime and the workloads' lines);
//   - no hold lasts past its timeout;
//   - a container waiting for a failed or never-created dependency never starts.
func (ch *churn) check(pods []*churnPod) (out, unheld []string) {
	released := map[string]time.Time{} // container ID → release record
	for _, rec := range ch.po.Logs(ch.t, "released") {
		if rec["msg"] != "released" {
			continue
		}
		at, err := time.Parse(time.RFC3339Nano, fmt.Sprint(rec["time"]))
		if err == nil {
			released[fmt.Sprint(rec["container_id"])] = at
		}
	}
	for _, p := range pods {
		facts := map[string][]attemptFacts{}
		for _, c := range p.containers {
			for _, a := range c.attempts {
				facts[c.name] = append(facts[c.name], ch.facts(a))
			}
		}
		for _, c := range p.containers {
			if len(c.deps) == 0 && !c.ghost {
				continue
			}
			for _, f := range facts[c.name] {
				if !f.created {
					continue
				}
				where := fmt.Sprintf("pod %s container %s attempt %s", p.name, c.name, f.id[:12])
				r, wasReleased := released[f.id]
				if !f.start.IsZero() {
					if !wasReleased {
						if !strings.Contains(runtimeSpec(ch.t, ch.env, f.id), "/.podorder/hook") {
							// NRI went on without podorder, which died during this CreateContainer.
							unheld = append(unheld, where)
							continue
						}
						out = append(out, where+": its process started without a release record")
						continue
					}
					if f.start.Before(r) {
						out = append(out, fmt.Sprintf("%s: its process started %s before its release", where, r.Sub(f.start)))
					}
					if c.ghost {
						out = append(out, where+": started although it waits for a container that never exists")
					}
					for _, d := range c.deps {
						if !metAt(d, facts[d.container], r) {
							out = append(out, fmt.Sprintf("%s: released at %s while %s was not %s", where, r.Format(time.RFC3339Nano), d.container, d.condition))
						}
					}
				} else if wasReleased {
					out = append(out, where+": counted released but its process never ran")
				}
				if f.start.IsZero() && !f.startedAt.IsZero() {
					end := f.finished
					if end.IsZero() {
						end = time.Now()
					}
					if held := end.Sub(f.startedAt); held > c.timeout+2*time.Second {
						out = append(out, fmt.Sprintf("%s: held %s, past its timeout %s", where, held.Round(time.Millisecond), c.timeout))
					}
				}
			}
		}
	}
	return out, unheld
}

// metAt decides a dependency at moment r from every attempt of the container it names.
func metAt(d churnDep, attempts []attemptFacts, r time.Time) bool {
	for _, a := range attempts {
		gone := !a.finished.IsZero() && a.finished.Add(exitTolerance).Before(r)
		switch d.condition {
		case "started":
			if !a.startedAt.IsZero() && !a.startedAt.After(r) && !(gone && a.exitCode != 0) {
				return true
			}
		case "ready":
			if !a.listen.IsZero() && !a.listen.After(r) && !gone {
				return true
			}
		case "completed":
			if !a.finished.IsZero() && a.exitCode == 0 && !a.finished.After(r) {
				return true
			}
		}
	}
	return false
}

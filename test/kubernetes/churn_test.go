package kubernetes

import (
	"fmt"
	"maps"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	podorderimage "github.com/podorder/podorder/build/image"
	"github.com/podorder/podorder/test/checker"
	"github.com/podorder/podorder/test/cluster"
	"github.com/podorder/podorder/test/harness"
)

// The churn campaign on the real kubelet: Deployments and Jobs whose pods have random dependency
// graphs, on the pod network, while podorder is upgraded from its previous release (a DaemonSet
// rollout), its pod is deleted, a Deployment is rolled and pods are deleted, each while holds are in
// progress. Package test/checker then judges every held attempt kubelet made by process evidence,
// as test/e2e's churn does on the CRI bed.
//
// `make test` runs a short form; `make soak` sets PODORDER_SOAK_KUBE_PODS.

// previousRelease is the commit of podorder's previous release, v0.3.0 (the commit that wrote its
// VERSION file). The campaign builds its image from `git archive` of it and deploys it with its own
// daemonset/ manifests, as an operator had it, before upgrading to this tree.
const previousRelease = "20520473818381a04f3e48ed1b96feeb82bd33ae"

// previousImage is the tag the previous release's image is built under.
const previousImage = "registry.local/podorder/podorder:previous"

// kubeRole is what a campaign container does.
type kubeRole int

const (
	kubeServer  kubeRole = iota // listens after a delay, with a tcpSocket readinessProbe podorder evaluates
	kubePlain                   // runs on
	kubeJob                     // exits 0 after a delay
	kubeCrasher                 // exits 1 after a delay; kubelet restarts it
)

// workloadContainer is one container of a workload's pod template.
type workloadContainer struct {
	name    string
	role    kubeRole
	port    int
	delay   time.Duration // before listening (server) or exiting (job, crasher)
	deps    []checker.Dep
	timeout time.Duration
}

// workload is a Deployment or a Job of the campaign: one pod with a random dependency graph.
type workload struct {
	name, kind string
	containers []*workloadContainer // in the template's order (dependents often first)
}

// newWorkload draws a dependency graph of 3-6 containers: a container waits only for containers
// drawn before it, so the graph has no cycle; the template lists them shuffled.
func newWorkload(rng *rand.Rand, name, kind string) *workload {
	n := 3 + rng.IntN(4)
	cs := make([]*workloadContainer, n)
	for i := range cs {
		c := &workloadContainer{name: fmt.Sprintf("c%d", i), timeout: 60 * time.Second}
		switch r := rng.IntN(10); {
		case r < 4:
			// Listening 1-6 s after its start: holds on it last long enough for the faults to land.
			c.role, c.port, c.delay = kubeServer, 8000+i, time.Second+time.Duration(rng.Int64N(int64(5*time.Second)))
		case r < 6:
			c.role = kubePlain
		case r < 8:
			c.role, c.delay = kubeJob, 400*time.Millisecond+time.Duration(rng.Int64N(int64(2*time.Second)))
		default:
			c.role, c.delay = kubeCrasher, 500*time.Millisecond+time.Duration(rng.Int64N(int64(time.Second)))
		}
		for _, j := range rng.Perm(i)[:min(i, rng.IntN(3))] {
			d := cs[j]
			cond := checker.Started
			switch d.role {
			case kubeServer:
				if rng.IntN(3) > 0 {
					cond = checker.Ready
				}
			case kubeJob:
				cond = checker.Completed
			}
			c.deps = append(c.deps, checker.Dep{Container: d.name, Condition: cond})
		}
		cs[i] = c
	}
	rng.Shuffle(n, func(i, j int) { cs[i], cs[j] = cs[j], cs[i] })
	return &workload{name: name, kind: kind, containers: cs}
}

// manifest renders the workload; rev is a template annotation whose change rolls a Deployment.
func (w *workload) manifest(rev int) string {
	annotations := map[string]string{"churn.podorder.dev/rev": strconv.Itoa(rev)}
	var cs []container
	for _, c := range w.containers {
		var after []string
		for _, d := range c.deps {
			after = append(after, d.Container+":"+d.Condition)
		}
		if len(after) > 0 {
			annotations["podorder.dev/after."+c.name] = strings.Join(after, ", ")
			annotations["podorder.dev/timeout."+c.name] = c.timeout.String()
		}
		cc := container{Name: c.name}
		switch c.role {
		case kubeServer:
			cc.Args = []string{"--listen-after", c.delay.String(), "--port", strconv.Itoa(c.port)}
			cc.Extra = tcpReady(c.port)
		case kubeJob:
			cc.Args = []string{"--exit-after", c.delay.String(), "--exit-code", "0"}
		case kubeCrasher:
			cc.Args = []string{"--exit-after", c.delay.String(), "--exit-code", "1"}
		}
		cs = append(cs, cc)
	}
	var podSpec strings.Builder
	fmt.Fprintf(&podSpec, "metadata:\n  labels:\n    churn: %s\n", w.name)
	writeMap(&podSpec, "annotations", annotations)
	restart := "Always"
	if w.kind == "Job" {
		restart = "OnFailure"
	}
	fmt.Fprintf(&podSpec, "spec:\n  restartPolicy: %s\n  terminationGracePeriodSeconds: 2\n  containers:\n", restart)
	writeContainers(&podSpec, cs)
	template := indent(podSpec.String(), "    ")
	if w.kind == "Job" {
		return fmt.Sprintf("apiVersion: batch/v1\nkind: Job\nmetadata:\n  name: %s\n  namespace: default\nspec:\n  backoffLimit: 1000\n  template:\n%s",
			w.name, template)
	}
	return fmt.Sprintf("apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: %s\n  namespace: default\nspec:\n  replicas: 1\n  selector:\n    matchLabels: {churn: %s}\n  template:\n%s",
		w.name, w.name, template)
}

func indent(s, prefix string) string {
	var sb strings.Builder
	for _, l := range strings.SplitAfter(s, "\n") {
		if strings.TrimSpace(l) != "" {
			sb.WriteString(prefix)
		}
		sb.WriteString(l)
	}
	return sb.String()
}

// fault is one fault the campaign injected.
type fault struct {
	kind string
	at   time.Time
	// outage is the span during which podorder could not act because of it; zero for faults that
	// leave podorder running.
	outage checker.Window
}

// images are podorder's two images: the previous release's and this tree's.
type images struct {
	previous, current string // OCI archives
	// previousManifests is the daemonset/ directory the previous image is deployed with.
	previousManifests string
	// fallback says why the previous release could not be had and this tree stands in for it.
	fallback string
}

// buildImages builds the previous release's image from its commit and this tree's, both with
// build/image. A clone without the commit (a shallow CI clone) rolls between two builds of this
// tree under different tags instead, and says so.
func buildImages(t *testing.T, repo string) (images, error) {
	var im images
	old := filepath.Join(t.TempDir(), "previous")
	if out, err := exec.Command("git", "-C", repo, "cat-file", "-e", previousRelease+"^{commit}").CombinedOutput(); err != nil {
		im.fallback = fmt.Sprintf("commit %s (v0.3.0) is not in this clone (%v: %s): rolling out between two builds of this tree instead",
			previousRelease[:12], err, strings.TrimSpace(string(out)))
		old = repo
	} else {
		// Not require: this runs beside the cluster's start, off the test's goroutine.
		if err := os.MkdirAll(old, 0o755); err != nil {
			return im, err
		}
		archive := exec.Command("sh", "-c", fmt.Sprintf("git -C %q archive %s | tar -x -C %q", repo, previousRelease, old))
		if out, err := archive.CombinedOutput(); err != nil {
			return im, fmt.Errorf("git archive %s: %w: %s", previousRelease, err, out)
		}
	}
	im.previousManifests = filepath.Join(old, "daemonset")
	if im.fallback != "" {
		im.previousManifests = filepath.Join(old, "daemonset", "kubernetes-1.36")
	}
	var wg sync.WaitGroup
	var errPrevious, errCurrent error
	wg.Add(2)
	go func() {
		defer wg.Done()
		im.previous, errPrevious = buildReleaseImage(t, old, previousImage)
	}()
	go func() {
		defer wg.Done()
		im.current, errCurrent = podorderimage.Build(t.Context(), repo, t.TempDir(), PodorderImage, podorderimage.CachedTools())
	}()
	wg.Wait()
	if errPrevious != nil {
		return im, fmt.Errorf("the previous release's image: %w", errPrevious)
	}
	return im, errCurrent
}

// buildReleaseImage builds the image of the podorder tree at moduleDir with this tree's build/image:
// its binaries, then its own Dockerfile. v0.3.0's Dockerfile copies bin/<name>, today's
// bin/<os>_<arch>/<name>: the context holds both.
func buildReleaseImage(t *testing.T, moduleDir, ref string) (string, error) {
	release, err := podorderimage.Version(moduleDir)
	if err != nil {
		return "", err
	}
	dir := t.TempDir()
	buildContext := filepath.Join(dir, "context")
	for _, name := range podorderimage.Commands {
		bin := filepath.Join(buildContext, "bin", name)
		if err := podorderimage.GoBuild(t.Context(), moduleDir, release, "linux", runtime.GOARCH, name, bin); err != nil {
			return "", err
		}
		data, err := os.ReadFile(bin)
		if err != nil {
			return "", err
		}
		arch := filepath.Join(podorderimage.ContextBinaries(buildContext, runtime.GOARCH), name)
		if err := os.MkdirAll(filepath.Dir(arch), 0o755); err != nil {
			return "", err
		}
		if err := os.WriteFile(arch, data, 0o755); err != nil {
			return "", err
		}
	}
	tar := filepath.Join(dir, "podorder-image.tar")
	return tar, podorderimage.BuildDockerfile(t.Context(), podorderimage.Spec{
		ModuleDir: moduleDir, Context: buildContext, State: filepath.Join(dir, "buildkit"),
		Ref: ref, Archs: []string{runtime.GOARCH}, Dest: tar,
	}, podorderimage.CachedTools())
}

// kubeChurn drives the campaign on one cluster.
type kubeChurn struct {
	t      *testing.T
	b      *bed
	rec    *recorder
	rng    *rand.Rand
	began  time.Time
	faults []fault
}

func (k *kubeChurn) apply(ws []*workload) {
	var all []string
	for _, w := range ws {
		all = append(all, w.manifest(1))
	}
	k.b.c.ApplyYAML(k.t, strings.Join(all, "---\n"))
}

// podorderDown runs what takes podorder down (a deletion, a rollout) and waits until a new daemon
// has synchronized with the runtime: that span is an outage, during which containers created
// without the hook are excused (the cluster's containerd fails open).
func (k *kubeChurn) podorderDown(kind string, do func()) {
	from := time.Now()
	do()
	to := k.rec.waitSynchronized(k.t, from, 3*time.Minute)
	k.faults = append(k.faults, fault{kind: kind, at: from, outage: checker.Window{From: from, To: to, What: kind}})
	k.b.c.WaitFor(k.t, "podorder-system", "daemonset/podorder", "jsonpath={.status.numberReady}=1", 3*time.Minute)
}

// held returns the campaign's attempts held right now: hooked, started by the runtime, not yet
// running their process, not ended.
func (k *kubeChurn) held() []seenAttempt {
	var out []seenAttempt
	for _, a := range k.rec.attempts() {
		if a.Namespace != "default" || !a.Hooked || a.Started.IsZero() || !a.Finished.IsZero() {
			continue
		}
		if !slices.ContainsFunc(a.lines(), func(l string) bool { return strings.HasPrefix(l, "START ") }) {
			out = append(out, a)
		}
	}
	return out
}

// heldPods returns the campaign's pods with an attempt held right now.
func (k *kubeChurn) heldPods() []string {
	var out []string
	for _, a := range k.held() {
		if !slices.Contains(out, a.Pod) {
			out = append(out, a.Pod)
		}
	}
	return out
}

// waitHeld waits until some attempt of the campaign is held right now (podorder logged "holding"
// for it, and the runtime started it: its hook waits), so that a fault lands on a hold in progress.
// The recorder's look is the event, every recordEvery.
func (k *kubeChurn) waitHeld(timeout time.Duration) {
	k.t.Helper()
	for deadline := time.Now().Add(timeout); time.Now().Before(deadline); time.Sleep(recordEvery) {
		if len(k.heldPods()) > 0 {
			return
		}
	}
	k.t.Fatalf("no hold in progress within %s", timeout)
}

// settle waits until every hold in progress now has ended: its process started or the attempt
// ended. Crashers keep being restarted and held anew; those later holds are judged as far as they
// got. A hold still in progress at the timeout is logged and judged as it stands: the checker says
// whether it was owed a release.
func (k *kubeChurn) settle(timeout time.Duration) {
	k.t.Helper()
	pending := map[string]string{}
	for _, a := range k.held() {
		pending[a.ID] = a.Pod + "/" + a.Name
	}
	for deadline := time.Now().Add(timeout); time.Now().Before(deadline) && len(pending) > 0; time.Sleep(recordEvery) {
		still := map[string]string{}
		for _, a := range k.held() {
			if where, ok := pending[a.ID]; ok {
				still[a.ID] = where
			}
		}
		pending = still
	}
	if len(pending) > 0 {
		k.t.Logf("holds still in progress %s after the last fault: %v", timeout, slices.Sorted(maps.Values(pending)))
	}
}

// holdsAt counts the campaign's attempts that were held at moment at, as podorder sees a hold:
// created with its hook, its process not yet started, not ended.
func holdsAt(attempts []seenAttempt, lines map[string][]string, at time.Time) int {
	n := 0
	for _, a := range attempts {
		if a.Namespace != "default" || !a.Hooked || a.Created.After(at) || (!a.Finished.IsZero() && a.Finished.Before(at)) {
			continue
		}
		started := false
		for _, l := range lines[a.ID] {
			if ev, err := harness.ParseWorkloadEvent(l); err == nil && ev.Kind == "START" && !ev.At.After(at) {
				started = true
			}
		}
		if !started {
			n++
		}
	}
	return n
}

func TestChurnOnARealKubelet(t *testing.T) {
	nPods := envInt("PODORDER_SOAK_KUBE_PODS", 8)
	seed := uint64(time.Now().UnixNano())
	if s, err := strconv.ParseUint(os.Getenv("PODORDER_SOAK_SEED"), 10, 64); err == nil {
		seed = s
	}
	t.Logf("kubelet churn: %d pods (Deployments and Jobs), seed %d (PODORDER_SOAK_SEED to replay)", nPods, seed)
	began := time.Now()

	repo, err := filepath.Abs("../..")
	require.NoError(t, err)
	// The images build while the cluster starts: both are mostly waiting.
	built := make(chan error, 1)
	var im images
	go func() {
		var err error
		im, err = buildImages(t, repo)
		built <- err
	}()
	env := harness.Start(t, harness.Options{NRISocket: nriSocket})
	env.ImportWorkloadImages(t)
	shareNetnsMounts(t)
	c := cluster.Start(t, env, cluster.Options{})
	b := &bed{env: env, c: c}
	require.NoError(t, <-built)
	if im.fallback != "" {
		t.Logf("PREVIOUS RELEASE NOT AVAILABLE: %s", im.fallback)
	}
	for _, tar := range []string{im.previous, im.current} {
		out, err := env.Ctr("-n", harness.Namespace, "images", "import", tar)
		require.NoError(t, err, out)
	}
	rec := startRecorder(t, env.Runtime, filepath.Join(c.Dir, "kept-logs"))
	k := &kubeChurn{t: t, b: b, rec: rec, rng: rand.New(rand.NewPCG(seed, seed>>1)), began: began}

	// The previous release, deployed as an operator had it: its own manifests, its image.
	b.apiHost, b.apiPort = apiAddress(t, c)
	// Debug logs, in both releases: podorder's record of each exit is at debug level, and the
	// checker holds a release to it (an exit recorded before the release is no NRI lag).
	previous := b.writeOverlay(t, im.previousManifests, "previous", "PODORDER_LOG_LEVEL", "debug")
	current := b.writeOverlay(t, filepath.Join(repo, "daemonset", "kubernetes-1.36"), "test", "PODORDER_LOG_LEVEL", "debug")
	c.Kubectl(t, "apply", "-k", previous)
	c.WaitFor(t, "podorder-system", "daemonset/podorder", "jsonpath={.status.numberReady}=1", 2*time.Minute)
	rec.waitSynchronized(t, time.Time{}, time.Minute)
	sampler := startPeakSampler()

	workloads := map[string]*workload{}
	var ws []*workload
	for i := range nPods {
		kind := "Deployment"
		if i%4 == 3 {
			kind = "Job"
		}
		w := newWorkload(k.rng, fmt.Sprintf("kc%d", i), kind)
		workloads[w.name] = w
		ws = append(ws, w)
	}
	half := len(ws) / 2

	// Wave A under the previous release; the upgrade lands while its holds are in progress.
	holding := rec.count("holding")
	k.apply(ws[:half])
	rec.waitCount(t, "holding", holding, 2*time.Minute)
	k.waitHeld(2 * time.Minute)
	k.podorderDown("DaemonSet rollout from the previous release", func() { c.Kubectl(t, "apply", "-k", current) })
	c.WaitFor(t, "podorder-system", "daemonset/podorder", "jsonpath={.status.updatedNumberScheduled}=1", 2*time.Minute)
	// This release's first daemon, holding wave A's pods (the previous release names its
	// process otherwise).
	var upgraded daemonStats
	require.Eventually(t, func() (ok bool) { upgraded, ok = sampleDaemon(); return ok }, time.Minute, 100*time.Millisecond, "this release's daemon runs")

	// Wave B under this release: podorder's pod deleted at once, then Deployments rolled and held
	// pods deleted, each while holds are in progress.
	holding = rec.count("holding")
	k.apply(ws[half:])
	rec.waitCount(t, "holding", holding, 2*time.Minute)
	k.waitHeld(2 * time.Minute)
	k.podorderDown("podorder pod deleted with grace 0", func() {
		name := c.Kubectl(t, "get", "pods", "-n", "podorder-system", "-o", "jsonpath={.items[0].metadata.name}")
		c.Kubectl(t, "delete", "pod", "-n", "podorder-system", name, "--grace-period=0", "--force", "--wait=false")
	})
	holding = rec.count("holding")
	var rolled []string
	for _, w := range ws {
		if w.kind == "Deployment" && k.rng.IntN(2) == 0 {
			rolled = append(rolled, w.name)
		}
	}
	if len(rolled) == 0 && ws[0].kind == "Deployment" {
		rolled = []string{ws[0].name}
	}
	// Crashers are held anew at each restart; a fresh pod is held at once.
	for i, name := range rolled {
		if i == 0 {
			rec.waitCount(t, "holding", holding, 2*time.Minute)
			k.waitHeld(2 * time.Minute)
		}
		k.faults = append(k.faults, fault{kind: "Deployment rollout", at: time.Now()})
		c.Kubectl(t, "patch", "deployment", name, "-n", "default", "-p", `{"spec":{"template":{"metadata":{"annotations":{"churn.podorder.dev/rev":"2"}}}}}`)
	}
	k.waitHeld(2 * time.Minute)
	held := k.heldPods()
	k.rng.Shuffle(len(held), func(i, j int) { held[i], held[j] = held[j], held[i] })
	for _, name := range held[:min(len(held), max(1, nPods/4))] {
		k.faults = append(k.faults, fault{kind: "pod deleted mid-hold", at: time.Now()})
		c.Kubectl(t, "delete", "pod", name, "-n", "default", "--wait=false")
	}
	for _, name := range rolled {
		c.WaitFor(t, "default", "deployment/"+name, "jsonpath={.status.updatedReplicas}=1", 2*time.Minute)
	}
	k.settle(3 * time.Minute)

	end := time.Now()
	rec.close()
	// Gone before the cluster's teardown, which would wait on the Jobs' pods' tracking finalizers.
	c.Kubectl(t, "delete", "deployments,jobs", "-n", "default", "--all", "--wait=true", "--timeout=120s")
	_, _ = c.KubectlErr("wait", "pods", "-n", "default", "--all", "--for=delete", "--timeout=120s") // none left is no error here
	peak := sampler.end()
	after, _ := sampleDaemon()
	t.Logf("RESULT kubelet churn daemon (the shipped DaemonSet, API on): this release's first, holding wave A's pods after the upgrade, %s; peak over this release's daemons %s; the last once the workloads were gone %s",
		upgraded, peak, after)
	attempts := rec.attempts()
	lines := map[string][]string{}
	for _, a := range attempts {
		if a.Namespace == "default" {
			lines[a.ID] = a.lines()
		}
	}
	recs := recordsOf(rec.daemonRecords(), end)
	cfg := kubeletCheckerConfig(end)
	for _, f := range k.faults {
		if !f.outage.From.IsZero() {
			cfg.Kills = append(cfg.Kills, f.outage)
			cfg.Outages = append(cfg.Outages, f.outage)
		}
	}
	pods := kubeletEvidence(workloads, attempts, lines, recs, end)
	report := checker.Check(cfg, pods)

	containers, nAttempts, removed := 0, 0, 0
	var wakes, exitLags []time.Duration
	for _, p := range pods {
		containers += len(p.Containers)
		for _, c := range p.Containers {
			nAttempts += len(c.Attempts)
			for _, a := range c.Attempts {
				if !a.Exit.IsZero() && !a.ExitRecorded.IsZero() {
					exitLags = append(exitLags, a.ExitRecorded.Sub(a.Exit))
				}
				if !a.Start.IsZero() && !a.Released.IsZero() && len(c.Deps) > 0 {
					wakes = append(wakes, a.Start.Sub(a.Released))
				}
			}
		}
	}
	for _, a := range attempts {
		if a.Removed && lines[a.ID] != nil {
			removed++
		}
	}
	t.Logf("RESULT kubelet churn: %d workloads, %d pods, %d containers, %d attempts, %d podorder daemons, in %s; %s",
		nPods, len(pods), containers, nAttempts, len(rec.podorderAttempts()), time.Since(began).Round(time.Second), report.Result())
	// What the upgrade carried over: holds begun under the previous release (their hook is that
	// release's) that a later daemon released.
	carried := 0
	if daemons := rec.daemonRecords(); len(k.faults) > 0 && len(daemons) > 1 {
		upgrade := k.faults[0].at
		created := map[string]time.Time{}
		for _, a := range attempts {
			created[a.ID] = a.Created
		}
		for _, d := range daemons[1:] {
			for _, r := range d {
				if at, ok := created[r.ContainerID]; ok && r.Msg == "released" && r.Reason == "" && at.Before(upgrade) {
					carried++
				}
			}
		}
	}
	t.Logf("RESULT kubelet churn upgrade: %d holds begun under the previous release were released by this release's daemon", carried)
	for _, f := range k.faults {
		n := holdsAt(attempts, lines, f.at)
		what := fmt.Sprintf("%s at +%s, %d holds in progress", f.kind, f.at.Sub(began).Round(100*time.Millisecond), n)
		if n == 0 {
			t.Errorf("the fault %q at +%s landed on no hold in progress", f.kind, f.at.Sub(began).Round(100*time.Millisecond))
		}
		if !f.outage.From.IsZero() {
			what += fmt.Sprintf(", podorder out for %s", f.outage.To.Sub(f.outage.From).Round(100*time.Millisecond))
		}
		t.Logf("RESULT kubelet churn fault: %s", what)
	}
	t.Logf("RESULT kubelet churn delays: NRI exit lag (EXIT line → podorder's record) %s, tolerance %s; release record → first line %s, bound %s; %d attempts removed by kubelet before seen exited (end inferred within %s)",
		durations(exitLags), exitTolerance, durations(wakes), checker.DefaultWakeBound, removed, recordEvery)
	if im.fallback != "" {
		t.Logf("RESULT kubelet churn: the previous release was NOT tested: %s", im.fallback)
	}
	for _, l := range report.Breakdown() {
		t.Logf("  %s", l)
	}
	rec.mu.Lock()
	for _, e := range rec.errs {
		t.Errorf("recorder: %s", e)
	}
	rec.mu.Unlock()
	for _, f := range report.Of(checker.Violation) {
		t.Errorf("violation: %s: %s", f.Where, strings.Join(f.Why, "; "))
		for _, p := range pods {
			if strings.Contains(f.Where, "pod "+p.Name+" ") {
				t.Logf("the pod's attempts, from the test's start (+s):\n%s", podTimeline(p, began))
			}
		}
	}
	if len(report.Of(checker.Violation)) > 0 {
		for _, w := range cfg.Outages {
			t.Logf("podorder was out from +%.3f to +%.3f (%s)", w.From.Sub(began).Seconds(), w.To.Sub(began).Seconds(), w.What)
		}
	}
	if t.Failed() {
		keepEvidence(t, rec.keep, filepath.Join(repo, "_output", "kubechurn-evidence"))
	}
	require.NotZero(t, report.Counts[checker.Checked], "the campaign checked holds")
}

// podTimeline lists a pod's attempts with what each showed, in seconds from began: what a reader
// of a violation needs first.
func podTimeline(p checker.Pod, began time.Time) string {
	since := func(at time.Time) string {
		if at.IsZero() {
			return "-"
		}
		return fmt.Sprintf("%.3f", at.Sub(began).Seconds())
	}
	var sb strings.Builder
	for _, c := range p.Containers {
		fmt.Fprintf(&sb, "  %s after %v:\n", c.Name, c.Deps)
		for _, a := range c.Attempts {
			fmt.Fprintf(&sb, "    %.12s created %s started %s hooked %v released %s START %s LISTEN %s EXIT %s (%d) finished %s (%d) %s\n",
				a.ID, since(a.CreateAt), since(a.StartAt), a.Hooked, since(a.Released), since(a.Start), since(a.Listen),
				since(a.Exit), a.ExitCode, since(a.Finished), a.FinishedCode, a.Failed)
		}
	}
	return sb.String()
}

// keepEvidence copies the kept logs (every attempt's and every podorder daemon's) out of the
// cluster's directory, which its teardown removes, for the reader of a failure.
func keepEvidence(t *testing.T, from, to string) {
	_ = os.RemoveAll(to)
	if out, err := exec.Command("cp", "-a", from, to).CombinedOutput(); err != nil {
		t.Logf("keep the evidence: %v: %s", err, out)
		return
	}
	t.Logf("the kept logs are in %s (<container id>.log)", to)
}

// durations describes delays: how many, median, 99th percentile and maximum.
func durations(ds []time.Duration) string {
	if len(ds) == 0 {
		return "none seen"
	}
	return fmt.Sprintf("%d, p50 %s, p99 %s, max %s", len(ds), quantile(ds, 0.5), quantile(ds, 0.99), slices.Max(ds).Round(time.Millisecond))
}

func envInt(name string, def int) int {
	if v, err := strconv.Atoi(os.Getenv(name)); err == nil && v > 0 {
		return v
	}
	return def
}

// Package kubernetes runs podorder the way users do, on a real one-node Kubernetes: etcd,
// kube-apiserver, kube-controller-manager, kube-scheduler and kubelet (v1.37) on a private containerd
// with NRI and runc 1.3.6; podorder's own OCI image built without a Docker engine and imported;
// `kubectl apply -k` of daemonset/ as shipped, then the Helm chart; pods created with kubectl, and
// examples/ applied as they are, on a busybox:1.37 built from Debian's static busybox and imported.
package kubernetes

import (
	"fmt"
	"maps"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	podorderimage "github.com/podorder/podorder/build/image"
	"github.com/podorder/podorder/hooks/tombstone"
	"github.com/podorder/podorder/test/cluster"
	"github.com/podorder/podorder/test/harness"
	"github.com/podorder/podorder/test/stats"
)

// PodorderImage is the image the tests build from the Dockerfile (build/image) and deploy.
const PodorderImage = "registry.local/podorder/podorder:test"

// storeDir is the tombstone store of the shipped DaemonSet, on the host.
const storeDir = "/run/podorder"

// nriSocket is a node's NRI socket, where the shipped DaemonSet looks for it.
const nriSocket = "/var/run/nri/nri.sock"

// bed is the one cluster all scenarios share: a cluster owns machine-wide state (sysctls, iptables,
// the pod subnet), so only one can run at a time, and starting it is the slow part.
type bed struct {
	env *harness.Env
	c   *cluster.Cluster
	// overlay is the kustomize overlay podorder was applied with; apiHost and apiPort are where
	// the API server is, for the Helm install.
	overlay, apiHost, apiPort string
}

func setup(t *testing.T) *bed {
	t.Helper()
	// The cluster's containerd serves NRI where a node's does, so that podorder runs as shipped.
	env := harness.Start(t, harness.Options{NRISocket: nriSocket})
	env.ImportWorkloadImages(t)
	env.ImportBusybox(t)
	shareNetnsMounts(t)
	c := cluster.Start(t, env, cluster.Options{})
	b := &bed{env: env, c: c}
	b.deployPodorder(t)
	return b
}

// deployPodorder builds podorder's image from the Dockerfile with BuildKit (build/image, what `make
// image` runs), imports it, and applies daemonset/kubernetes-1.36/ as shipped (daemonset/ and the
// MutatingAdmissionPolicies a 1.36 cluster serves), through an overlay that changes only the image's
// tag and the API server's address.
func (b *bed) deployPodorder(t *testing.T) {
	t.Helper()
	repo, err := filepath.Abs("../..")
	require.NoError(t, err)
	tar, err := podorderimage.Build(t.Context(), repo, t.TempDir(), PodorderImage, podorderimage.CachedTools())
	require.NoError(t, err)
	out, err := b.env.Ctr("-n", harness.Namespace, "images", "import", tar)
	require.NoError(t, err, out)

	b.apiHost, b.apiPort = apiAddress(t, b.c)
	b.overlay = b.writeOverlay(t, filepath.Join(repo, "daemonset", "kubernetes-1.36"), "test")
	b.c.Kubectl(t, "apply", "-k", b.overlay)
	b.c.WaitFor(t, "podorder-system", "daemonset/podorder", "jsonpath={.status.numberReady}=1", 2*time.Minute)
	t.Cleanup(func() {
		if t.Failed() {
			out, _ := b.c.KubectlErr("logs", "-n", "podorder-system", "ds/podorder", "--tail=80")
			t.Logf("podorder logs:\n%s", out)
		}
	})
}

// apiAddress is where the cluster's API server listens, from its admin kubeconfig.
func apiAddress(t *testing.T, c *cluster.Cluster) (host, port string) {
	t.Helper()
	kubeconfig, err := os.ReadFile(c.Kubeconfig)
	require.NoError(t, err)
	m := regexp.MustCompile(`server: "?https://([0-9.]+):([0-9]+)`).FindSubmatch(kubeconfig)
	require.NotNil(t, m, "API server address in %s", c.Kubeconfig)
	return string(m[1]), string(m[2])
}

// writeOverlay writes a kustomize overlay of the manifests in base that changes only podorder's
// image tag and the API server's address, and returns its directory. This cluster has no
// kube-proxy, so the kubernetes Service IP leads nowhere: the overlay points podorder's
// in-cluster config at the API server itself. env adds environment variables to the daemon, as
// name, value pairs.
func (b *bed) writeOverlay(t *testing.T, base, tag string, env ...string) string {
	t.Helper()
	overlay := t.TempDir()
	// kustomize takes a base only by relative path.
	rel, err := filepath.Rel(overlay, base)
	require.NoError(t, err)
	kustomization := fmt.Sprintf(`apiVersion: kustomize.config.k8s.io/v1beta1
kind: Kustomization
resources:
  - %[1]s
images:
  - name: registry.local/podorder/podorder
    newTag: %[4]s
patches:
  - target: {kind: DaemonSet, name: podorder}
    patch: |-
      - {op: add, path: /spec/template/spec/containers/0/env/-, value: {name: KUBERNETES_SERVICE_HOST, value: "%[2]s"}}
      - {op: add, path: /spec/template/spec/containers/0/env/-, value: {name: KUBERNETES_SERVICE_PORT, value: "%[3]s"}}
`, rel, b.apiHost, b.apiPort, tag)
	for i := 0; i+1 < len(env); i += 2 {
		kustomization += fmt.Sprintf("      - {op: add, path: /spec/template/spec/containers/0/env/-, value: {name: %s, value: %q}}\n", env[i], env[i+1])
	}
	require.NoError(t, os.WriteFile(filepath.Join(overlay, "kustomization.yaml"), []byte(kustomization), 0o644))
	return overlay
}

// shareNetnsMounts makes /var/run/netns a shared mount, as `ip netns` does and as systemd hosts have
// it anyway: the DaemonSet mounts it with HostToContainer propagation so that podorder sees the
// network namespaces of pods created after it started, and the runtime refuses that propagation
// from a private mount (this VM's root is private).
func shareNetnsMounts(t *testing.T) {
	t.Helper()
	const dir = "/var/run/netns"
	require.NoError(t, os.MkdirAll(dir, 0o755))
	if exec.Command("mountpoint", "-q", dir).Run() == nil {
		return
	}
	for _, args := range [][]string{{"--bind", dir, dir}, {"--make-shared", dir}} {
		out, err := exec.Command("mount", args...).CombinedOutput()
		require.NoError(t, err, "mount %v: %s", args, out)
	}
	t.Cleanup(func() { _ = exec.Command("umount", "-l", dir).Run() })
}

// pod is a manifest with containers of the workload image.
type pod struct {
	Name        string
	Labels      map[string]string
	Annotations map[string]string
	Containers  []container
}

type container struct {
	Name  string
	Args  []string
	Extra string // YAML lines appended to the container, indented by 4 spaces
}

func (b *bed) apply(t *testing.T, p pod) {
	t.Helper()
	b.c.ApplyYAML(t, manifest(p, ""))
}

// manifest renders p; inits is an initContainers block from initContainers, or "".
func manifest(p pod, inits string) string {
	var sb strings.Builder
	fmt.Fprintf(&sb, "apiVersion: v1\nkind: Pod\nmetadata:\n  name: %s\n  namespace: default\n", p.Name)
	writeMap(&sb, "labels", p.Labels)
	writeMap(&sb, "annotations", p.Annotations)
	fmt.Fprintf(&sb, "spec:\n  terminationGracePeriodSeconds: 2\n%s  containers:\n", inits)
	writeContainers(&sb, p.Containers)
	return sb.String()
}

// initContainers renders an initContainers block for manifest.
func initContainers(cs []container) string {
	var sb strings.Builder
	sb.WriteString("  initContainers:\n")
	writeContainers(&sb, cs)
	return sb.String()
}

func writeContainers(sb *strings.Builder, cs []container) {
	for _, c := range cs {
		args := `"--name", "` + c.Name + `"`
		for _, a := range c.Args {
			args += `, "` + a + `"`
		}
		fmt.Fprintf(sb, "  - name: %s\n    image: %s\n    imagePullPolicy: Never\n    args: [%s]\n", c.Name, harness.WorkloadImage, args)
		if c.Extra != "" {
			for _, line := range strings.Split(strings.TrimRight(c.Extra, "\n"), "\n") {
				sb.WriteString("    " + line + "\n")
			}
		}
	}
}

func writeMap(sb *strings.Builder, key string, m map[string]string) {
	if len(m) == 0 {
		return
	}
	fmt.Fprintf(sb, "  %s:\n", key)
	for k, v := range m {
		fmt.Fprintf(sb, "    %s: %q\n", k, v)
	}
}

// tcpReady is a readinessProbe on a port, checked every second as users commonly set it.
func tcpReady(port int) string {
	return fmt.Sprintf("readinessProbe:\n  tcpSocket:\n    port: %d\n  periodSeconds: 1\n", port)
}

// event returns the first workload line of kind (START, LISTEN) that a container printed.
func (b *bed) event(t *testing.T, podName, container, kind string) harness.WorkloadEvent {
	t.Helper()
	return b.logEvent(t, podName, container, kind, false)
}

func (b *bed) reasons(t *testing.T, podName string) string {
	var out []string
	for _, e := range b.c.Events(t, "default", podName) {
		out = append(out, e.Reason+": "+e.Message)
	}
	return strings.Join(out, "\n")
}

func (b *bed) restarts(t *testing.T, podName string, index int) string {
	return strings.TrimSpace(b.c.Kubectl(t, "get", "pod", podName, "-n", "default", "-o",
		fmt.Sprintf("jsonpath={.status.containerStatuses[%d].restartCount}", index)))
}

// TestOnARealKubelet runs every scenario on one cluster, in order.
func TestOnARealKubelet(t *testing.T) {
	b := setup(t)

	t.Run("podorder evaluates a dependency's own readinessProbe and releases long before kubelet's verdict", func(t *testing.T) {
		// kubelet probes db every 10 s: its verdict comes ~8 s after db listens. podorder runs the
		// same tcpSocket check from inside the pod at its own period.
		slow := "readinessProbe:\n  tcpSocket:\n    port: 5432\n  periodSeconds: 10\n"
		b.apply(t, pod{Name: "reverse", Labels: map[string]string{"podorder.dev/after.app": "db"}, Containers: []container{
			{Name: "app", Args: []string{"--port", "8080"}, Extra: tcpReady(8080)},
			{Name: "db", Args: []string{"--listen-after", "2s", "--port", "5432"}, Extra: slow},
		}})
		// Before the pod is Ready: kubelet's verdict on db is seconds away.
		appStart := b.waitEvent(t, "reverse", "app", "START", time.Minute).At
		dbListen := b.event(t, "reverse", "db", "LISTEN").At
		assert.True(t, appStart.After(dbListen), "app started %s before db listened", dbListen.Sub(appStart))
		// kubelet's verdict waits for its next probe, up to 10 s after db listens; podorder's probe
		// runs every 100 ms at most.
		assert.Less(t, appStart.Sub(dbListen), time.Second, "released long before kubelet's verdict")
		uid := b.c.Kubectl(t, "get", "pod", "reverse", "-o", "jsonpath={.metadata.uid}")
		db, err := tombstone.Store{Root: storeDir}.Read(uid, "db")
		require.NoError(t, err)
		require.NotNil(t, db.ProbeReadyAt, "podorder ran db's readinessProbe itself")
		require.NotNil(t, db.ReadyAt)
		assert.Equal(t, *db.ProbeReadyAt, *db.ReadyAt, "db was ready on podorder's evaluation, not kubelet's")
		b.c.WaitPodReady(t, "default", "reverse", 2*time.Minute)
		assert.Equal(t, "0", b.restarts(t, "reverse", 0), "no CrashLoopBackOff")
		ev := b.reasons(t, "reverse")
		assert.Contains(t, ev, "PodorderWaiting: container app waits for db (ready)")
		assert.Contains(t, ev, "PodorderReleased: container app released ")
		t.Logf("RESULT podorder's evaluation of a readinessProbe: db port open → app first line %s (kubelet's period 10s)", appStart.Sub(dbListen))
	})

	t.Run("podorder.dev/readiness: kubelet waits for kubelet's own verdict", func(t *testing.T) {
		b.apply(t, pod{Name: "by-kubelet", Labels: map[string]string{"podorder.dev/after.app": "db", "podorder.dev/readiness.db": "kubelet"}, Containers: []container{
			{Name: "app", Args: []string{"--port", "8080"}, Extra: tcpReady(8080)},
			{Name: "db", Args: []string{"--listen-after", "1s", "--port", "5432"}, Extra: tcpReady(5432)},
		}})
		b.c.WaitPodReady(t, "default", "by-kubelet", 2*time.Minute)
		appStart := b.event(t, "by-kubelet", "app", "START").At
		uid := b.c.Kubectl(t, "get", "pod", "by-kubelet", "-o", "jsonpath={.metadata.uid}")
		db, err := tombstone.Store{Root: storeDir}.Read(uid, "db")
		require.NoError(t, err)
		assert.Nil(t, db.ProbeReadyAt, "no node-local probe")
		require.NotNil(t, db.KubeletReadyAt, "podorder recorded kubelet's readiness of db")
		assert.True(t, appStart.After(*db.KubeletReadyAt), "app started %s before kubelet called db ready", db.KubeletReadyAt.Sub(appStart))
	})

	t.Run("readiness notify releases on the dependency's own READY=1, not on its readinessProbe", func(t *testing.T) {
		// db listens at once and has a 1 s readinessProbe that passes long before its READY=1: only
		// the datagram on the NOTIFY_SOCKET podorder gave it may release app.
		b.apply(t, pod{Name: "notified", Labels: map[string]string{"podorder.dev/after.app": "db", "podorder.dev/readiness.db": "notify"}, Containers: []container{
			{Name: "app", Args: []string{"--port", "8080"}, Extra: tcpReady(8080)},
			{Name: "db", Args: []string{"--port", "5432", "--notify-after", "3s"}, Extra: tcpReady(5432)},
		}})
		appStart := b.waitEvent(t, "notified", "app", "START", 2*time.Minute).At
		ready := b.event(t, "notified", "db", "READY").At
		dbListen := b.event(t, "notified", "db", "LISTEN").At
		assert.True(t, appStart.After(ready), "app started %s before db's READY=1", ready.Sub(appStart))
		assert.Greater(t, ready.Sub(dbListen), 2*time.Second, "db's port was open long before: its probe did not decide")
		assert.Less(t, appStart.Sub(ready), time.Second, "released by the datagram")
		b.c.WaitPodReady(t, "default", "notified", 2*time.Minute)
		assert.Contains(t, b.reasons(t, "notified"), "PodorderReleased: container app released ")
		t.Logf("RESULT readiness notify on a real kubelet: db READY=1 → app first line %s", appStart.Sub(ready))
	})

	t.Run("three-level chain starts in order", func(t *testing.T) {
		// c also has podorder's own probe, run inside the pod's network namespace: ready needs both.
		b.apply(t, pod{Name: "chain", Labels: map[string]string{"podorder.dev/after.a": "b", "podorder.dev/after.b": "c"},
			Annotations: map[string]string{"podorder.dev/probe.c": "tcp:8082"}, Containers: []container{
				{Name: "a", Args: []string{"--port", "8080"}, Extra: tcpReady(8080)},
				{Name: "b", Args: []string{"--listen-after", "500ms", "--port", "8081"}, Extra: tcpReady(8081)},
				{Name: "c", Args: []string{"--listen-after", "500ms", "--port", "8082"}, Extra: tcpReady(8082)},
			}})
		b.c.WaitPodReady(t, "default", "chain", 2*time.Minute)
		a, bStart, c := b.event(t, "chain", "a", "START").At, b.event(t, "chain", "b", "START").At, b.event(t, "chain", "c", "START").At
		assert.True(t, bStart.After(b.event(t, "chain", "c", "LISTEN").At))
		assert.True(t, a.After(b.event(t, "chain", "b", "LISTEN").At))
		assert.True(t, c.Before(bStart) && bStart.Before(a))
	})

	t.Run("dependency on another pod created later", func(t *testing.T) {
		b.apply(t, pod{Name: "second", Annotations: map[string]string{"podorder.dev/after.app": "pod(app=first):ready"}, Containers: []container{
			{Name: "app", Args: []string{"--port", "8080"}, Extra: tcpReady(8080)},
		}})
		b.c.WaitFor(t, "default", "pod/second", "jsonpath={.status.phase}=Running", time.Minute)
		b.apply(t, pod{Name: "first", Labels: map[string]string{"app": "first"}, Containers: []container{
			{Name: "db", Args: []string{"--listen-after", "1s", "--port", "5432"}, Extra: tcpReady(5432)},
		}})
		b.c.WaitPodReady(t, "default", "second", 2*time.Minute)
		appStart, dbListen := b.event(t, "second", "app", "START").At, b.event(t, "first", "db", "LISTEN").At
		assert.True(t, appStart.After(dbListen), "second started before first was ready")
		assert.Contains(t, b.reasons(t, "second"), "pod(app=first):ready met")
	})

	t.Run("a long hold survives a livenessProbe behind a startupProbe", func(t *testing.T) {
		probes := "startupProbe:\n  tcpSocket:\n    port: 8080\n  periodSeconds: 1\n  failureThreshold: 60\n" +
			"livenessProbe:\n  tcpSocket:\n    port: 8080\n  periodSeconds: 1\n  failureThreshold: 2\n"
		b.apply(t, pod{Name: "liveness", Labels: map[string]string{"podorder.dev/after.app": "db"}, Containers: []container{
			{Name: "app", Args: []string{"--port", "8080"}, Extra: probes + tcpReady(8080)},
			{Name: "db", Args: []string{"--listen-after", "6s", "--port", "5432"}, Extra: tcpReady(5432)},
		}})
		b.c.WaitPodReady(t, "default", "liveness", 2*time.Minute)
		appStart, dbListen := b.event(t, "liveness", "app", "START").At, b.event(t, "liveness", "db", "LISTEN").At
		assert.True(t, appStart.After(dbListen), "the hold happened: app started %s before db listened", dbListen.Sub(appStart))
		assert.Contains(t, b.reasons(t, "liveness"), "PodorderReleased: container app released ")
		assert.Equal(t, "0", b.restarts(t, "liveness", 0), "held 6 s with a 2 s liveness budget, not killed")
	})

	t.Run("dependency that never becomes ready times out with an Event and the dependent restarts", func(t *testing.T) {
		b.apply(t, pod{Name: "never", Labels: map[string]string{"podorder.dev/after.app": "db", "podorder.dev/timeout.app": "3s"}, Containers: []container{
			{Name: "app"},
			{Name: "db", Extra: tcpReady(5432)},
		}})
		b.c.WaitFor(t, "default", "pod/never", "jsonpath={.status.containerStatuses[0].restartCount}=1", 2*time.Minute)
		ev := b.reasons(t, "never")
		assert.Contains(t, ev, "PodorderTimeout: container app was not released within 3s: db is running but not ready")
		b.c.Kubectl(t, "delete", "pod", "never", "--wait=false")
	})

	t.Run("invalid declaration is a CreateContainerError naming the problem", func(t *testing.T) {
		b.apply(t, pod{Name: "cycle", Labels: map[string]string{"podorder.dev/after.app": "db", "podorder.dev/after.db": "app"}, Containers: []container{
			{Name: "app"}, {Name: "db"},
		}})
		b.c.WaitFor(t, "default", "pod/cycle", "jsonpath={.status.containerStatuses[0].state.waiting.reason}=CreateContainerError", 2*time.Minute)
		msg := b.c.Kubectl(t, "get", "pod", "cycle", "-o", "jsonpath={.status.containerStatuses[0].state.waiting.message}")
		assert.Contains(t, msg, "podorder: pod default/cycle, container app: dependency cycle app → db → app")
		assert.Contains(t, b.reasons(t, "cycle"), "PodorderRejected")
		b.c.Kubectl(t, "delete", "pod", "cycle", "--wait=false")
	})

	t.Run("pod without podorder keys starts as without podorder", func(t *testing.T) {
		b.apply(t, pod{Name: "plain", Containers: []container{{Name: "app", Args: []string{"--port", "8080"}, Extra: tcpReady(8080)}}})
		b.c.WaitPodReady(t, "default", "plain", time.Minute)
		id := b.c.Kubectl(t, "get", "pod", "plain", "-o", "jsonpath={.status.containerStatuses[0].containerID}")
		status, err := b.env.Runtime.ContainerStatus(t.Context(), containerStatusRequest(strings.TrimPrefix(id, "containerd://")))
		require.NoError(t, err)
		assert.NotContains(t, status.Info["info"], "/.podorder", "no podorder mount or hook")
		assert.NotContains(t, b.reasons(t, "plain"), "Podorder")
		assert.Empty(t, b.c.Kubectl(t, "get", "pod", "plain", "-o", "jsonpath={.spec.containers[*].lifecycle}"), "no preStop added")
		assert.Empty(t, b.c.Kubectl(t, "get", "pod", "plain", "-o", "jsonpath={.spec.readinessGates}"), "no readinessGate added")
		assert.NotContains(t, b.c.Kubectl(t, "get", "pod", "plain", "-o", "jsonpath={.status.conditions[*].type}"), "podorder.dev", "no podorder condition")
	})

	lifecycleScenarios(t, b)
	readinessScenarios(t, b)
	examplesScenario(t, b)
	kubectlPluginScenario(t, b)

	t.Run("podorder's own pod deleted while a container is held is recreated and releases it", func(t *testing.T) {
		b.apply(t, pod{Name: "orphan", Labels: map[string]string{"podorder.dev/after.app": "db"}, Containers: []container{
			{Name: "app", Args: []string{"--port", "8080"}, Extra: tcpReady(8080)},
			{Name: "db", Args: []string{"--listen-on", "USR1", "--port", "5432"}, Extra: tcpReady(5432)},
		}})
		b.c.WaitFor(t, "default", "pod/orphan", "jsonpath={.status.containerStatuses[0].started}=true", time.Minute)
		old := b.c.Kubectl(t, "get", "pods", "-n", "podorder-system", "-o", "jsonpath={.items[0].metadata.name}")
		b.c.Kubectl(t, "delete", "pod", "-n", "podorder-system", old, "--wait=true")
		b.c.WaitFor(t, "podorder-system", "daemonset/podorder", "jsonpath={.status.numberReady}=1", 2*time.Minute)
		// db gets ready only now, however long the above took: app is released by the new pod.
		b.listenNow(t, "orphan", "db", 0)
		b.c.WaitPodReady(t, "default", "orphan", 2*time.Minute)
		assert.True(t, b.event(t, "orphan", "app", "START").At.After(b.event(t, "orphan", "db", "LISTEN").At))
		assert.Equal(t, "0", b.restarts(t, "orphan", 0))
	})

	preflightScenario(t, b)
	helmScenario(t, b) // last: it replaces the kustomize install
}

func containerStatusRequest(id string) *runtimeapi.ContainerStatusRequest {
	return &runtimeapi.ContainerStatusRequest{ContainerId: id, Verbose: true}
}

// TestMeasureOnARealKubelet reports podorder's release latency on the real kubelet and, for a
// three-container pod whose order is web after api after db (each with a plain tcpSocket
// readinessProbe every 1 s, and each listening a random 0-1 s after its process starts, so that readiness lands at a random phase of kubelet's probe period),
// the time from `kubectl apply` to web serving (its own LISTEN line; web can only serve after the
// others) for: podorder with nothing but `after` labels (it evaluates the readinessProbes itself),
// podorder told to wait for kubelet's verdict (podorder.dev/readiness), native sidecars (db and api
// as init containers with restartPolicy Always and a startupProbe every 1 s), entrypoints that poll
// their dependency every 1 s, and the same pod without any ordering, the floor. The variants run
// interleaved, one pod at a time, each pod gone before the next, with the same delays in a round.
// `make bench` runs it (PODORDER_BENCH=1); PODORDER_BENCH_PODS sets the pods per variant (30).
func TestMeasureOnARealKubelet(t *testing.T) {
	if os.Getenv("PODORDER_BENCH") != "1" {
		t.Skip("set PODORDER_BENCH=1 (make bench) to measure")
	}
	runs := 30
	if n, err := strconv.Atoi(os.Getenv("PODORDER_BENCH_PODS")); err == nil && n > 0 {
		runs = n
	}
	b := setup(t)
	t.Run("daemon memory at node scale", func(t *testing.T) { measureMemoryAtNodeScale(t, b, 100) })
	t.Run("release latency", func(t *testing.T) { measureReleaseLatency(t, b, 60) })
	t.Run("3-level chain against native ordering", func(t *testing.T) { measureAgainstNativeOrdering(t, b, runs) })
}

// measureReleaseLatency reports, over 200 holds, the time from a dependency's port opening (its own
// LISTEN line) to its dependent's first line (START): pods of a five-container chain c4 after c3 …
// after c0, each with a plain tcpSocket readinessProbe that podorder evaluates, each listening a
// random 50-500 ms after its process starts. The chain is declared dependents first, so kubelet
// creates each dependent before its dependency; a link whose dependent was created only after its
// dependency listened (kubelet was slow to get to it) measures kubelet, not a release, and is
// counted apart. Five pods run at a time; every link is one hold.
func measureReleaseLatency(t *testing.T, b *bed, pods int) {
	const links, parallel = 5, 5
	store := tombstone.Store{Root: storeDir}
	var lat []time.Duration
	late := 0
	for first := 0; first < pods; first += parallel {
		var names []string
		for i := first; i < min(first+parallel, pods); i++ {
			name := fmt.Sprintf("lat-%d", i)
			labels := map[string]string{}
			var cs []container
			for k := links - 1; k >= 0; k-- {
				c := fmt.Sprintf("c%d", k)
				if k > 0 {
					labels["podorder.dev/after."+c] = fmt.Sprintf("c%d", k-1)
				}
				delay := 50*time.Millisecond + time.Duration(rand.Int64N(int64(450*time.Millisecond)))
				cs = append(cs, container{Name: c, Args: []string{"--listen-after", delay.String(), "--port", fmt.Sprint(8000 + k)}, Extra: tcpReady(8000 + k)})
			}
			b.apply(t, pod{Name: name, Labels: labels, Containers: cs})
			names = append(names, name)
		}
		for _, name := range names {
			b.c.WaitPodReady(t, "default", name, 2*time.Minute)
			uid := b.c.Kubectl(t, "get", "pod", name, "-o", "jsonpath={.metadata.uid}")
			for k := 1; k < links; k++ {
				listen := b.event(t, name, fmt.Sprintf("c%d", k-1), "LISTEN").At
				start := b.event(t, name, fmt.Sprintf("c%d", k), "START").At
				require.True(t, start.After(listen), "%s: c%d started before c%d listened", name, k, k-1)
				ts, err := store.Read(uid, fmt.Sprintf("c%d", k))
				require.NoError(t, err)
				if ts.CreatedAt == nil || !ts.CreatedAt.Before(listen) {
					late++
					continue
				}
				lat = append(lat, start.Sub(listen))
			}
		}
		b.c.Kubectl(t, append([]string{"delete", "pod", "--wait=true", "--timeout=120s"}, names...)...)
	}
	require.NotEmpty(t, lat)
	t.Logf("RESULT kubelet, release latency, dependency's port open → held dependent's first line, %d holds: median %s, p99 %s, max %s (goal: median ≤ 5ms); %d links whose dependent kubelet created after its dependency listened are not holds and not counted",
		len(lat), quantile(lat, 0.5), quantile(lat, 0.99), slices.Max(lat).Round(100*time.Microsecond), late)
}

func quantile(d []time.Duration, q float64) time.Duration {
	s := slices.Clone(d)
	slices.Sort(s)
	return s[int(q*float64(len(s)-1)+0.5)].Round(100 * time.Microsecond)
}

func measureAgainstNativeOrdering(t *testing.T, b *bed, runs int) {
	ready := tcpReady
	listen := func(port int, after time.Duration) []string {
		return []string{"--listen-after", after.String(), "--port", fmt.Sprint(port)}
	}
	type delays struct{ db, api, web time.Duration }
	chain := map[string]string{"podorder.dev/after.web": "api", "podorder.dev/after.api": "db"}
	variants := []struct {
		name string
		yaml func(name string, d delays) string
	}{
		{"podorder, plain readinessProbes", func(name string, d delays) string {
			return manifest(pod{Name: name, Labels: chain, Containers: []container{
				{Name: "web", Args: listen(8080, d.web), Extra: ready(8080)},
				{Name: "api", Args: listen(8081, d.api), Extra: ready(8081)},
				{Name: "db", Args: listen(5432, d.db), Extra: ready(5432)},
			}}, "")
		}},
		{"podorder, readiness from kubelet", func(name string, d delays) string {
			labels := maps.Clone(chain)
			labels["podorder.dev/readiness.api"], labels["podorder.dev/readiness.db"] = "kubelet", "kubelet"
			return manifest(pod{Name: name, Labels: labels, Containers: []container{
				{Name: "web", Args: listen(8080, d.web), Extra: ready(8080)},
				{Name: "api", Args: listen(8081, d.api), Extra: ready(8081)},
				{Name: "db", Args: listen(5432, d.db), Extra: ready(5432)},
			}}, "")
		}},
		{"native sidecars, startupProbe 1s", func(name string, d delays) string {
			startup := func(port int) string {
				return fmt.Sprintf("restartPolicy: Always\nstartupProbe:\n  tcpSocket:\n    port: %d\n  periodSeconds: 1\n  failureThreshold: 60\n", port) + ready(port)
			}
			return manifest(pod{Name: name, Containers: []container{{Name: "web", Args: listen(8080, d.web), Extra: ready(8080)}}},
				initContainers([]container{
					{Name: "db", Args: listen(5432, d.db), Extra: startup(5432)},
					{Name: "api", Args: listen(8081, d.api), Extra: startup(8081)},
				}))
		}},
		{"entrypoints polling every 1s", func(name string, d delays) string {
			return manifest(pod{Name: name, Containers: []container{
				{Name: "web", Args: append([]string{"--wait-tcp", "127.0.0.1:8081", "--wait-random-phase", "--wait-exec"}, listen(8080, d.web)...), Extra: ready(8080)},
				{Name: "api", Args: append([]string{"--wait-tcp", "127.0.0.1:5432", "--wait-random-phase", "--wait-exec"}, listen(8081, d.api)...), Extra: ready(8081)},
				{Name: "db", Args: listen(5432, d.db), Extra: ready(5432)},
			}}, "")
		}},
		{"no ordering (floor)", func(name string, d delays) string {
			return manifest(pod{Name: name, Containers: []container{
				{Name: "web", Args: listen(8080, d.web), Extra: ready(8080)},
				{Name: "api", Args: listen(8081, d.api), Extra: ready(8081)},
				{Name: "db", Args: listen(5432, d.db), Extra: ready(5432)},
			}}, "")
		}},
	}
	// Each round gives all variants the same delays and runs them in a random order, so that the
	// ratios are paired per round; the floor is measured in podorder's own pod of the round: its
	// db's LISTEN, plus api's and web's own time to listen, which no ordering can skip.
	serving := make([][]float64, len(variants)) // variant → round → seconds
	var floor []float64
	for i := range runs {
		// Uniform over one period of kubelet's probes: readiness lands at a random phase of it.
		jitter := func() time.Duration { return time.Duration(rand.Int64N(int64(time.Second))) }
		d := delays{db: jitter(), api: jitter(), web: jitter()}
		for _, j := range rand.Perm(len(variants)) {
			v := variants[j]
			name := fmt.Sprintf("m%d-v%d", i, j)
			began := time.Now()
			b.c.ApplyYAML(t, v.yaml(name, d))
			b.c.WaitPodReady(t, "default", name, 2*time.Minute)
			took := b.event(t, name, "web", "LISTEN").At.Sub(began)
			serving[j] = append(serving[j], took.Seconds())
			if j == 0 {
				floor = append(floor, (b.event(t, name, "db", "LISTEN").At.Sub(began) + d.api + d.web).Seconds())
			}
			b.c.Kubectl(t, "delete", "pod", name, "--wait=true", "--timeout=60s")
		}
	}
	podorder := serving[0]
	t.Logf("RESULT kubelet, pod created → web serving, 3-level chain, %d rounds of every variant in a random order:", runs)
	t.Logf("RESULT   %-40s %8s %8s  %s", "variant", "median", "max", "paired ratio to podorder, 95% bootstrap interval")
	for j, v := range variants {
		t.Logf("RESULT   %-40s %8s %8s  %s", v.name, secs(stats.Median(serving[j])), secs(stats.Quantile(serving[j], 1)), pairedRatio(serving[j], podorder))
	}
	t.Logf("RESULT   %-40s %8s %8s  podorder / floor: %s (goal ≤ 1.05)", "floor: podorder's db LISTEN + api's and web's own start",
		secs(stats.Median(floor)), secs(stats.Quantile(floor, 1)), pairedRatio(podorder, floor))
}

// pairedRatio is the median of a[i]/b[i] over the rounds with its 95% bootstrap interval.
func pairedRatio(a, b []float64) string {
	r := stats.Ratios(a, b)
	ci := stats.MedianCI(r, 2000, 1)
	return fmt.Sprintf("×%.2f [%.2f, %.2f]", stats.Median(r), ci.Lo, ci.Hi)
}

func secs(s float64) time.Duration {
	return time.Duration(s * float64(time.Second)).Round(10 * time.Millisecond)
}

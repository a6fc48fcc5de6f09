package explain

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

const shop = `apiVersion: apps/v1
kind: Deployment
metadata:
  name: shop
spec:
  template:
    metadata:
      labels:
        podorder.dev/after.web: api
        podorder.dev/after.api: db.migrate_completed
    spec:
      initContainers:
      - name: setup
        image: x
      containers:
      - name: web
        image: x
      - name: api
        image: x
      - name: migrate
        image: x
      - name: db
        image: x
---
apiVersion: v1
kind: Service
metadata:
  name: shop
`

func TestAPlanIsTheLayersOfTheDependencyGraph(t *testing.T) {
	ws, err := Read(strings.NewReader(shop), Options{})
	require.NoError(t, err)
	require.Len(t, ws, 1, "the Service is not a workload")
	w := ws[0]
	assert.Equal(t, "Deployment/shop", w.Name)
	assert.Equal(t, []string{"setup"}, w.Init)
	assert.Equal(t, [][]string{{"migrate", "db"}, {"api"}, {"web"}}, w.Layers)
	assert.Empty(t, w.Errors)
	var out bytes.Buffer
	require.NoError(t, Write(&out, ws))
	assert.Contains(t, out.String(), "    2. api after db (ready), migrate (completed)\n")
}

func TestProblemsArePrintedAndFailTheRun(t *testing.T) {
	tests := map[string]struct {
		manifest string
		want     string
		warning  bool
	}{
		"cycle": {
			manifest: "kind: Pod\nmetadata:\n  name: p\n  labels:\n    podorder.dev/after.a: b\n    podorder.dev/after.b: a\nspec:\n  containers:\n  - {name: a}\n  - {name: b}\n",
			want:     "error: containers a, b: dependency cycle a → b → a",
		},
		"unknown name": {
			manifest: "kind: Job\nmetadata:\n  name: j\nspec:\n  template:\n    metadata:\n      labels:\n        podorder.dev/after.main: dbx\n    spec:\n      containers:\n      - {name: main}\n      - {name: db}\n",
			want:     "error: container main: container main waits for dbx, which is not in the pod; containers are: main, db",
		},
		"init container waits for a regular one": {
			manifest: "kind: Pod\nmetadata:\n  name: p\n  labels:\n    podorder.dev/after.setup: app\nspec:\n  initContainers:\n  - {name: setup}\n  containers:\n  - {name: app}\n",
			want:     "error: container setup: deadlock setup → app → setup",
		},
		"label value over 63 characters": {
			manifest: "kind: Pod\nmetadata:\n  name: p\n  labels:\n    podorder.dev/after.app: " + strings.Repeat("a", 64) + "\nspec:\n  containers:\n  - {name: app}\n  - {name: " + strings.Repeat("a", 63) + "}\n",
			want:     "more than the 63 Kubernetes allows in a label: use the annotation form",
		},
		"livenessProbe without a startupProbe budget above the hold": {
			manifest: "kind: Pod\nmetadata:\n  name: p\n  labels:\n    podorder.dev/after.app: db\nspec:\n  containers:\n  - name: app\n    livenessProbe: {periodSeconds: 5, failureThreshold: 3}\n  - {name: db}\n",
			want:     "warning: container app: its livenessProbe kills it after about 15s of a hold that may last 10m0s",
			warning:  true,
		},
	}
	for name, tt := range tests {
		t.Run(name, func(t *testing.T) {
			ws, err := Read(strings.NewReader(tt.manifest), Options{})
			require.NoError(t, err)
			var out bytes.Buffer
			err = Write(&out, ws)
			assert.Contains(t, out.String(), tt.want)
			if tt.warning {
				assert.NoError(t, err, "a warning does not fail the run")
			} else {
				assert.ErrorIs(t, err, ErrProblems)
			}
		})
	}
}

func TestAPodWithoutKeysHasNothingToExplain(t *testing.T) {
	ws, err := Read(strings.NewReader("kind: Pod\nmetadata:\n  name: plain\nspec:\n  containers:\n  - {name: app}\n"), Options{})
	require.NoError(t, err)
	var out bytes.Buffer
	require.NoError(t, Write(&out, ws))
	assert.Equal(t, "Pod/plain: no podorder keys; kubelet's own order\n\n", out.String())
}

func TestTheExamplesAreAccepted(t *testing.T) {
	files, err := filepath.Glob("../../examples/*.yaml")
	require.NoError(t, err)
	require.NotEmpty(t, files)
	for _, f := range files {
		data, err := os.ReadFile(f)
		require.NoError(t, err)
		ws, err := Read(bytes.NewReader(data), Options{})
		require.NoError(t, err, f)
		var out bytes.Buffer
		assert.NoError(t, Write(&out, ws), "%s:\n%s", f, out.String())
		assert.NotContains(t, out.String(), "warning:", f)
	}
}

func TestEachWaitedOnContainerSaysWhatDecidesItsReadiness(t *testing.T) {
	ws, err := Read(strings.NewReader(`apiVersion: v1
kind: Pod
metadata:
  name: p
  labels:
    podorder.dev/after.web: api.db.cache.queue.log
    podorder.dev/readiness.cache: kubelet
spec:
  containers:
  - name: web
    image: x
  - name: api
    image: x
    ports: [{name: http, containerPort: 8080}]
    readinessProbe: {httpGet: {path: /healthz, port: http}}
  - name: db
    image: x
    readinessProbe: {exec: {command: [pg_isready]}}
  - name: cache
    image: x
    readinessProbe: {tcpSocket: {port: 6379}}
  - name: queue
    image: x
    readinessProbe: {grpc: {port: 9090}}
  - name: log
    image: x
`), Options{})
	require.NoError(t, err)
	assert.Equal(t, map[string]string{
		"api":   "its readinessProbe http:8080/healthz, evaluated by podorder every 10 ms",
		"db":    "kubelet's verdict: readinessProbe is an exec probe: kubelet runs it",
		"cache": "kubelet's verdict on its readinessProbe (podorder.dev/readiness.cache: kubelet)",
		"queue": "its readinessProbe grpc:9090, evaluated by podorder every 10 ms",
		"log":   "its start: it has no readinessProbe",
	}, ws[0].Readiness)
	var out bytes.Buffer
	require.NoError(t, Write(&out, ws))
	assert.Contains(t, out.String(), "  api is ready on its readinessProbe http:8080/healthz, evaluated by podorder every 10 ms\n")
}

func TestAContainersOwnReadinessSignalIsWhatExplainSays(t *testing.T) {
	ws, err := Read(strings.NewReader(`apiVersion: v1
kind: Pod
metadata:
  name: p
  labels:
    podorder.dev/after.web: api.db
    podorder.dev/readiness.api: notify
  annotations:
    podorder.dev/readiness.db: file:/run/db/ready
spec:
  containers:
  - name: web
    image: x
  - name: api
    image: x
    readinessProbe: {tcpSocket: {port: 8080}}
  - name: db
    image: x
`), Options{})
	require.NoError(t, err)
	assert.Empty(t, ws[0].Errors)
	assert.Equal(t, map[string]string{
		"api": "its own READY=1 on the NOTIFY_SOCKET podorder gives it (podorder.dev/readiness.api: notify), from a process of the container; not its readinessProbe",
		"db":  "/run/db/ready existing inside the container (podorder.dev/readiness.db: file:/run/db/ready), seen by inotify and mount events; not its readinessProbe",
	}, ws[0].Readiness)
}

func TestWhatPodorderWillDoIsInTheWorkload(t *testing.T) {
	const stopWithOnly = "kind: Pod\nmetadata:\n  name: p\n  labels:\n    podorder.dev/stop-with.proxy: main_failed\nspec:\n  terminationGracePeriodSeconds: 7\n  containers:\n  - {name: main}\n  - {name: proxy}\n"
	const cycle = "kind: Pod\nmetadata:\n  name: p\n  labels:\n    podorder.dev/after.a: b\n    podorder.dev/after.b: c\n    podorder.dev/after.c: a\n    podorder.dev/after.web: a\nspec:\n  containers:\n  - {name: a}\n  - {name: b}\n  - {name: c}\n  - {name: web}\n  - {name: db}\n"
	const crossNS = "kind: Pod\nmetadata:\n  name: p\n  annotations:\n    podorder.dev/after.app: \"pod(shared/app=auth)\"\nspec:\n  containers:\n  - {name: app}\n"
	tests := map[string]struct {
		manifest string
		opt      Options
		check    func(t *testing.T, w Workload)
	}{
		"stop-with alone is podorder's, with its signal and the pod's grace": {
			manifest: stopWithOnly,
			check: func(t *testing.T, w Workload) {
				assert.True(t, w.UsesPodorder)
				assert.Equal(t, []StopBinding{{Container: "proxy", When: []StopTrigger{{"main", "failed"}}, Signal: "SIGTERM", Grace: "7s", GraceFrom: "pod"}}, w.StopWith)
				assert.False(t, w.ShutdownOrder.Ordered)
				assert.Equal(t, GateByPolicy, w.ReadinessGate)
			},
		},
		"a cycle is one error, and its members have no plan and no readiness": {
			manifest: cycle,
			check: func(t *testing.T, w Workload) {
				require.Len(t, w.Errors, 1)
				assert.Contains(t, w.Errors[0], "containers a, b, c: dependency cycle a → b → c → a")
				assert.Equal(t, [][]string{{"db"}}, w.Layers)
				assert.Equal(t, []string{"web"}, w.NeverReleased)
				assert.Empty(t, w.Readiness)
				assert.Equal(t, [][]string{{"web", "db"}}, w.ShutdownOrder.Stages)
			},
		},
		"a dependency on another namespace is refused as shipped, in the manifest's namespace or the one given": {
			manifest: crossNS,
			opt:      Options{Namespace: "team-a"},
			check: func(t *testing.T, w Workload) {
				assert.Equal(t, "team-a", w.Namespace)
				require.Len(t, w.Warnings, 1)
				assert.Contains(t, w.Warnings[0], "container app: podorder as the DaemonSet ships it (no --allow-cross-namespace rules) refuses to create it")
				assert.Contains(t, w.Warnings[0], "--allow-cross-namespace=team-a=shared")
				assert.Equal(t, []Dependency{{Pods: "shared/app=auth", Condition: "ready"}}, w.Waits["app"])
				assert.Equal(t, map[string]string{"app": "10m0s"}, w.Timeouts)
			},
		},
		"a manifest without a namespace is in default": {
			manifest: crossNS,
			check:    func(t *testing.T, w Workload) { assert.Equal(t, "default", w.Namespace) },
		},
		"a dependency on another namespace the rules allow is no warning": {
			manifest: crossNS,
			opt:      Options{CrossNamespace: map[string]map[string]bool{"*": {"shared": true}}},
			check:    func(t *testing.T, w Workload) { assert.Empty(t, w.Warnings) },
		},
	}
	for name, tt := range tests {
		t.Run(name, func(t *testing.T) {
			ws, err := Read(strings.NewReader(tt.manifest), tt.opt)
			require.NoError(t, err)
			require.Len(t, ws, 1)
			tt.check(t, ws[0])
		})
	}
}

func TestListsAreReadRecursively(t *testing.T) {
	tests := map[string]struct {
		manifest string
		want     []string
	}{
		"kubectl's List":         {"apiVersion: v1\nkind: List\nitems:\n- {kind: Pod, metadata: {name: a}, spec: {containers: [{name: x}]}}\n- {kind: Service, metadata: {name: s}}\n", []string{"Pod/a"}},
		"a List in a List":       {"kind: List\nitems:\n- kind: PodList\n  items:\n  - {kind: Pod, metadata: {name: a}, spec: {containers: [{name: x}]}}\n", []string{"Pod/a"}},
		"an empty List":          {"kind: List\nitems: []\n", nil},
		"JSON":                   {`{"kind": "List", "items": [{"kind": "Pod", "metadata": {"name": "a"}, "spec": {"containers": [{"name": "x"}]}}]}`, []string{"Pod/a"}},
		"no pod template at all": {"kind: ConfigMap\nmetadata: {name: c}\n", nil},
		"documents and List mix": {"kind: Pod\nmetadata: {name: a}\nspec: {containers: [{name: x}]}\n---\nkind: List\nitems:\n- {kind: Pod, metadata: {name: b}, spec: {containers: [{name: x}]}}\n", []string{"Pod/a", "Pod/b"}},
	}
	for name, tt := range tests {
		t.Run(name, func(t *testing.T) {
			ws, err := Read(strings.NewReader(tt.manifest), Options{})
			require.NoError(t, err)
			var names []string
			for _, w := range ws {
				names = append(names, w.Name)
			}
			assert.Equal(t, tt.want, names)
		})
	}
}

func TestABadListItemIsNamed(t *testing.T) {
	_, err := Read(strings.NewReader("kind: List\nitems:\n- {kind: Pod, metadata: {name: a}, spec: {containers: [{name: x}]}}\n- {kind: Deployment, metadata: {name: d}}\n"), Options{})
	assert.EqualError(t, err, "document 1, item 2 (Deployment d): no pod template")
}

func TestTheJSONOutputHasEveryFieldForEveryWorkload(t *testing.T) {
	ws, err := Read(strings.NewReader(shop+"---\nkind: Pod\nmetadata: {name: plain}\nspec: {containers: [{name: x}]}\n"), Options{})
	require.NoError(t, err)
	var out bytes.Buffer
	require.NoError(t, WriteJSON(&out, ws))
	var got []map[string]any
	require.NoError(t, json.Unmarshal(out.Bytes(), &got))
	require.Len(t, got, 2)
	for _, w := range got {
		for _, k := range []string{"name", "namespace", "usesPodorder", "init", "layers", "neverReleased", "waits", "timeouts", "readiness",
			"stopWith", "shutdownOrder", "readinessGate", "errors", "warnings"} {
			assert.Contains(t, w, k, "%s", w["name"])
			assert.NotNil(t, w[k], "%s: %s is an empty collection, never null", w["name"], k)
		}
	}
}

func TestExplainWarnsOfWaitingForTheCompletionOfARestartedContainer(t *testing.T) {
	ws, err := Read(strings.NewReader(`
apiVersion: apps/v1
kind: Deployment
metadata: {name: shop}
spec:
  template:
    metadata:
      labels: {podorder.dev/after.api: migrate_completed}
    spec:
      containers:
        - {name: api, image: api}
        - {name: migrate, image: api}
`), Options{})
	require.NoError(t, err)
	require.Len(t, ws, 1)
	require.Empty(t, ws[0].Errors)
	require.Len(t, ws[0].Warnings, 1)
	assert.Contains(t, ws[0].Warnings[0], "container api: api waits for migrate to complete, but kubelet starts migrate again after it exits 0")
}

// TestTheREADMEsHeadlinePodExplainsWithoutAProblem keeps the first example a newcomer reads one that
// works in a real pod: it once waited for the completion of a regular container, which kubelet
// restarts.
func TestTheREADMEsHeadlinePodExplainsWithoutAProblem(t *testing.T) {
	ws, err := Read(strings.NewReader(readmeHeadline(t)), Options{})
	require.NoError(t, err)
	require.Len(t, ws, 1)
	assert.Empty(t, ws[0].Errors)
	assert.Empty(t, ws[0].Warnings)
	assert.Equal(t, []string{"db", "migrate"}, ws[0].Init)
}

// TestTheREADMEsHeadlinePodIsExamplesShop keeps the README's pod the one the cluster tests apply
// (test/kubernetes), so that it is known to run as written.
func TestTheREADMEsHeadlinePodIsExamplesShop(t *testing.T) {
	shop, err := os.ReadFile("../../examples/shop.yaml")
	require.NoError(t, err)
	assert.Equal(t, string(shop), readmeHeadline(t))
}

// readmeHeadline returns the README's first YAML block.
func readmeHeadline(t *testing.T) string {
	t.Helper()
	readme, err := os.ReadFile("../../README.md")
	require.NoError(t, err)
	_, rest, ok := strings.Cut(string(readme), "```yaml\n")
	require.True(t, ok, "the README opens with a YAML example")
	example, _, ok := strings.Cut(rest, "```")
	require.True(t, ok)
	return example
}

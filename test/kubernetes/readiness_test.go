package kubernetes

import (
	"crypto/tls"
	"encoding/json"
	"encoding/xml"
	"fmt"
	"io"
	"net"
	"net/http"

	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"

	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/podorder/podorder/plugin/timeline"
	"github.com/podorder/podorder/test/harness"
)

// conditionPath selects podorder's pod condition in kubectl's jsonpath.
const conditionPath = `.status.conditions[?(@.type=="podorder.dev/released")]`

// readinessScenarios are the held-pod-is-not-Ready scenarios, on the same cluster.
func readinessScenarios(t *testing.T, b *bed) {
	t.Run("a held pod is not Ready and has no ready Service endpoint until it is released, and again when it is held anew", func(t *testing.T) {
		b.c.ApplyYAML(t, fmt.Sprintf(`apiVersion: apps/v1
kind: Deployment
metadata:
  name: gated
  namespace: default
spec:
  replicas: 1
  selector:
    matchLabels: {app: gated}
  template:
    metadata:
      labels:
        app: gated
        podorder.dev/after.web: api
        podorder.dev/stop-with.web: api
    spec:
      terminationGracePeriodSeconds: 2
      containers:
      - name: web
        image: %[1]s
        imagePullPolicy: Never
        args: ["--name", "web", "--port", "8080"]
      - name: api
        image: %[1]s
        imagePullPolicy: Never
        args: ["--name", "api", "--listen-on", "USR1", "--port", "8081"]
        readinessProbe: {tcpSocket: {port: 8081}, periodSeconds: 1}
---
apiVersion: v1
kind: Service
metadata:
  name: gated
  namespace: default
spec:
  selector: {app: gated}
  ports: [{port: 80, targetPort: 8080}]
`, harness.WorkloadImage))
		b.c.WaitFor(t, "default", "deployment/gated", "", time.Minute)
		var name string
		require.Eventually(t, func() bool {
			name = b.c.Kubectl(t, "get", "pods", "-n", "default", "-l", "app=gated", "-o", "jsonpath={.items[0].metadata.name}")
			return name != ""
		}, time.Minute, 200*time.Millisecond)
		assert.Equal(t, "podorder.dev/released", b.c.Kubectl(t, "get", "pod", name, "-o", "jsonpath={.spec.readinessGates[*].conditionType}"), "the gate was added at admission")

		b.c.WaitFor(t, "default", "pod/"+name, "jsonpath={"+conditionPath+".status}=False", time.Minute)
		held := time.Now()
		message := b.c.Kubectl(t, "get", "pod", name, "-o", "jsonpath={"+conditionPath+".message}")
		wide := b.c.Kubectl(t, "get", "pod", name, "-o", "wide")
		ready := b.c.Kubectl(t, "get", "pod", name, "-o", `jsonpath={.status.conditions[?(@.type=="Ready")].status}`)
		slices := b.endpointsReady(t)
		webStarted := b.c.Kubectl(t, "get", "pod", name, "-o", `jsonpath={.status.containerStatuses[?(@.name=="web")].started}`)
		assert.Contains(t, message, "web waits for api (ready) since ")
		assert.Equal(t, "False", ready, "the pod is not Ready while web is held")
		assert.NotContains(t, slices, "true", "no ready endpoint while web is held")
		t.Logf("RESULT held pod: kubectl get pod -o wide:\n%s\ncondition podorder.dev/released=False: %s\nkubelet says web started=%s; EndpointSlice ready=[%s]", wide, message, webStarted, slices)

		// api opens its port only now: everything above ran while web was held.
		b.listenNow(t, name, "api", 0)
		b.c.WaitPodReady(t, "default", name, 2*time.Minute)
		webStart := b.event(t, name, "web", "START").At
		require.True(t, held.Before(webStart), "the checks above ran while web was held: it started %s after them", webStart.Sub(held))
		assert.Equal(t, "True", b.c.Kubectl(t, "get", "pod", name, "-o", "jsonpath={"+conditionPath+".status}"))
		require.Eventually(t, func() bool { return strings.Contains(b.endpointsReady(t), "true") }, time.Minute, 200*time.Millisecond,
			"a ready endpoint once released")

		// api crashes: web is stopped with it and held anew until the new api is ready.
		apiID := strings.TrimPrefix(b.c.Kubectl(t, "get", "pod", name, "-o", `jsonpath={.status.containerStatuses[?(@.name=="api")].containerID}`), "containerd://")
		_, err := b.env.Runtime.StopContainer(t.Context(), &runtimeapi.StopContainerRequest{ContainerId: apiID, Timeout: 0})
		require.NoError(t, err)
		b.c.WaitFor(t, "default", "pod/"+name, `jsonpath={.status.containerStatuses[?(@.name=="web")].restartCount}=1`, 2*time.Minute)
		b.c.WaitFor(t, "default", "pod/"+name, "jsonpath={"+conditionPath+".status}=False", time.Minute)
		assert.Contains(t, b.c.Kubectl(t, "get", "pod", name, "-o", "jsonpath={"+conditionPath+".message}"), "web waits for api (ready)")
		b.listenNow(t, name, "api", 1)
		b.c.WaitFor(t, "default", "pod/"+name, "jsonpath={"+conditionPath+".status}=True", 2*time.Minute)
		b.c.WaitPodReady(t, "default", name, 2*time.Minute)
		b.c.Kubectl(t, "delete", "deployment", "gated", "--wait=false")
		b.c.Kubectl(t, "delete", "service", "gated", "--wait=false")
	})

	t.Run("the shipped manifests carry the recommended labels and the Pod Security level they need", func(t *testing.T) {
		assert.Equal(t, "privileged", b.c.Kubectl(t, "get", "namespace", "podorder-system", "-o", `jsonpath={.metadata.labels.pod-security\.kubernetes\.io/enforce}`))
		for _, kind := range []string{"namespace", "serviceaccount", "clusterrole", "clusterrolebinding", "daemonset",
			"mutatingadmissionpolicy", "mutatingadmissionpolicybinding", "validatingadmissionpolicy", "validatingadmissionpolicybinding"} {
			names := b.c.Kubectl(t, "get", kind, "-A", "-l", "app.kubernetes.io/part-of=podorder,app.kubernetes.io/name=podorder", "-o", "name")
			assert.NotEmpty(t, strings.TrimSpace(names), "%s objects carry app.kubernetes.io/ labels", kind)
		}
		assert.Equal(t, `{"kubernetes.io/os":"linux"}`, b.c.Kubectl(t, "get", "daemonset", "podorder", "-n", "podorder-system", "-o", "jsonpath={.spec.template.spec.nodeSelector}"))
	})

	t.Run("malformed podorder keys are refused at kubectl apply with the daemon's messages", func(t *testing.T) {
		tests := map[string]struct{ manifest, want string }{
			"pod, bad label value": {fmt.Sprintf(`apiVersion: v1
kind: Pod
metadata:
  name: bad-label
  namespace: default
  labels:
    podorder.dev/after.app: db_done
spec:
  containers:
  - {name: app, image: %[1]s}
  - {name: db, image: %[1]s}
`, harness.WorkloadImage), "podorder: default/bad-label: label podorder.dev/after.app=db_done: want container names joined by '.'"},
			"pod, unknown key kind": {fmt.Sprintf(`apiVersion: v1
kind: Pod
metadata:
  name: bad-kind
  namespace: default
  annotations:
    podorder.dev/afterr.app: db
spec:
  containers:
  - {name: app, image: %[1]s}
`, harness.WorkloadImage), `podorder: default/bad-kind: annotation podorder.dev/afterr.app: unknown key kind "afterr"`},
			"pod, unknown readiness source": {fmt.Sprintf(`apiVersion: v1
kind: Pod
metadata:
  name: bad-readiness
  namespace: default
  labels:
    podorder.dev/readiness.db: both
spec:
  containers:
  - {name: db, image: %[1]s}
`, harness.WorkloadImage), "podorder: default/bad-readiness: label podorder.dev/readiness.db=both: want podorder (podorder evaluates the readinessProbe itself, the default), kubelet (wait for kubelet's verdict), notify (the container sends READY=1 to its $NOTIFY_SOCKET) or file:<absolute path>"},
			"deployment, bad timeout": {fmt.Sprintf(`apiVersion: apps/v1
kind: Deployment
metadata:
  name: bad-timeout
  namespace: default
spec:
  selector: {matchLabels: {app: bad-timeout}}
  template:
    metadata:
      labels: {app: bad-timeout, podorder.dev/after.app: db}
      annotations: {podorder.dev/timeout.app: "5 minutes"}
    spec:
      containers:
      - {name: app, image: %[1]s}
      - {name: db, image: %[1]s}
`, harness.WorkloadImage), "podorder: Deployment default/bad-timeout: annotation podorder.dev/timeout.app=5 minutes: timeout must be a positive Go duration"},
			"pod, a typo in a container name that after names": {fmt.Sprintf(`apiVersion: v1
kind: Pod
metadata:
  name: typo-after
  namespace: default
  labels:
    podorder.dev/after.app: dbb_started
spec:
  containers:
  - {name: app, image: %[1]s}
  - {name: db, image: %[1]s}
`, harness.WorkloadImage), "podorder: default/typo-after: label podorder.dev/after.app names dbb, which is not in the pod; containers are: app, db"},
			"deployment, a typo in a container name that a stop-with annotation names": {fmt.Sprintf(`apiVersion: apps/v1
kind: Deployment
metadata:
  name: typo-stop-with
  namespace: default
spec:
  selector: {matchLabels: {app: typo-stop-with}}
  template:
    metadata:
      labels: {app: typo-stop-with}
      annotations: {podorder.dev/stop-with.proxy: "mian:exited"}
    spec:
      initContainers:
      - {name: setup, image: %[1]s}
      containers:
      - {name: main, image: %[1]s}
      - {name: proxy, image: %[1]s}
`, harness.WorkloadImage), "podorder: Deployment default/typo-stop-with: annotation podorder.dev/stop-with.proxy names mian, which is not in the pod; containers are: setup, main, proxy"},
			"pod, a key for a container not in the pod": {fmt.Sprintf(`apiVersion: v1
kind: Pod
metadata:
  name: typo-key
  namespace: default
  annotations:
    podorder.dev/timeout.ap: 5m
spec:
  containers:
  - {name: app, image: %[1]s}
`, harness.WorkloadImage), "podorder: default/typo-key: podorder.dev/ keys name container ap, which is not in the pod; containers are: app"},
			"pod, an unknown stop signal": {fmt.Sprintf(`apiVersion: v1
kind: Pod
metadata:
  name: bad-signal
  namespace: default
  labels:
    podorder.dev/stop-with.proxy: app
    podorder.dev/stop-signal.proxy: KILL
spec:
  containers:
  - {name: app, image: %[1]s}
  - {name: proxy, image: %[1]s}
`, harness.WorkloadImage), "podorder: default/bad-signal: label podorder.dev/stop-signal.proxy=KILL: stop signal must be one of SIGTERM"},
		}
		for name, tt := range tests {
			t.Run(name, func(t *testing.T) {
				out, err := b.c.KubectlStdin(tt.manifest, "apply", "-f", "-")
				require.Error(t, err, "%s", out)
				assert.Contains(t, err.Error(), tt.want)
			})
		}
	})

	t.Run("operators see holds in podorder status and in Prometheus metrics", func(t *testing.T) {
		b.c.ApplyYAML(t, fmt.Sprintf(`apiVersion: v1
kind: Pod
metadata:
  name: stuck
  namespace: default
  labels:
    podorder.dev/after.app: db
spec:
  terminationGracePeriodSeconds: 1
  containers:
  - name: app
    image: %[1]s
    imagePullPolicy: Never
  - name: db
    image: %[1]s
    imagePullPolicy: Never
    readinessProbe: {tcpSocket: {port: 5432}, periodSeconds: 1}
`, harness.WorkloadImage))
		b.c.WaitFor(t, "default", "pod/stuck", "jsonpath={"+conditionPath+".status}=False", time.Minute)
		out := b.c.Kubectl(t, "-n", "podorder-system", "exec", "ds/podorder", "-c", "podorder", "--", "/podorder", "status")
		assert.Regexp(t, `(?m)^default/stuck\s+app\s+held\s+db \(ready\): db .+\s+\d+s ago\s+9m\d+s$`, out)
		t.Logf("RESULT kubectl -n podorder-system exec ds/podorder -- /podorder status:\n%s", out)

		// Scraped as Prometheus would: the daemon pod's IP and metrics port, over HTTPS (the
		// certificate is self-signed), with the token of a ServiceAccount bound to
		// podorder-metrics-reader.
		ip := b.c.Kubectl(t, "get", "pods", "-n", "podorder-system", "-l", "app.kubernetes.io/name=podorder", "-o", "jsonpath={.items[0].status.podIP}")
		b.c.ApplyYAML(t, `apiVersion: v1
kind: ServiceAccount
metadata: {name: prometheus, namespace: default}
---
apiVersion: v1
kind: ServiceAccount
metadata: {name: stranger, namespace: default}
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRoleBinding
metadata: {name: prometheus-podorder-metrics}
roleRef: {apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: podorder-metrics-reader}
subjects: [{kind: ServiceAccount, name: prometheus, namespace: default}]
`)
		// The daemon remembers a refusal for a minute: scrape once the binding is in effect.
		require.Eventually(t, func() bool {
			out, _ := b.c.KubectlErr("auth", "can-i", "get", "/metrics", "--as=system:serviceaccount:default:prometheus")
			return strings.TrimSpace(out) == "yes"
		}, 30*time.Second, 200*time.Millisecond)
		scrape := func(token string) (int, string) {
			req, err := http.NewRequestWithContext(t.Context(), http.MethodGet, "https://"+net.JoinHostPort(ip, "8443")+"/metrics", nil)
			require.NoError(t, err)
			if token != "" {
				req.Header.Set("Authorization", "Bearer "+token)
			}
			client := &http.Client{Timeout: 20 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}}}
			res, err := client.Do(req)
			require.NoError(t, err)
			defer res.Body.Close()
			body, err := io.ReadAll(res.Body)
			require.NoError(t, err)
			return res.StatusCode, string(body)
		}
		token := func(sa string) string {
			return strings.TrimSpace(b.c.Kubectl(t, "create", "token", sa, "-n", "default"))
		}
		code, _ := scrape("")
		assert.Equal(t, http.StatusUnauthorized, code, "no token")
		code, _ = scrape("forged")
		assert.Equal(t, http.StatusUnauthorized, code, "a token the API server does not know")
		code, body := scrape(token("stranger"))
		assert.Equal(t, http.StatusForbidden, code, "a ServiceAccount without the binding: %s", body)
		code, body = scrape(token("prometheus"))
		require.Equal(t, http.StatusOK, code, body)
		// /healthz has no authentication: it listens on the node's loopback, not on its address.
		_, err := net.DialTimeout("tcp", net.JoinHostPort(ip, "8081"), 5*time.Second)
		assert.Error(t, err, "the health port is closed on the node's address")
		assert.Regexp(t, `(?m)^podorder_holds [1-9]`, body, "stuck/app is held")
		assert.Regexp(t, `(?m)^podorder_hold_duration_seconds_count\{outcome="released"\} \d+$`, body)
		assert.Regexp(t, `(?m)^podorder_nri_handler_duration_seconds_count\{event="CreateContainer"\} [1-9]`, body)
		assert.Contains(t, body, "podorder_api_synced 1")
		b.c.Kubectl(t, "delete", "pod", "stuck", "--wait=false")
		b.c.Kubectl(t, "delete", "clusterrolebinding", "prometheus-podorder-metrics")
		b.c.Kubectl(t, "delete", "serviceaccount", "-n", "default", "prometheus", "stranger")
	})

	t.Run("a pod's start is a picture from the daemon, through kubectl exec, also once the pod is gone", func(t *testing.T) {
		b.c.ApplyYAML(t, fmt.Sprintf(`apiVersion: v1
kind: Pod
metadata:
  name: pictured
  namespace: default
  labels:
    podorder.dev/after.app: db
spec:
  terminationGracePeriodSeconds: 1
  containers:
  - name: app
    image: %[1]s
    imagePullPolicy: Never
    args: ["--name", "app"]
  - name: db
    image: %[1]s
    imagePullPolicy: Never
    args: ["--name", "db", "--listen-after", "1s", "--port", "5432"]
    readinessProbe: {tcpSocket: {port: 5432}, periodSeconds: 1}
`, harness.WorkloadImage))
		b.c.WaitPodReady(t, "default", "pictured", 2*time.Minute)
		exec := func(format string) string {
			return b.c.Kubectl(t, "-n", "podorder-system", "exec", "ds/podorder", "-c", "podorder", "--", "/podorder", "timeline", "default/pictured", "-o", format)
		}
		var chart timeline.Chart
		require.NoError(t, json.Unmarshal([]byte(exec("json")), &chart))
		bars := map[string]timeline.Bar{}
		for _, bar := range chart.Bars {
			bars[bar.Container] = bar
		}
		require.Contains(t, bars, "app")
		require.Contains(t, bars, "db")
		app, db := bars["app"], bars["db"]
		assert.Equal(t, "db (ready)", app.HeldOn)
		require.NotNil(t, db.Ready, "db's readinessProbe, evaluated by podorder or kubelet")
		require.NotNil(t, app.Released)
		assert.Equal(t, "db", app.ReleasedBy)
		assert.Contains(t, app.ReleasedHow, "db ready (")
		assert.False(t, app.Released.Before(*db.Ready))
		var critical []string
		for _, i := range chart.Critical {
			critical = append(critical, chart.Bars[i].Container)
		}
		assert.Equal(t, []string{"db", "app"}, critical)
		var svg struct{ XMLName xml.Name }
		require.NoError(t, xml.Unmarshal([]byte(exec("svg")), &svg))
		assert.Equal(t, "svg", svg.XMLName.Local)
		var trace timeline.Trace
		require.NoError(t, json.Unmarshal([]byte(exec("perfetto")), &trace))
		assert.Equal(t, "ms", trace.DisplayTimeUnit)
		assert.NotEmpty(t, trace.TraceEvents)
		text := exec("text")
		assert.Contains(t, text, "* db #0")
		t.Logf("RESULT kubectl -n podorder-system exec ds/podorder -- /podorder timeline default/pictured:\n%s", text)

		b.c.Kubectl(t, "delete", "pod", "pictured", "--wait=true", "--timeout=2m")
		require.Eventually(t, func() bool {
			var gone timeline.Chart
			return json.Unmarshal([]byte(exec("json")), &gone) == nil && gone.Removed
		}, time.Minute, time.Second, "the daemon keeps a removed pod's timeline")
	})

	t.Run("podorder's service account may write only its own condition of pods on its own node", func(t *testing.T) {
		for _, p := range []struct{ name, node string }{{"own-node", b.c.NodeName}, {"other-node", "ghost-node"}} {
			b.c.ApplyYAML(t, fmt.Sprintf(`apiVersion: v1
kind: Pod
metadata:
  name: %s
  namespace: default
spec:
  nodeName: %s
  terminationGracePeriodSeconds: 1
  containers:
  - name: app
    image: %s
    imagePullPolicy: Never
`, p.name, p.node, harness.WorkloadImage))
		}
		b.c.WaitFor(t, "default", "pod/own-node", "jsonpath={.status.phase}=Running", time.Minute)
		daemon := b.c.Kubectl(t, "get", "pods", "-n", "podorder-system", "-o", "jsonpath={.items[0].metadata.name}")
		daemonUID := b.c.Kubectl(t, "get", "pod", daemon, "-n", "podorder-system", "-o", "jsonpath={.metadata.uid}")
		// The same kind of token the daemon's pod gets: bound to that pod, so it names its node.
		token := strings.TrimSpace(b.c.Kubectl(t, "create", "token", "podorder", "-n", "podorder-system",
			"--bound-object-kind=Pod", "--bound-object-name="+daemon, "--bound-object-uid="+daemonUID))
		asPodorder := b.tokenClient(t, token)
		// The daemon's own request: a strategic-merge patch of pods/status, without a read first.
		patch := func(pod, condType string) error {
			body := fmt.Sprintf(`{"status":{"conditions":[{"type":%q,"status":"True","reason":"Test","message":"test"}]}}`, condType)
			_, err := asPodorder.CoreV1().Pods("default").Patch(t.Context(), pod, types.StrategicMergePatchType, []byte(body), metav1.PatchOptions{}, "status")
			return err
		}
		assert.NoError(t, patch("own-node", "podorder.dev/released"), "its own condition on its own node")
		err := patch("other-node", "podorder.dev/released")
		require.Error(t, err)
		assert.Contains(t, err.Error(), "podorder may write the status of pods on its own node only: pod default/other-node is on node ghost-node, the request comes from node "+b.c.NodeName)

		// pods/status stores more than the status: every kind of change, by every patch type, is
		// refused unless it is podorder's own condition.
		const own = "podorder.dev/released"
		apply := func(body string) string {
			return `{"apiVersion":"v1","kind":"Pod","metadata":{"name":"own-node","namespace":"default"` + body + `}`
		}
		writes := map[string]struct {
			patchType types.PatchType
			body      string
			changes   string // "" for a write that must be allowed
		}{
			"own condition, strategic merge (the daemon's own write)": {types.StrategicMergePatchType,
				`{"status":{"conditions":[{"type":"` + own + `","status":"False","reason":"Held","message":"x"}]}}`, ""},
			"own condition, server-side apply": {types.ApplyPatchType,
				apply(`},"status":{"conditions":[{"type":"` + own + `","status":"True","reason":"Released","message":"y"}]}`), ""},
			"label, JSON patch":              {types.JSONPatchType, `[{"op":"add","path":"/metadata/labels","value":{"evil":"1"}}]`, "metadata.labels"},
			"label, server-side apply":       {types.ApplyPatchType, apply(`,"labels":{"evil":"1"}}`), "metadata.labels"},
			"annotation, strategic merge":    {types.StrategicMergePatchType, `{"metadata":{"annotations":{"evil":"1"}}}`, "metadata.annotations"},
			"finalizer, merge patch":         {types.MergePatchType, `{"metadata":{"finalizers":["example.com/evil"]}}`, "metadata.finalizers"},
			"status message, JSON patch":     {types.JSONPatchType, `[{"op":"add","path":"/status/message","value":"evil"}]`, "status.message"},
			"status reason, strategic merge": {types.StrategicMergePatchType, `{"status":{"reason":"Evil"}}`, "status.reason"},
			"another condition, merge patch": {types.MergePatchType, `{"status":{"conditions":[{"type":"` + own + `","status":"True"}]}}`, "status.conditions (other than " + own + ")"},
			"another condition, strategic merge": {types.StrategicMergePatchType,
				`{"status":{"conditions":[{"type":"example.com/other","status":"True","reason":"Test","message":"test"}]}}`, "status.conditions (other than " + own + ")"},
		}
		for name, w := range writes {
			t.Run(name, func(t *testing.T) {
				version := func() string {
					return b.c.Kubectl(t, "get", "pod", "own-node", "-n", "default", "-o", "jsonpath={.metadata.resourceVersion}")
				}
				before := version()
				opts := metav1.PatchOptions{}
				if w.patchType == types.ApplyPatchType {
					opts.FieldManager = "podorder"
					force := true
					opts.Force = &force
				}
				_, err := asPodorder.CoreV1().Pods("default").Patch(t.Context(), "own-node", w.patchType, []byte(w.body), opts, "status")
				if w.changes == "" {
					require.NoError(t, err, "the legitimate write is allowed")
					return
				}
				require.Error(t, err)
				assert.Contains(t, err.Error(), "podorder may change only its own pod condition, podorder.dev/released; this write also changes "+w.changes)
				assert.Equal(t, before, version(), "nothing was stored")
			})
		}
		b.c.Kubectl(t, "delete", "pod", "own-node", "other-node", "--wait=false", "--grace-period=0", "--force")
	})
}

// endpointsReady lists the ready conditions of the gated Service's endpoints, "" with none.
func (b *bed) endpointsReady(t *testing.T) string {
	return b.c.Kubectl(t, "get", "endpointslices", "-n", "default", "-l", "kubernetes.io/service-name=gated",
		"-o", "jsonpath={.items[*].endpoints[*].conditions.ready}")
}

// tokenClient returns an API client that authenticates with token alone, against the cluster's API
// server and CA.
func (b *bed) tokenClient(t *testing.T, token string) kubernetes.Interface {
	cfg, err := clientcmd.BuildConfigFromFlags("", b.c.Kubeconfig)
	require.NoError(t, err)
	cfg = rest.AnonymousClientConfig(cfg)
	cfg.BearerToken = token
	client, err := kubernetes.NewForConfig(cfg)
	require.NoError(t, err)
	return client
}

package kubernetes

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/podorder/podorder/test/harness"
)

// logEvent returns the first workload line of kind in a container's log; previous reads the attempt
// before the current one (kubectl logs --previous).
func (b *bed) logEvent(t *testing.T, podName, container, kind string, previous bool) harness.WorkloadEvent {
	t.Helper()
	args := []string{"logs", "-n", "default", podName, "-c", container}
	if previous {
		args = append(args, "--previous")
	}
	out := b.c.Kubectl(t, args...)
	if ev, ok := firstEvent(t, out, kind); ok {
		return ev
	}
	t.Fatalf("%s/%s (previous=%v) printed no %s line; log:\n%s", podName, container, previous, kind, out)
	return harness.WorkloadEvent{}
}

// waitEvent waits for a workload line of kind in a running container's log: the container may not
// have started, or printed it, yet.
func (b *bed) waitEvent(t *testing.T, podName, container, kind string, timeout time.Duration) harness.WorkloadEvent {
	t.Helper()
	var last string
	deadline := time.Now().Add(timeout)
	for time.Now().Before(deadline) {
		out, err := b.c.KubectlStdin("", "logs", "-n", "default", podName, "-c", container)
		last = out
		if ev, ok := firstEvent(t, out, kind); ok && err == nil {
			return ev
		}
		time.Sleep(100 * time.Millisecond) // polling kubectl logs: there is no event to await
	}
	t.Fatalf("%s/%s printed no %s line within %s; last output:\n%s", podName, container, kind, timeout, last)
	return harness.WorkloadEvent{}
}

// listenNow has a container started with --listen-on USR1 open its port, as the test's own event
// rather than a timer racing the test's steps. restarts is the attempt to signal (its restartCount).
func (b *bed) listenNow(t *testing.T, podName, container string, restarts int) {
	t.Helper()
	status := fmt.Sprintf(`jsonpath={.status.containerStatuses[?(@.name=="%s")]`, container)
	b.c.WaitFor(t, "default", "pod/"+podName, fmt.Sprintf("%s.restartCount}=%d", status, restarts), 2*time.Minute)
	b.waitEvent(t, podName, container, "START", 2*time.Minute) // its signal handler is set up before START
	id := strings.TrimPrefix(b.c.Kubectl(t, "get", "pod", podName, "-n", "default", "-o", status+".containerID}"), "containerd://")
	b.env.Signal(t, id, syscall.SIGUSR1)
}

// markEvent reads the first line of kind from a workload's --marks file.
func markEvent(t *testing.T, path, kind string) harness.WorkloadEvent {
	t.Helper()
	data, err := os.ReadFile(path)
	require.NoError(t, err)
	if ev, ok := firstEvent(t, string(data), kind); ok {
		return ev
	}
	t.Fatalf("%s has no %s line:\n%s", path, kind, data)
	return harness.WorkloadEvent{}
}

// firstEvent parses the first workload line of kind in a log's text.
func firstEvent(t *testing.T, text, kind string) (harness.WorkloadEvent, bool) {
	t.Helper()
	for _, line := range strings.Split(text, "\n") {
		if strings.HasPrefix(line, kind+" ") {
			ev, err := harness.ParseWorkloadEvent(line)
			require.NoError(t, err)
			return ev, true
		}
	}
	return harness.WorkloadEvent{}, false
}

// jobOutcome waits until a Job is Complete or Failed and says which.
func (b *bed) jobOutcome(t *testing.T, name string, timeout time.Duration) string {
	t.Helper()
	for deadline := time.Now().Add(timeout); time.Now().Before(deadline); time.Sleep(250 * time.Millisecond) {
		types := b.c.Kubectl(t, "get", "job", name, "-n", "default", "-o", `jsonpath={.status.conditions[?(@.status=="True")].type}`)
		for _, ty := range strings.Fields(types) {
			if ty == "Complete" || ty == "Failed" {
				return ty
			}
		}
	}
	t.Fatalf("job %s neither Complete nor Failed within %s:\n%s", name, timeout, b.c.Kubectl(t, "describe", "job", name, "-n", "default"))
	return ""
}

// lifecycleScenarios are the death dependencies and shutdown order, on the same cluster.
func lifecycleScenarios(t *testing.T, b *bed) {
	t.Run("Jobs whose sidecar is bound to main with stop-with complete, and succeed iff main succeeded", func(t *testing.T) {
		type job struct {
			name, restartPolicy, stopWith string
			mainExit, sidecarTermExit     int
			want                          string
		}
		jobs := []job{
			{"never-ok", "Never", "main", 0, 0, "Complete"},
			{"never-main-fails", "Never", "main", 1, 0, "Failed"},
			{"never-sidecar-143", "Never", "main", 0, 143, "Failed"},
			{"onfailure-ok", "OnFailure", "main_succeeded", 0, 0, "Complete"},
			{"onfailure-main-fails", "OnFailure", "main_succeeded", 1, 0, "Failed"},
		}
		for _, j := range jobs {
			b.c.ApplyYAML(t, fmt.Sprintf(`apiVersion: batch/v1
kind: Job
metadata:
  name: %[1]s
  namespace: default
spec:
  backoffLimit: 0
  template:
    metadata:
      labels:
        podorder.dev/stop-with.proxy: %[3]s
    spec:
      restartPolicy: %[2]s
      terminationGracePeriodSeconds: 10
      containers:
      - name: proxy
        image: %[4]s
        imagePullPolicy: Never
        args: ["--name", "proxy", "--term-code", "%[6]d", "--drain", "200ms"]
      - name: main
        image: %[4]s
        imagePullPolicy: Never
        args: ["--name", "main", "--exit-after", "2s", "--exit-code", "%[5]d"]
`, j.name, j.restartPolicy, j.stopWith, harness.WorkloadImage, j.mainExit, j.sidecarTermExit))
		}
		for _, j := range jobs {
			got := b.jobOutcome(t, j.name, 2*time.Minute)
			assert.Equal(t, j.want, got, "job %s", j.name)
			t.Logf("RESULT Job outcome: restartPolicy %-9s main exit %d, sidecar exit on SIGTERM %3d → %s", j.restartPolicy, j.mainExit, j.sidecarTermExit, got)
		}
		pods := b.c.Kubectl(t, "get", "pods", "-n", "default", "-l", "job-name=never-ok", "-o", "jsonpath={.items[0].metadata.name}")
		ev := b.reasons(t, pods)
		assert.Contains(t, ev, "PodorderStopping: stopping container proxy: main exited with code 0 (stop-with main:exited); SIGTERM now, SIGKILL after 10s")
		assert.Contains(t, ev, "PodorderStopped: container proxy stopped: exited ")
		for _, j := range jobs {
			b.c.Kubectl(t, "delete", "job", j.name, "--wait=false", "--cascade=background")
		}
	})

	t.Run("stop-with restarts an app together with the proxy it needs, and holds it until the proxy is ready", func(t *testing.T) {
		b.c.ApplyYAML(t, fmt.Sprintf(`apiVersion: apps/v1
kind: Deployment
metadata:
  name: bound
  namespace: default
spec:
  replicas: 1
  selector:
    matchLabels: {app: bound}
  template:
    metadata:
      labels:
        app: bound
        podorder.dev/after.app: proxy
        podorder.dev/stop-with.app: proxy
    spec:
      terminationGracePeriodSeconds: 10
      containers:
      - name: app
        image: %[1]s
        imagePullPolicy: Never
        args: ["--name", "app", "--port", "8080", "--drain", "300ms"]
      - name: proxy
        image: %[1]s
        imagePullPolicy: Never
        args: ["--name", "proxy", "--listen-after", "1s", "--port", "15001"]
        readinessProbe: {tcpSocket: {port: 15001}, periodSeconds: 1}
`, harness.WorkloadImage))
		b.c.WaitFor(t, "default", "deployment/bound", "condition=Available", 2*time.Minute)
		name := b.c.Kubectl(t, "get", "pods", "-n", "default", "-l", "app=bound", "-o", "jsonpath={.items[0].metadata.name}")
		b.c.WaitPodReady(t, "default", name, 2*time.Minute)
		require.True(t, b.event(t, name, "app", "START").At.After(b.event(t, name, "proxy", "LISTEN").At), "first start is ordered")

		// The proxy crashes: killed at once, as by the OOM killer.
		proxyID := strings.TrimPrefix(b.c.Kubectl(t, "get", "pod", name, "-n", "default", "-o",
			`jsonpath={.status.containerStatuses[?(@.name=="proxy")].containerID}`), "containerd://")
		_, err := b.env.Runtime.StopContainer(t.Context(), &runtimeapi.StopContainerRequest{ContainerId: proxyID, Timeout: 0})
		require.NoError(t, err)
		b.c.WaitFor(t, "default", "pod/"+name, `jsonpath={.status.containerStatuses[?(@.name=="app")].restartCount}=1`, 2*time.Minute)
		b.c.WaitPodReady(t, "default", name, 2*time.Minute)

		signal := b.logEvent(t, name, "app", "SIGNAL", true)
		exit := b.logEvent(t, name, "app", "EXIT", true)
		// The EXIT line is the evidence of a graceful stop: the workload prints it only after its
		// 300 ms drain, and a SIGKILL would have left none.
		assert.Equal(t, 0, exit.Code, "the app drained and exited cleanly after its stop signal")
		appStart, proxyListen := b.event(t, name, "app", "START").At, b.event(t, name, "proxy", "LISTEN").At
		assert.True(t, appStart.After(proxyListen), "the restarted app was held until the restarted proxy was ready: started %s before it listened", proxyListen.Sub(appStart))
		ev := b.reasons(t, name)
		assert.Contains(t, ev, "PodorderStopping: stopping container app: proxy exited with code 137 (stop-with proxy:exited)")
		assert.Contains(t, ev, "PodorderStopped: container app stopped: exited ")
		t.Logf("RESULT restart together: app stop signal → exit %s (drain 300ms); restarted proxy listening → restarted app first line %s",
			exit.At.Sub(signal.At).Round(time.Millisecond), appStart.Sub(proxyListen).Round(time.Millisecond))
		b.c.Kubectl(t, "delete", "deployment", "bound", "--wait=false")
	})

	t.Run("pod deletion stops web, then api, then db, within the grace period", func(t *testing.T) {
		const grace = 15
		// kubelet removes a deleted pod's containers and their logs: the workloads copy their lines
		// to a host directory.
		marks := filepath.Join(b.env.Dir, "marks-shutdown")
		require.NoError(t, os.MkdirAll(marks, 0o777))
		b.c.ApplyYAML(t, fmt.Sprintf(`apiVersion: v1
kind: Pod
metadata:
  name: shutdown
  namespace: default
  labels:
    podorder.dev/after.web: api
    podorder.dev/after.api: db
spec:
  terminationGracePeriodSeconds: %[2]d
  containers:
  - name: web
    image: %[1]s
    imagePullPolicy: Never
    args: ["--name", "web", "--port", "8080", "--drain", "500ms", "--marks", "/marks"]
    volumeMounts: [{name: marks, mountPath: /marks}]
  - name: api
    image: %[1]s
    imagePullPolicy: Never
    args: ["--name", "api", "--port", "8081", "--drain", "500ms", "--marks", "/marks"]
    volumeMounts: [{name: marks, mountPath: /marks}]
    readinessProbe: {tcpSocket: {port: 8081}, periodSeconds: 1}
  - name: db
    image: %[1]s
    imagePullPolicy: Never
    args: ["--name", "db", "--port", "5432", "--drain", "500ms", "--marks", "/marks"]
    volumeMounts: [{name: marks, mountPath: /marks}]
    readinessProbe: {tcpSocket: {port: 5432}, periodSeconds: 1}
  volumes:
  - name: marks
    hostPath: {path: %[3]s, type: Directory}
`, harness.WorkloadImage, grace, marks))
		b.c.WaitPodReady(t, "default", "shutdown", 2*time.Minute)
		preStops := b.c.Kubectl(t, "get", "pod", "shutdown", "-o", `jsonpath={range .spec.containers[*]}{.name}={.lifecycle.preStop.exec.command}{"\n"}{end}`)
		assert.Contains(t, preStops, `api=["/.podorder/hook","--prestop","--container=api"]`)
		assert.Contains(t, preStops, `db=["/.podorder/hook","--prestop","--container=db"]`)
		assert.Contains(t, preStops, "web=\n", "nothing waits for web: no preStop")

		deleted := time.Now()
		b.c.Kubectl(t, "delete", "pod", "shutdown", "--wait=false")
		b.c.WaitFor(t, "default", "pod/shutdown", "delete", time.Duration(grace+30)*time.Second)
		var line []string
		ev := map[string][2]harness.WorkloadEvent{}
		for _, c := range []string{"web", "api", "db"} {
			log := filepath.Join(marks, c+".log")
			ev[c] = [2]harness.WorkloadEvent{markEvent(t, log, "SIGNAL"), markEvent(t, log, "EXIT")}
			assert.Equal(t, 0, ev[c][1].Code, "%s exited cleanly after its stop signal", c)
			line = append(line, fmt.Sprintf("%s signal +%s exit +%s", c, ev[c][0].At.Sub(deleted).Round(time.Millisecond), ev[c][1].At.Sub(deleted).Round(time.Millisecond)))
		}
		assert.True(t, ev["api"][0].At.After(ev["web"][1].At), "api was signalled %s before web exited", ev["web"][1].At.Sub(ev["api"][0].At))
		assert.True(t, ev["db"][0].At.After(ev["api"][1].At), "db was signalled %s before api exited", ev["api"][1].At.Sub(ev["db"][0].At))
		assert.Less(t, ev["db"][1].At.Sub(deleted), grace*time.Second, "all within the grace period")
		t.Logf("RESULT shutdown order after kubectl delete: %s (grace %ds)", strings.Join(line, "; "), grace)
	})

	t.Run("an init container waiting for a regular container is rejected naming the deadlock", func(t *testing.T) {
		b.c.ApplyYAML(t, fmt.Sprintf(`apiVersion: v1
kind: Pod
metadata:
  name: deadlock
  namespace: default
  labels:
    podorder.dev/after.setup: app
spec:
  terminationGracePeriodSeconds: 2
  initContainers:
  - name: setup
    image: %[1]s
    imagePullPolicy: Never
    args: ["--name", "setup", "--exit-after", "100ms"]
  containers:
  - name: app
    image: %[1]s
    imagePullPolicy: Never
    args: ["--name", "app"]
`, harness.WorkloadImage))
		b.c.WaitFor(t, "default", "pod/deadlock", "jsonpath={.status.initContainerStatuses[0].state.waiting.reason}=CreateContainerError", 2*time.Minute)
		msg := b.c.Kubectl(t, "get", "pod", "deadlock", "-o", "jsonpath={.status.initContainerStatuses[0].state.waiting.message}")
		assert.Contains(t, msg, `deadlock setup → app → setup (→ means "waits for"): init container setup waits for container app, but kubelet starts regular containers only after every init container completed`)
		b.c.Kubectl(t, "delete", "pod", "deadlock", "--wait=false")
	})

	t.Run("a native sidecar without a startupProbe may wait for a regular container", func(t *testing.T) {
		b.c.ApplyYAML(t, fmt.Sprintf(`apiVersion: v1
kind: Pod
metadata:
  name: sidecar-waits
  namespace: default
  labels:
    podorder.dev/after.shipper: app_started
spec:
  terminationGracePeriodSeconds: 2
  initContainers:
  - name: shipper
    image: %[1]s
    imagePullPolicy: Never
    restartPolicy: Always
    args: ["--name", "shipper"]
  containers:
  - name: app
    image: %[1]s
    imagePullPolicy: Never
    args: ["--name", "app", "--port", "8080"]
    readinessProbe: {tcpSocket: {port: 8080}, periodSeconds: 1}
`, harness.WorkloadImage))
		b.c.WaitPodReady(t, "default", "sidecar-waits", 2*time.Minute)
		shipper := b.event(t, "sidecar-waits", "shipper", "START").At
		assert.True(t, shipper.After(b.event(t, "sidecar-waits", "app", "START").At), "the sidecar was held until app ran, and kubelet started app meanwhile")
		b.c.Kubectl(t, "delete", "pod", "sidecar-waits", "--wait=false")
	})
}

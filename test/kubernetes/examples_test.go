package kubernetes

import (
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// examplesScenario applies examples/ exactly as a user would: on busybox:1.37 (setup imports one
// built from Debian's static busybox under that name) with the commands as written. It checks the
// order from what the containers themselves print: containerd stamps each log line when it reads
// it, to the nanosecond (`kubectl logs --timestamps`). Without podorder, kubelet starts a pod's
// containers within milliseconds of each other in the order listed, dependents first here, and db,
// api and the proxy print their "accepting"/"serving"/"listening" line a second or two after they
// start; so a dependent's first line after that line is podorder's hold, seen from outside it.
func examplesScenario(t *testing.T, b *bed) {
	t.Run("the examples work as applied, in order", func(t *testing.T) {
		dir, err := filepath.Abs("../../examples")
		require.NoError(t, err)
		b.c.Kubectl(t, "apply", "-f", dir)
		b.c.WaitPodReady(t, "default", "shop", 2*time.Minute)
		b.c.WaitFor(t, "default", "deployment/storefront", "condition=Available", 2*time.Minute)
		b.c.WaitFor(t, "default", "deployment/frontend", "condition=Available", 2*time.Minute)
		b.c.WaitFor(t, "default", "job/report", "condition=Complete", 2*time.Minute)

		// shop.yaml, the README's pod: migrate (an init container after db, a native sidecar) and web
		// (after api) are held.
		assert.True(t, b.logLine(t, "shop", "migrate", "migrate: migrating").After(b.logLine(t, "shop", "db", "db: accepting connections")), "migrate waited for db")
		assert.True(t, b.logLine(t, "shop", "web", "web: serving").After(b.logLine(t, "shop", "api", "api: serving")), "web waited for api")
		assert.Contains(t, b.reasons(t, "shop"), "PodorderReleased: container migrate released ")
		assert.Contains(t, b.reasons(t, "shop"), "PodorderReleased: container web released ")

		storefront := b.podOf(t, "app=storefront")
		assert.True(t, b.logLine(t, storefront, "api", "api: starting").After(b.logLine(t, storefront, "db", "db: accepting connections")), "api waited for db")
		assert.True(t, b.logLine(t, storefront, "web", "web: serving").After(b.logLine(t, storefront, "api", "api: serving")), "web waited for api")
		assert.Contains(t, b.reasons(t, storefront), "PodorderReleased: container web released ")

		frontend, catalog := b.podOf(t, "app=frontend"), b.podOf(t, "app=catalog")
		assert.True(t, b.logLine(t, frontend, "app", "app: serving").After(b.logLine(t, catalog, "db", "db: accepting connections")), "frontend waited for catalog")
		assert.Contains(t, b.reasons(t, frontend), "pod(app=catalog):ready met")

		// The Job completed, so the proxy was stopped after main and exited 0 on its SIGTERM.
		report := b.podOf(t, "batch.kubernetes.io/job-name=report", "--field-selector", "status.phase=Succeeded")
		assert.True(t, b.logLine(t, report, "main", "main: writing the report").After(b.logLine(t, report, "proxy", "proxy: listening")), "main waited for the proxy")
		b.c.Kubectl(t, "delete", "-f", dir, "--wait=false")
	})
}

// podOf returns the name of the first pod in the default namespace that matches a label selector
// (and any further `kubectl get` flags).
func (b *bed) podOf(t *testing.T, selector string, flags ...string) string {
	t.Helper()
	args := append([]string{"get", "pods", "-n", "default", "-l", selector, "-o", "jsonpath={.items[0].metadata.name}"}, flags...)
	name := strings.TrimSpace(b.c.Kubectl(t, args...))
	require.NotEmpty(t, name, "a pod matches %s %v", selector, flags)
	return name
}

// logLine returns when containerd read the first line of a container's log that starts with prefix:
// `kubectl logs --timestamps` gives its CRI log time, RFC 3339 to the nanosecond.
func (b *bed) logLine(t *testing.T, pod, container, prefix string) time.Time {
	t.Helper()
	out := b.c.Kubectl(t, "logs", "-n", "default", pod, "-c", container, "--timestamps")
	for _, line := range strings.Split(out, "\n") {
		stamp, text, ok := strings.Cut(line, " ")
		if !ok || !strings.HasPrefix(text, prefix) {
			continue
		}
		at, err := time.Parse(time.RFC3339Nano, stamp)
		require.NoError(t, err, "%s/%s: %q", pod, container, line)
		return at
	}
	t.Fatalf("%s/%s printed no line starting with %q; log:\n%s", pod, container, prefix, out)
	return time.Time{}
}

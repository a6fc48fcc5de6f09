package e2e

import (
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/podorder/podorder/test/harness"
)

// containerd v2.4.2's built-in NRI default validator (github.com/containerd/nri v0.12.3,
// plugins/default-validator), configured in the harness's config.toml. A rejection fails CRI
// CreateContainer with "failed to create containerd container: failed to get NRI adjustment for
// container: validator "00-default-validator" rejected container adjustment, reason: ...".
const (
	validatorTable = `[plugins."io.containerd.nri.v1.nri".default_validator]
  enable = true
`
	// requiredPluginsAnnotation is NRI's per-pod (or, with /container.<name>, per-container) list
	// of required plugins, a YAML/JSON list; the validator checks it even without required_plugins.
	requiredPluginsAnnotation = "required-plugins.noderesource.dev"
	// tolerateAnnotation is the key this test configures as tolerate_missing_plugins_annotation
	// (the name NRI's documentation uses; the key is the operator's choice).
	tolerateAnnotation = "tolerate-missing-nri-plugins.noderesource.dev"

	validatorRejected     = `failed to get NRI adjustment for container: validator "00-default-validator" rejected container adjustment, reason: validation error: `
	podorderMissing       = validatorRejected + `required plugin "podorder" not present`
	podorderHookRejection = validatorRejected + `plugin "10-podorder" attempted restricted OCI hook injection`
)

// failClosedEnv starts containerd with the default validator enabled and extra keys in its table,
// and imports the test images; podorder is not started.
func failClosedEnv(t *testing.T, keys ...string) *harness.Env {
	t.Helper()
	env := harness.Start(t, harness.Options{ExtraConfig: validatorTable + strings.Join(keys, "\n") + "\n"})
	env.ImportWorkloadImages(t)
	return env
}

// failClosedHeldPod is the pod every case here runs: app waits for db to have started.
func failClosedHeldPod(name string, annotations map[string]string) harness.PodSpec {
	return harness.PodSpec{
		Name:        name,
		Labels:      map[string]string{"podorder.dev/after.app": "db_started"},
		Annotations: annotations,
		Containers: []harness.ContainerSpec{
			{Name: "app", Args: args("app")},
			{Name: "db", Args: args("db")},
		},
	}
}

func failClosedPlainPod(name string, annotations map[string]string) harness.PodSpec {
	return harness.PodSpec{Name: name, Annotations: annotations, Containers: []harness.ContainerSpec{{Name: "app", Args: args("app")}}}
}

// assertRefused checks that a container was never created and that CRI said why.
func assertRefused(t *testing.T, c *harness.Container, want string) {
	t.Helper()
	require.Error(t, c.CreateErr, "container %s was created", c.Spec.Name)
	assert.Contains(t, c.CreateErr.Error(), want)
	assert.Empty(t, c.ID)
	t.Logf("CreateContainer %s: %v", c.Spec.Name, c.CreateErr)
}

// assertHeldThenReleased checks that app of a failClosedHeldPod was held (its StartContainer
// returned at once) and that its own process ran only after the runtime started db.
func assertHeldThenReleased(t *testing.T, env *harness.Env, pod *harness.Pod) {
	t.Helper()
	app, db := pod.Container("app"), pod.Container("db")
	require.NoError(t, app.CreateErr)
	require.NoError(t, db.CreateErr)
	assert.Less(t, app.StartTook, startBudget, "StartContainer of a held container returns at once")
	appStart, dbStart := started(t, app), runtimeStarted(t, env, db)
	assert.True(t, appStart.After(dbStart), "app started %s before the runtime started db", dbStart.Sub(appStart))
	assert.Contains(t, runtimeSpec(t, env, app.ID), "/.podorder/hook", "podorder held app")
}

// retryContainers creates and starts every container of pod's spec again, in spec order, as
// kubelet does after a CreateContainerError.
func retryContainers(t *testing.T, env *harness.Env, pod *harness.Pod) {
	t.Helper()
	for _, c := range pod.Spec.Containers {
		env.CreateStartContainer(t, pod, c)
	}
}

// With required_plugins = ["podorder"], the validator refuses every container of the node while
// podorder is not registered — pods without podorder keys too: the list is node-wide. Only a pod
// carrying the configured toleration annotation gets through. Once podorder runs, the refused
// containers are created on retry, and held.
func TestFailClosedRequiredPluginsRefuseEveryContainerWhilePodorderIsDown(t *testing.T) {
	env := failClosedEnv(t,
		`  required_plugins = ["podorder"]`,
		`  tolerate_missing_plugins_annotation = "`+tolerateAnnotation+`"`)

	down := env.RunPod(t, failClosedHeldPod("held-down", nil))
	assertRefused(t, down.Container("app"), podorderMissing)
	assertRefused(t, down.Container("db"), podorderMissing)

	plain := env.RunPod(t, failClosedPlainPod("plain-down", nil))
	assertRefused(t, plain.Container("app"), podorderMissing)

	tolerated := env.RunPod(t, failClosedPlainPod("tolerated-down", map[string]string{tolerateAnnotation: "true"}))
	started(t, tolerated.Container("app"))

	// kubelet retries the refused containers of the same pod; with podorder back they are held.
	po := startPodorder(t, env)
	retryContainers(t, env, down)
	assertHeldThenReleased(t, env, down)
	retryContainers(t, env, plain)
	started(t, plain.Container("app"))
	assert.Len(t, po.Logs(t, "released"), 1)
}

// The validator also checks NRI's per-pod annotation required-plugins.noderesource.dev, with no
// node-wide list: only the pods that carry it are refused while podorder is down.
func TestFailClosedPerPodRequiredPluginsAnnotationRefusesOnlyThatPod(t *testing.T) {
	env := failClosedEnv(t)
	requirePodorder := map[string]string{requiredPluginsAnnotation: `["podorder"]`}

	down := env.RunPod(t, failClosedHeldPod("held-down", requirePodorder))
	assertRefused(t, down.Container("app"), podorderMissing)
	assertRefused(t, down.Container("db"), podorderMissing)

	// Without the annotation a pod is created as if podorder did not exist: its holds are lost.
	unguarded := env.RunPod(t, failClosedHeldPod("unguarded-down", nil))
	started(t, unguarded.Container("app"))
	assert.NotContains(t, runtimeSpec(t, env, unguarded.Container("app").ID), "/.podorder/hook", "created without podorder")
	started(t, env.RunPod(t, failClosedPlainPod("plain-down", nil)).Container("app"))

	startPodorder(t, env)
	retryContainers(t, env, down)
	assertHeldThenReleased(t, env, down)
}

// With reject_oci_hook_adjustment = true, every container podorder holds fails creation: the hold
// is an OCI startContainer hook. Containers podorder does not hold are unaffected.
func TestFailClosedRejectOCIHookAdjustmentFailsHeldContainers(t *testing.T) {
	env := failClosedEnv(t, `  reject_oci_hook_adjustment = true`)
	po := startPodorder(t, env)

	pod := env.RunPod(t, failClosedHeldPod("hooks-rejected", nil))
	assertRefused(t, pod.Container("app"), podorderHookRejection)
	db := pod.Container("db")
	require.NoError(t, db.CreateErr, "db is not held: no hook, nothing to reject")
	started(t, db)
	started(t, env.RunPod(t, failClosedPlainPod("plain", nil)).Container("app"))

	// podorder decided to hold app at CreateContainer, before the validator ran; containerd's undo of
	// the failed creation then sent it a StopContainer (exit code 0) for a container that never
	// existed: podorder forgets that attempt and names the likely validator setting.
	holding := po.waitLog(t, "holding", 1, 10*time.Second)
	assert.Equal(t, "app", holding[0]["container"])
	undone := po.waitLog(t, "creation undone or never started", 1, 10*time.Second)
	assert.Equal(t, "app", undone[0]["container"])
	assert.Contains(t, undone[0]["msg"], "reject_oci_hook_adjustment = true")
	assert.Empty(t, po.Logs(t, "released"), "app was never created, so never released")
	assert.Empty(t, po.Logs(t, "exited"), "an undone creation is not an exit")
}

package kube

import (
	"encoding/json"
	"fmt"
	"runtime"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/client-go/kubernetes/fake"
	"k8s.io/client-go/tools/cache"

	"github.com/podorder/podorder/plugin/decl"
)

// realisticPod is a pod as the API serves it on a busy node: managedFields, last-applied
// annotations, labels, env, mounts, resources and five containers' statuses.
func realisticPod(i int) *corev1.Pod {
	always := corev1.ContainerRestartPolicyAlways
	svc := "health"
	now := metav1.Now()
	env := make([]corev1.EnvVar, 12)
	for j := range env {
		env[j] = corev1.EnvVar{Name: fmt.Sprintf("SETTING_%d", j), Value: strings.Repeat("v", 40)}
	}
	container := func(name string) corev1.Container {
		return corev1.Container{
			Name: name, Image: "registry.example.com/team/" + name + ":v1.2.3", Command: []string{"/bin/" + name, "--config=/etc/" + name + "/config.yaml"},
			Env:   env,
			Ports: []corev1.ContainerPort{{Name: "http", ContainerPort: 8080, Protocol: corev1.ProtocolTCP}, {Name: "metrics", ContainerPort: 9090}},
			Resources: corev1.ResourceRequirements{
				Requests: corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("100m"), corev1.ResourceMemory: resource.MustParse("128Mi")},
				Limits:   corev1.ResourceList{corev1.ResourceMemory: resource.MustParse("256Mi")},
			},
			VolumeMounts: []corev1.VolumeMount{{Name: "config", MountPath: "/etc/" + name}, {Name: "kube-api-access", MountPath: "/var/run/secrets/kubernetes.io/serviceaccount", ReadOnly: true}},
			ReadinessProbe: &corev1.Probe{ProbeHandler: corev1.ProbeHandler{HTTPGet: &corev1.HTTPGetAction{Path: "/ready", Port: intstr.FromString("http"),
				HTTPHeaders: []corev1.HTTPHeader{{Name: "X-Probe", Value: "1"}}}}, PeriodSeconds: 10, TimeoutSeconds: 1, SuccessThreshold: 1, FailureThreshold: 3},
			LivenessProbe:            &corev1.Probe{ProbeHandler: corev1.ProbeHandler{Exec: &corev1.ExecAction{Command: []string{"/bin/sh", "-c", "test -f /tmp/alive"}}}},
			TerminationMessagePath:   "/dev/termination-log",
			TerminationMessagePolicy: corev1.TerminationMessageReadFile,
			ImagePullPolicy:          corev1.PullIfNotPresent,
		}
	}
	proxy := container("proxy")
	proxy.RestartPolicy = &always
	proxy.StartupProbe = &corev1.Probe{ProbeHandler: corev1.ProbeHandler{GRPC: &corev1.GRPCAction{Port: 15021, Service: &svc}}}
	proxy.ReadinessProbe = &corev1.Probe{ProbeHandler: corev1.ProbeHandler{GRPC: &corev1.GRPCAction{Port: 15021, Service: &svc}}}
	pod := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{
			Name: fmt.Sprintf("web-7d9f8b6c5d-%05d", i), Namespace: "team", UID: types.UID(fmt.Sprintf("0b6f3c2e-5a1d-4c8e-9f7a-%012d", i)), ResourceVersion: "123456789",
			Labels: map[string]string{"app.kubernetes.io/name": "web", "app.kubernetes.io/instance": "web-prod", "app.kubernetes.io/version": "1.2.3",
				"app.kubernetes.io/component": "frontend", "app.kubernetes.io/part-of": "shop", "pod-template-hash": "7d9f8b6c5d", "team": "payments", "tier": "web"},
			Annotations: map[string]string{
				"kubectl.kubernetes.io/last-applied-configuration": strings.Repeat(`{"apiVersion":"v1","kind":"Pod","spec":{"containers":[]}}`, 40),
				"podorder.dev/after.app":                           "db,cache",
				"prometheus.io/scrape":                             "true",
			},
			ManagedFields: []metav1.ManagedFieldsEntry{
				{Manager: "kube-controller-manager", Operation: metav1.ManagedFieldsOperationUpdate, APIVersion: "v1", Time: &now, FieldsType: "FieldsV1",
					FieldsV1: metav1.NewFieldsV1(`{"f:metadata":{"f:labels":{` + strings.Repeat(`"f:x":{},`, 300) + `"f:y":{}}}}`)},
				{Manager: "kubelet", Operation: metav1.ManagedFieldsOperationUpdate, APIVersion: "v1", Time: &now, FieldsType: "FieldsV1", Subresource: "status",
					FieldsV1: metav1.NewFieldsV1(`{"f:status":{"f:conditions":{` + strings.Repeat(`"k:{\"type\":\"Ready\"}":{".":{},"f:status":{}},`, 60) + `"f:z":{}}}}`)},
			},
		},
		Spec: corev1.PodSpec{
			NodeName:       "node-1",
			InitContainers: []corev1.Container{container("migrate"), proxy},
			Containers:     []corev1.Container{container("app"), container("cache"), container("worker")},
			Volumes: []corev1.Volume{{Name: "config", VolumeSource: corev1.VolumeSource{ConfigMap: &corev1.ConfigMapVolumeSource{LocalObjectReference: corev1.LocalObjectReference{Name: "web-config"}}}},
				{Name: "kube-api-access", VolumeSource: corev1.VolumeSource{Projected: &corev1.ProjectedVolumeSource{Sources: []corev1.VolumeProjection{{ServiceAccountToken: &corev1.ServiceAccountTokenProjection{Path: "token"}}}}}}},
			Tolerations: []corev1.Toleration{{Key: "node.kubernetes.io/not-ready", Operator: corev1.TolerationOpExists, Effect: corev1.TaintEffectNoExecute}},
		},
		Status: corev1.PodStatus{
			Phase: corev1.PodRunning, HostIP: "10.0.0.1", PodIP: "10.244.1.17", StartTime: &now,
			Conditions: []corev1.PodCondition{{Type: corev1.PodReady, Status: corev1.ConditionTrue, LastTransitionTime: now}, {Type: corev1.PodScheduled, Status: corev1.ConditionTrue}},
		},
	}
	status := func(name string, ready bool) corev1.ContainerStatus {
		return corev1.ContainerStatus{Name: name, Ready: ready, ContainerID: "containerd://" + strings.Repeat("ab", 32), Image: "registry.example.com/team/" + name + ":v1.2.3",
			ImageID: "registry.example.com/team/" + name + "@sha256:" + strings.Repeat("cd", 32), RestartCount: 1,
			State: corev1.ContainerState{Running: &corev1.ContainerStateRunning{StartedAt: now}},
			LastTerminationState: corev1.ContainerState{Terminated: &corev1.ContainerStateTerminated{ExitCode: 1, Reason: "Error", Message: strings.Repeat("last words ", 40),
				ContainerID: "containerd://" + strings.Repeat("ef", 32)}}}
	}
	pod.Status.InitContainerStatuses = []corev1.ContainerStatus{status("migrate", false), status("proxy", true)}
	pod.Status.ContainerStatuses = []corev1.ContainerStatus{status("app", true), status("cache", false), status("worker", true)}
	return pod
}

// nodePodCases are pods exercising every branch of what kube reads from the node's pods.
func nodePodCases() map[string]*corev1.Pod {
	now := metav1.Now()
	many := make([]corev1.HTTPHeader, maxProbeHeaders+4)
	for i := range many {
		many[i] = corev1.HTTPHeader{Name: fmt.Sprintf("H%d", i), Value: "v"}
	}
	probed := func(h corev1.ProbeHandler) *corev1.Pod {
		pod := realisticPod(1)
		pod.Spec.Containers[0].ReadinessProbe = &corev1.Probe{ProbeHandler: h, InitialDelaySeconds: 2, SuccessThreshold: 3, TimeoutSeconds: 4}
		return pod
	}
	terminating := realisticPod(2)
	terminating.DeletionTimestamp = &now
	noStatus := realisticPod(3)
	noStatus.Status = corev1.PodStatus{}
	noProbe := realisticPod(4)
	noProbe.Spec.Containers[0].ReadinessProbe = nil
	return map[string]*corev1.Pod{
		"realistic":        realisticPod(0),
		"terminating":      terminating,
		"not started":      noStatus,
		"no probe":         noProbe,
		"tcp named port":   probed(corev1.ProbeHandler{TCPSocket: &corev1.TCPSocketAction{Port: intstr.FromString("metrics")}}),
		"tcp unknown port": probed(corev1.ProbeHandler{TCPSocket: &corev1.TCPSocketAction{Port: intstr.FromString("ghost")}}),
		"tcp other host":   probed(corev1.ProbeHandler{TCPSocket: &corev1.TCPSocketAction{Port: intstr.FromInt32(1), Host: "10.0.0.9"}}),
		"https":            probed(corev1.ProbeHandler{HTTPGet: &corev1.HTTPGetAction{Port: intstr.FromInt32(8443), Scheme: corev1.URISchemeHTTPS, Path: "ready"}}),
		"http other host":  probed(corev1.ProbeHandler{HTTPGet: &corev1.HTTPGetAction{Port: intstr.FromInt32(80), Host: "example.com"}}),
		"too many headers": probed(corev1.ProbeHandler{HTTPGet: &corev1.HTTPGetAction{Port: intstr.FromInt32(80), HTTPHeaders: many}}),
		"grpc no service":  probed(corev1.ProbeHandler{GRPC: &corev1.GRPCAction{Port: 9090}}),
		"exec":             probed(corev1.ProbeHandler{Exec: &corev1.ExecAction{Command: []string{"cat", "/tmp/ready"}}}),
		"empty handler":    probed(corev1.ProbeHandler{}),
	}
}

func TestStripNodePodKeepsWhatKubeReads(t *testing.T) {
	for name, pod := range nodePodCases() {
		t.Run(name, func(t *testing.T) {
			obj, err := stripNodePod(pod)
			require.NoError(t, err)
			stripped := obj.(*corev1.Pod)

			fullKey, err := cache.MetaNamespaceKeyFunc(pod)
			require.NoError(t, err)
			key, err := cache.MetaNamespaceKeyFunc(stripped)
			require.NoError(t, err)
			assert.Equal(t, fullKey, key, "store key")
			assert.Equal(t, pod.UID, stripped.UID, "byUID index and PodDeleted")
			assert.Equal(t, pod.ResourceVersion, stripped.ResourceVersion)
			assert.Equal(t, pod.DeletionTimestamp != nil, stripped.DeletionTimestamp != nil, "Terminating")
			assert.Equal(t, ReadyContainers(pod), ReadyContainers(stripped))
			assert.Equal(t, ExitedContainers(pod), ExitedContainers(stripped))
			assert.Equal(t, PodContainers(pod), PodContainers(stripped))
			for _, c := range append(PodContainers(pod), decl.Container{Name: "ghost"}) {
				full, got := findContainer(pod, c.Name), findContainer(stripped, c.Name)
				require.Equal(t, full == nil, got == nil, c.Name)
				if full != nil {
					assert.Equal(t, full.ReadinessProbe != nil, got.ReadinessProbe != nil, "HasReadinessProbe of %s", c.Name)
				}
				wantProbe, wantWhy := ReadinessProbe(pod, c.Name)
				gotProbe, gotWhy := ReadinessProbe(stripped, c.Name)
				assert.Equal(t, wantProbe, gotProbe, "ReadinessProbe of %s", c.Name)
				if name == "too many headers" && c.Name == "app" {
					assert.Contains(t, gotWhy, fmt.Sprintf("more than the %d headers podorder copies", maxProbeHeaders))
				}
				assert.Equal(t, wantWhy, gotWhy, "why of %s", c.Name)
			}

			assert.Nil(t, stripped.Labels)
			assert.Nil(t, stripped.Annotations)
			assert.Nil(t, stripped.ManagedFields)
			assert.Nil(t, stripped.Spec.Volumes)
			for _, c := range append(stripped.Spec.InitContainers, stripped.Spec.Containers...) {
				assert.Nil(t, c.Env, c.Name)
				assert.Empty(t, c.Image, c.Name)
				assert.Nil(t, c.LivenessProbe, c.Name)
			}
			again, err := stripNodePod(stripped)
			require.NoError(t, err)
			assert.Equal(t, stripped, again, "idempotent")
		})
	}
}

func TestStripNodePodPassesTombstonesThrough(t *testing.T) {
	tomb := cache.DeletedFinalStateUnknown{Key: "team/web", Obj: realisticPod(0)}
	out, err := stripNodePod(tomb)
	require.NoError(t, err)
	assert.Equal(t, tomb, out)
}

func TestNodePodInformerCachesStrippedPodsAndAnswersFromThem(t *testing.T) {
	full := realisticPod(0)
	client := fake.NewSimpleClientset(full.DeepCopy())
	informer, err := nodePodInformer(client, "node-1")
	require.NoError(t, err)
	s, _ := sourceOf(t, client)
	s.nodePods = informer
	go informer.RunWithContext(s.ctx)
	require.True(t, cache.WaitForCacheSync(s.ctx.Done(), informer.HasSynced))

	obj, exists, err := informer.GetStore().GetByKey("team/" + full.Name)
	require.NoError(t, err)
	require.True(t, exists)
	cached := obj.(*corev1.Pod)
	assert.Nil(t, cached.ManagedFields)
	assert.Nil(t, cached.Annotations)
	assert.Nil(t, cached.Labels)

	cs, known := s.Containers(string(full.UID))
	require.True(t, known)
	assert.Equal(t, PodContainers(full), cs, "the stripped cache gives the same containers, readiness included")
	want, _ := ReadinessProbe(full, "app")
	require.NotNil(t, want)
	for _, c := range cs {
		if c.Name == "app" {
			assert.True(t, c.ReadinessProbe)
			assert.Equal(t, want, c.ReadinessCheck)
		}
	}
}

// TestNodeCacheHeapAtNodeScale measures what the node's pod cache retains for a full node (110 pods
// of 5 containers each, decoded as from the API) with and without stripNodePod.
func TestNodeCacheHeapAtNodeScale(t *testing.T) {
	const pods = 110
	raw := make([][]byte, pods)
	for i := range raw {
		b, err := json.Marshal(realisticPod(i))
		require.NoError(t, err)
		raw[i] = b
	}
	decode := func(strip bool) []any {
		out := make([]any, pods)
		for i, b := range raw {
			pod := &corev1.Pod{}
			require.NoError(t, json.Unmarshal(b, pod))
			out[i] = pod
			if strip {
				var err error
				out[i], err = stripNodePod(pod)
				require.NoError(t, err)
			}
		}
		return out
	}
	full := retained(func() any { return decode(false) })
	stripped := retained(func() any { return decode(true) })
	t.Logf("node cache of %d pods × 5 containers: full %d KiB (%d B/pod, %d B JSON/pod), stripped %d KiB (%d B/pod)",
		pods, full/1024, full/pods, len(raw[0]), stripped/1024, stripped/pods)
	// What remains is mostly the Go structs themselves: a corev1.Container is large even when empty.
	assert.Less(t, stripped*4, full, "stripped pods cost under a quarter of full ones")
}

// retained returns the heap still held by what build returns, after a garbage collection.
func retained(build func() any) uint64 {
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	kept := build()
	runtime.GC()
	runtime.ReadMemStats(&after)
	runtime.KeepAlive(kept)
	if after.HeapAlloc < before.HeapAlloc {
		return 0
	}
	return after.HeapAlloc - before.HeapAlloc
}

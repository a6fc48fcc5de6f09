package chart

import (
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/yaml"
)

// renderDaemonSet renders the chart with values and returns its DaemonSet.
func renderDaemonSet(t *testing.T, values ...string) appsv1.DaemonSet {
	t.Helper()
	docs := render(t, sets(values...)...)
	require.Len(t, docs["DaemonSet"], 1)
	var ds appsv1.DaemonSet
	require.NoError(t, yaml.Unmarshal([]byte(docs["DaemonSet"][0]), &ds))
	return ds
}

// assertEnablesNRI checks the pod's enable-nri init container: first, the same image as the daemon,
// root without any capability on a read-only root, the config's directory from the host.
func assertEnablesNRI(t *testing.T, pod corev1.PodSpec, configDir string, args ...string) {
	t.Helper()
	require.Len(t, pod.InitContainers, 2)
	c := pod.InitContainers[0]
	assert.Equal(t, "enable-nri", c.Name)
	assert.Equal(t, "install-hook", pod.InitContainers[1].Name, "the hook is still installed")
	assert.Equal(t, pod.Containers[0].Image, c.Image)
	assert.Equal(t, args, c.Args)
	sc := c.SecurityContext
	require.NotNil(t, sc)
	assert.Equal(t, ptr.To[int64](0), sc.RunAsUser)
	assert.Equal(t, ptr.To(true), sc.ReadOnlyRootFilesystem)
	assert.Equal(t, ptr.To(false), sc.AllowPrivilegeEscalation)
	require.NotNil(t, sc.Capabilities)
	assert.Equal(t, []corev1.Capability{"ALL"}, sc.Capabilities.Drop)
	assert.Empty(t, sc.Capabilities.Add)
	assert.Nil(t, sc.Privileged)
	require.NotEmpty(t, c.VolumeMounts)
	assert.Equal(t, corev1.VolumeMount{Name: "containerd-config", MountPath: "/host" + configDir}, c.VolumeMounts[0])
	assert.Contains(t, pod.Volumes, corev1.Volume{Name: "containerd-config", VolumeSource: corev1.VolumeSource{
		HostPath: &corev1.HostPathVolumeSource{Path: configDir, Type: ptr.To(corev1.HostPathDirectory)}}})
}

// volumeNames are the pod's volumes' names.
func volumeNames(pod corev1.PodSpec) []string {
	var names []string
	for _, v := range pod.Volumes {
		names = append(names, v.Name)
	}
	return names
}

func TestTheChartPatchesContainerdsConfigOnlyWhenAsked(t *testing.T) {
	off := renderDaemonSet(t).Spec.Template.Spec
	require.Len(t, off.InitContainers, 1)
	assert.NotContains(t, volumeNames(off), "containerd-config")

	on := renderDaemonSet(t, "nri.patchConfig.enabled=true").Spec.Template.Spec
	assertEnablesNRI(t, on, "/etc/containerd", "enable-nri", "--config=/host/etc/containerd/config.toml")
	assert.Len(t, on.InitContainers[0].VolumeMounts, 1, "no systemd without restart")
	assert.NotContains(t, volumeNames(on), "systemd")

	moved := renderDaemonSet(t, "nri.patchConfig.enabled=true", "nri.patchConfig.configPath=/var/lib/node/containerd.toml").Spec.Template.Spec
	assertEnablesNRI(t, moved, "/var/lib/node", "enable-nri", "--config=/host/var/lib/node/containerd.toml")
}

func TestTheChartsRestartOfContainerdMountsSystemdsSocket(t *testing.T) {
	pod := renderDaemonSet(t, "nri.patchConfig.enabled=true", "nri.patchConfig.restart=true").Spec.Template.Spec
	assertEnablesNRI(t, pod, "/etc/containerd", "enable-nri", "--config=/host/etc/containerd/config.toml", "--restart")
	assert.Contains(t, pod.InitContainers[0].VolumeMounts, corev1.VolumeMount{Name: "systemd", MountPath: "/run/systemd"})
	assert.Contains(t, pod.Volumes, corev1.Volume{Name: "systemd", VolumeSource: corev1.VolumeSource{
		HostPath: &corev1.HostPathVolumeSource{Path: "/run/systemd", Type: ptr.To(corev1.HostPathDirectory)}}})
	for _, c := range pod.Containers {
		for _, m := range c.VolumeMounts {
			assert.NotEqual(t, "systemd", m.Name, "only the init container reaches systemd")
		}
	}
}

func TestAConfigPathThatIsNotAnAbsoluteFileFailsRendering(t *testing.T) {
	for _, path := range []string{"etc/containerd/config.toml", "/etc/containerd/", ""} {
		out, err := renderErr(t, sets("nri.patchConfig.enabled=true", "nri.patchConfig.configPath="+path)...)
		require.Error(t, err, path)
		assert.Contains(t, out, "configPath", path)
	}
}

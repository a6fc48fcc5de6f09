package harness

import (
	"context"
	"net"
	"os"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// TestPrivateContainerdRunsAPodOfWorkloadsWithNRIEnabled starts a real containerd v2.4.2 with
// runc, imports the test images and runs a two-container host-network pod through CRI.
func TestPrivateContainerdRunsAPodOfWorkloadsWithNRIEnabled(t *testing.T) {
	env := Start(t, Options{})
	env.ImportWorkloadImages(t)

	pod := env.RunPod(t, PodSpec{
		Name: "smoke",
		Containers: []ContainerSpec{
			{Name: "a", Args: []string{"--name", "a", "--print-id"}},
			{Name: "b", Args: []string{"--name", "b", "--listen-after", "100ms", "--port", "18080"}},
			{Name: "c", Args: []string{"--name", "c", "--listen-on", "USR1", "--port", "18081"}},
		},
	})
	require.Len(t, pod.Containers, 3)
	for _, c := range pod.Containers {
		require.NoError(t, c.CreateErr)
		require.NoError(t, c.StartErr)
		t.Logf("%s: CreateContainer %s, StartContainer %s", c.Spec.Name, c.CreateTook, c.StartTook)
	}

	a := WaitWorkloadEvent(t, pod.Container("a"), "START", 10*time.Second)
	assert.Equal(t, "a", a.Name)
	assert.WithinDuration(t, time.Now(), a.At, 30*time.Second)
	assert.Equal(t, "ID a uid=0 gid=0 rootfs=rw", WaitLogLine(t, pod.Container("a").LogPath, "ID ", 5*time.Second))
	b := WaitWorkloadEvent(t, pod.Container("b"), "START", 10*time.Second)
	listen := WaitWorkloadEvent(t, pod.Container("b"), "LISTEN", 10*time.Second)
	assert.GreaterOrEqual(t, listen.At.Sub(b.At), 100*time.Millisecond)
	conn, err := net.DialTimeout("tcp", "127.0.0.1:18080", time.Second)
	require.NoError(t, err, "b listens on the host network")
	require.NoError(t, conn.Close())

	// c opens its port when the test says so, and not before.
	WaitWorkloadEvent(t, pod.Container("c"), "START", 10*time.Second)
	_, err = net.DialTimeout("tcp", "127.0.0.1:18081", time.Second)
	require.Error(t, err, "c listens only on SIGUSR1")
	signalled := time.Now()
	env.Signal(t, pod.Container("c").ID, syscall.SIGUSR1)
	assert.True(t, WaitWorkloadEvent(t, pod.Container("c"), "LISTEN", 10*time.Second).At.After(signalled))

	env.StopContainer(t, pod.Container("a").ID, 10*time.Second)
	code, reason, _ := env.WaitExited(t, pod.Container("a").ID, 10*time.Second)
	assert.Equal(t, int32(0), code, "workload exits 0 on SIGTERM")
	assert.Equal(t, "Completed", reason)
	exit := WaitWorkloadEvent(t, pod.Container("a"), "EXIT", 5*time.Second)
	assert.Equal(t, 0, exit.Code)

	env.StopPod(t, pod)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	pods, err := env.Runtime.ListPodSandbox(ctx, &runtimeapi.ListPodSandboxRequest{})
	require.NoError(t, err)
	assert.Empty(t, pods.Items)

	_, err = os.Stat(env.NRISocket)
	require.NoError(t, err, "containerd serves NRI on %s", env.NRISocket)
	log, err := os.ReadFile(env.LogPath())
	require.NoError(t, err)
	assert.Contains(t, string(log), "created NRI interface")
	assert.NotContains(t, string(log), "NRI interface is disabled")
}

// TestPodNetworkGivesEachPodANetworkNamespaceOfItsOwn runs two pod-network pods whose servers listen
// on one port, which on the host's network only one of them could.
func TestPodNetworkGivesEachPodANetworkNamespaceOfItsOwn(t *testing.T) {
	env := Start(t, Options{PodNetwork: true})
	env.ImportWorkloadImages(t)
	const port = "18090"
	var pods []*Pod
	for _, name := range []string{"one", "two"} {
		pod := env.RunPod(t, PodSpec{Name: name, PodNetwork: true,
			Containers: []ContainerSpec{{Name: "s", Args: []string{"--name", "s", "--listen-after", "0s", "--port", port}}}})
		require.NoError(t, pod.Containers[0].StartErr)
		pods = append(pods, pod)
	}
	for _, pod := range pods {
		WaitWorkloadEvent(t, pod.Container("s"), "LISTEN", 10*time.Second)
	}
	_, err := net.DialTimeout("tcp", "127.0.0.1:"+port, time.Second)
	require.Error(t, err, "the servers listen in their pods' network namespaces, not on the host's")
	for _, pod := range pods {
		env.StopPod(t, pod)
	}
}

// TestRestartKeepsPodsRunningAndClientsWorking restarts the private containerd under a running pod.
func TestRestartKeepsPodsRunningAndClientsWorking(t *testing.T) {
	env := Start(t, Options{})
	env.ImportWorkloadImages(t)
	pod := env.RunPod(t, PodSpec{Name: "restart", Containers: []ContainerSpec{{Name: "a", Args: []string{"--name", "a"}}}})
	require.NoError(t, pod.Containers[0].StartErr)
	WaitWorkloadEvent(t, pod.Containers[0], "START", 10*time.Second)

	env.Restart(t)

	st := env.ContainerStatus(t, pod.Containers[0].ID)
	assert.Equal(t, runtimeapi.ContainerState_CONTAINER_RUNNING, st.State)
	out, err := env.Ctr("containers", "ls", "-q")
	require.NoError(t, err)
	assert.Contains(t, strings.Fields(out), pod.Containers[0].ID)
}

func TestParseWorkloadEventReadsEachKind(t *testing.T) {
	for _, tc := range []struct {
		line string
		want WorkloadEvent
		err  bool
	}{
		{line: "START a 1000", want: WorkloadEvent{Kind: "START", Name: "a", At: time.Unix(0, 1000)}},
		{line: "LISTEN b 2000", want: WorkloadEvent{Kind: "LISTEN", Name: "b", At: time.Unix(0, 2000)}},
		{line: "EXIT c 3000 7", want: WorkloadEvent{Kind: "EXIT", Name: "c", At: time.Unix(0, 3000), Code: 7}},
		{line: "EXIT c 3000", err: true},
		{line: "START a soon", err: true},
		{line: "hello", err: true},
	} {
		t.Run(tc.line, func(t *testing.T) {
			got, err := ParseWorkloadEvent(tc.line)
			if tc.err {
				assert.Error(t, err)
				return
			}
			require.NoError(t, err)
			assert.Equal(t, tc.want, got)
		})
	}
}

func TestReadLogJoinsPartialLines(t *testing.T) {
	path := t.TempDir() + "/c.log"
	require.NoError(t, os.WriteFile(path, []byte(
		"2026-01-01T00:00:00.000000001Z stdout F START a 1\n"+
			"2026-01-01T00:00:00.000000002Z stderr P half \n"+
			"2026-01-01T00:00:00.000000003Z stderr F and half\n"+
			"2026-01-01T00:00:00.000000004Z stdout F \n"+
			"2026-01-01T00:00:00.000000005Z stdout F unterminat"), 0o644))
	lines, err := ReadLog(path)
	require.NoError(t, err)
	assert.Equal(t, []string{"START a 1", "half and half", ""}, lines)
}

func TestUnescapeMountPathDecodesOctalEscapes(t *testing.T) {
	assert.Equal(t, "/tmp/a b/c", unescapeMountPath(`/tmp/a\040b/c`))
	assert.Equal(t, "/tmp/plain", unescapeMountPath("/tmp/plain"))
}

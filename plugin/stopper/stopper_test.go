package stopper

import (
	"bufio"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// testID looks like a containerd container ID.
const testID = "4f1c2b7e9a0d3c5b8e6f1a2d4c7b9e0f3a5d8c1b6e9f2a4d7c0b3e5f8a1d6c9b"

func TestSignalReachesTheProcessAndReportsItsExit(t *testing.T) {
	tests := map[string]struct {
		sig  syscall.Signal
		want syscall.Signal
	}{
		"stop signal": {syscall.SIGTERM, syscall.SIGTERM},
		"kill":        {syscall.SIGKILL, syscall.SIGKILL},
	}
	for name, tt := range tests {
		t.Run(name, func(t *testing.T) {
			cmd := startInCgroup(t, "cri-containerd-"+testID+".scope")
			p, err := Open(uint32(cmd.Process.Pid), testID)
			require.NoError(t, err)
			defer p.Close()

			require.NoError(t, p.Signal(tt.sig))
			err = cmd.Wait()
			var exit *exec.ExitError
			require.ErrorAs(t, err, &exit)
			ws := exit.Sys().(syscall.WaitStatus)
			assert.Equal(t, tt.want, ws.Signal())
			// Reaped: the PID may be reused now, and the handle still refers to the old process.
			assert.ErrorIs(t, p.Signal(syscall.SIGTERM), ErrExited)
		})
	}
}

func TestOpenRefusesAProcessOutsideTheContainersCgroup(t *testing.T) {
	tests := map[string]struct {
		cgroup    string // "" leaves the process in the test's own cgroup
		container string
		wantErr   error
	}{
		"the container's own process":                 {cgroup: "cri-containerd-" + testID + ".scope", container: testID},
		"a process in another container's cgroup":     {cgroup: "cri-containerd-" + strings.Repeat("e", 64) + ".scope", container: testID, wantErr: ErrNotContainer},
		"a process of no container that reused a PID": {container: testID, wantErr: ErrNotContainer},
	}
	for name, tt := range tests {
		t.Run(name, func(t *testing.T) {
			var cmd *exec.Cmd
			if tt.cgroup == "" {
				cmd = exec.Command("sleep", "60")
				require.NoError(t, cmd.Start())
				t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
			} else {
				cmd = startInCgroup(t, tt.cgroup)
			}
			p, err := Open(uint32(cmd.Process.Pid), tt.container)
			if tt.wantErr != nil {
				require.ErrorIs(t, err, tt.wantErr)
				assert.Nil(t, p)
				return
			}
			require.NoError(t, err)
			defer p.Close()
			assert.NoError(t, p.Signal(0))
		})
	}
}

func TestOpenRefusesAProcessThatExited(t *testing.T) {
	cmd := exec.Command("true")
	require.NoError(t, cmd.Run())
	_, err := Open(uint32(cmd.Process.Pid), testID)
	assert.ErrorIs(t, err, ErrExited)
}

func TestOpenRefusesNoPIDOrNoContainer(t *testing.T) {
	_, err := Open(0, testID)
	assert.Error(t, err)
	_, err = Open(uint32(os.Getpid()), "")
	assert.Error(t, err)
}

func TestInContainerFindsTheContainersIDInAnyCgroupLayout(t *testing.T) {
	tests := map[string]struct {
		cgroups string
		want    bool
	}{
		"v2, systemd driver":  {"0::/kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-pod1.slice/cri-containerd-" + testID + ".scope\n", true},
		"v2, cgroupfs driver": {"0::/kubepods/besteffort/pod1/" + testID + "\n", true},
		"v2, CRI-O":           {"0::/kubepods.slice/kubepods-pod1.slice/crio-" + testID + ".scope\n", true},
		"v2, seen from podorder's own cgroup namespace":      {"0::/../../kubepods-besteffort-pod1.slice/cri-containerd-" + testID + ".scope\n", true},
		"v2, below the container's cgroup (systemd as init)": {"0::/kubepods/besteffort/pod1/" + testID + "/init.scope\n", true},
		"v1":                    {"12:pids:/kubepods/pod1/" + testID + "\n11:memory:/kubepods/pod1/" + testID + "\n0::/\n", true},
		"v2, another container": {"0::/kubepods/besteffort/pod1/" + strings.Repeat("e", 64) + "\n", false},
		"v2, the pod's cgroup":  {"0::/kubepods/besteffort/pod1\n", false},
		"a host process":        {"0::/system.slice/sshd.service\n", false},
		"empty":                 {"", false},
	}
	for name, tt := range tests {
		t.Run(name, func(t *testing.T) {
			assert.Equal(t, tt.want, inContainer(tt.cgroups, testID))
		})
	}
	assert.False(t, inContainer("0::/\n", ""), "no ID matches nothing")
}

// startInCgroup starts a sleeping child in a new cgroup called name, as a runtime starts a
// container's process; it needs root and a cgroup v2 hierarchy.
func startInCgroup(t *testing.T, name string) *exec.Cmd {
	t.Helper()
	root := cgroup2Mount(t)
	dir := filepath.Join(root, "podorder-test-"+strconv.Itoa(os.Getpid()), name)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Skipf("cannot create a cgroup (the test needs root): %v", err)
	}
	t.Cleanup(func() { _ = os.Remove(dir); _ = os.Remove(filepath.Dir(dir)) })
	cg, err := os.Open(dir)
	require.NoError(t, err)
	defer cg.Close()
	cmd := exec.Command("sleep", "60")
	cmd.SysProcAttr = &syscall.SysProcAttr{UseCgroupFD: true, CgroupFD: int(cg.Fd())}
	require.NoError(t, cmd.Start())
	t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
	return cmd
}

// cgroup2Mount returns where the cgroup v2 hierarchy is mounted.
func cgroup2Mount(t *testing.T) string {
	t.Helper()
	f, err := os.Open("/proc/self/mountinfo")
	require.NoError(t, err)
	defer f.Close()
	s := bufio.NewScanner(f)
	for s.Scan() {
		// ID parent major:minor root mountpoint options [optional...] - fstype source super-options
		pre, post, ok := strings.Cut(s.Text(), " - ")
		if fields := strings.Fields(pre); ok && len(fields) >= 5 && strings.HasPrefix(post, "cgroup2 ") {
			return fields[4]
		}
	}
	t.Skip("no cgroup v2 hierarchy is mounted")
	return ""
}

// Package e2e runs podorder's scenarios against real parts: a private containerd v2.4.2 with NRI
// enabled, runc v1.3.6, the podorder daemon as a process connected to containerd's NRI socket, and
// pods driven through the CRI API the way kubelet drives them (RunPodSandbox, then CreateContainer
// and StartContainer for each container in spec order, one after the other).
package e2e

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"golang.org/x/sys/unix"

	"github.com/podorder/podorder/hooks/tombstone"
	"github.com/podorder/podorder/test/harness"
)

var (
	buildOnce sync.Once
	binDir    string
	buildErr  error
)

// mutant is the planted bug the daemon and the hook are built with (PODORDER_MUTANT, set by
// `make mutants`: the build tag mutant_<name>); empty for the real build.
func mutant() string {
	if m := os.Getenv("PODORDER_MUTANT"); m != "none" {
		return m
	}
	return ""
}

// buildPodorder builds the daemon and the static hook once per test binary, with the planted bug
// PODORDER_MUTANT names, if any.
func buildPodorder(t testing.TB) string {
	t.Helper()
	buildOnce.Do(func() {
		binDir, buildErr = os.MkdirTemp("", "podorder-bin-")
		if buildErr != nil {
			return
		}
		build := []string{"build", "-trimpath"}
		if m := mutant(); m != "" {
			build = append(build, "-tags", "mutant_"+m)
		}
		for _, pkg := range []string{"podorder", "podorder-hook"} {
			cmd := exec.Command("go", append(build, "-o", filepath.Join(binDir, pkg), "github.com/podorder/podorder/cmd/"+pkg)...)
			cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
			if out, err := cmd.CombinedOutput(); err != nil {
				buildErr = fmt.Errorf("build %s: %v\n%s", pkg, err, out)
				return
			}
		}
		// The hook runs as the containers' uids.
		buildErr = os.Chmod(binDir, 0o755)
	})
	require.NoError(t, buildErr)
	return binDir
}

// Podorder is a running podorder daemon connected to a harness containerd.
type Podorder struct {
	Store   tombstone.Store
	LogPath string
	args    []string
	mu      sync.Mutex // guards cmd, which a restart replaces while others read its pid
	cmd     *exec.Cmd
	done    chan struct{}
}

// storeTmpfs mounts a tmpfs for podorder's store under the env's directory, as /run is on a node
// (this machine's /run and /tmp are disk): writes and Synchronize's reads then cost what they do in
// production. The store is a directory inside it, so that tests may remove the store itself.
func storeTmpfs(t *testing.T, env *harness.Env) string {
	t.Helper()
	dir := filepath.Join(env.Dir, "run")
	require.NoError(t, os.MkdirAll(dir, 0o755))
	var st unix.Statfs_t
	if unix.Statfs(dir, &st) == nil && st.Type == unix.TMPFS_MAGIC {
		return dir // a daemon started earlier in this env mounted it
	}
	require.NoError(t, unix.Mount("tmpfs", dir, "tmpfs", 0, "mode=0755,size=256m"))
	// Detached, not unmounted: containers of the test may still hold bind mounts from it.
	t.Cleanup(func() { _ = unix.Unmount(dir, unix.MNT_DETACH) })
	return dir
}

// startPodorder starts the daemon and waits until it has synchronized with containerd; extra flags
// come last and win.
func startPodorder(t *testing.T, env *harness.Env, extra ...string) *Podorder {
	t.Helper()
	bin := buildPodorder(t)
	p := &Podorder{
		Store:   tombstone.Store{Root: filepath.Join(storeTmpfs(t, env), "podorder")},
		LogPath: filepath.Join(env.Dir, "podorder.log"),
	}
	p.args = []string{filepath.Join(bin, "podorder"), "daemon",
		"--nri-socket=" + env.NRISocket,
		"--store-dir=" + p.Store.Root,
		"--hook-binary=" + filepath.Join(bin, "podorder-hook"),
		"--log-format=json",
		"--log-level=debug",
		"--health-addr=",
		"--metrics-addr=",
		// The harness's pods are host-network and the daemon is a host process.
		"--probe-host-network",
	}
	p.args = append(p.args, extra...)
	p.start(t)
	t.Cleanup(func() {
		p.stop()
		if t.Failed() {
			out, _ := os.ReadFile(p.LogPath)
			t.Logf("podorder log:\n%s", out)
		}
	})
	return p
}

func (p *Podorder) start(t *testing.T) {
	t.Helper()
	logf, err := os.OpenFile(p.LogPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	require.NoError(t, err)
	defer logf.Close()
	before := p.countLines(t, "synchronized with the runtime")
	cmd := exec.Command(p.args[0], p.args[1:]...)
	cmd.Stdout, cmd.Stderr = logf, logf
	require.NoError(t, cmd.Start())
	p.mu.Lock()
	p.cmd = cmd
	p.mu.Unlock()
	p.done = make(chan struct{})
	go func(cmd *exec.Cmd, done chan struct{}) { _ = cmd.Wait(); close(done) }(p.cmd, p.done)
	// A deadline, not a delay: after a containerd restart with a few hundred containers, on two
	// loaded cores, the first Synchronize can take a while.
	p.waitLog(t, "synchronized with the runtime", before+1, 2*time.Minute)
}

// Kill ends the daemon with SIGKILL, as a crash or an OOM kill would.
func (p *Podorder) Kill(t *testing.T) {
	t.Helper()
	require.NoError(t, p.cmd.Process.Signal(syscall.SIGKILL))
	<-p.done
}

// pid is the daemon's process ID.
func (p *Podorder) pid() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.cmd.Process.Pid
}

// Restart starts a killed daemon again and waits for its Synchronize.
func (p *Podorder) Restart(t *testing.T) { p.start(t) }

func (p *Podorder) stop() {
	if p.cmd != nil && p.cmd.Process != nil {
		_ = p.cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-p.done:
		case <-time.After(5 * time.Second):
			_ = p.cmd.Process.Kill()
			<-p.done
		}
	}
}

// Logs returns the daemon's log records whose message contains msg.
func (p *Podorder) Logs(t testing.TB, msg string) []map[string]any {
	t.Helper()
	data, err := os.ReadFile(p.LogPath)
	require.NoError(t, err)
	var out []map[string]any
	for _, line := range bytes.Split(data, []byte("\n")) {
		var rec map[string]any
		if json.Unmarshal(line, &rec) == nil && strings.Contains(fmt.Sprint(rec["msg"]), msg) {
			out = append(out, rec)
		}
	}
	return out
}

func (p *Podorder) countLines(t testing.TB, msg string) int {
	if _, err := os.Stat(p.LogPath); err != nil {
		return 0
	}
	return len(p.Logs(t, msg))
}

// waitLog waits until the daemon has logged msg n times. The daemon is another process: its log
// file is the event, read every 20 ms.
func (p *Podorder) waitLog(t testing.TB, msg string, n int, timeout time.Duration) []map[string]any {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		if recs := p.Logs(t, msg); len(recs) >= n {
			return recs
		}
		if time.Now().After(deadline) {
			data, _ := os.ReadFile(p.LogPath)
			t.Fatalf("podorder did not log %q %d times within %s; log:\n%s", msg, n, timeout, data)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// freePort returns a TCP port nothing listens on; pods here share the host network.
func freePort(t testing.TB) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// setup starts containerd with NRI, imports the test images and starts podorder.
func setup(t *testing.T) (*harness.Env, *Podorder) {
	t.Helper()
	env := harness.Start(t, harness.Options{})
	env.ImportWorkloadImages(t)
	return env, startPodorder(t, env)
}

// started waits for a container's first line and returns when it printed it.
func started(t testing.TB, c *harness.Container) time.Time {
	t.Helper()
	require.NoError(t, c.CreateErr)
	require.NoError(t, c.StartErr)
	return harness.WaitWorkloadEvent(t, c, "START", 30*time.Second).At
}

func args(name string, extra ...string) []string { return append([]string{"--name", name}, extra...) }

// Package harness starts a real, private containerd (v2.4.2 with NRI enabled, runc as its runtime)
// for one test and drives it over the CRI API the way kubelet does. Everything the daemon writes —
// root, state, sockets, shim sockets, runc state, pod logs — lives under one directory in /tmp, so
// a test never touches a system containerd.
//
// The binaries come from hack/install-deps.sh (${PODORDER_CACHE:-/var/cache/podorder}/bin) and the
// tests must run as root. Without them a test is skipped, or fails when CI=true.
package harness

import (
	"bufio"
	"cmp"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// Namespace is the containerd namespace the CRI plugin works in.
const Namespace = "k8s.io"

// startTimeout bounds how long containerd may take to answer its first CRI call.
const startTimeout = 30 * time.Second

// Options tune the private containerd.
type Options struct {
	// RuncPath replaces the cache's runc, e.g. with Debian's /usr/sbin/runc 1.1.5.
	RuncPath string
	// NRIRequestTimeout is containerd's plugin_request_timeout; zero keeps containerd's 2s.
	NRIRequestTimeout time.Duration
	// NRIRegistrationTimeout is containerd's plugin_registration_timeout; zero keeps its 5s.
	NRIRegistrationTimeout time.Duration
	// ExtraConfig is appended to config.toml verbatim, e.g. a
	// [plugins."io.containerd.nri.v1.nri".default_validator] table.
	ExtraConfig string
	// NRISocket replaces the private NRI socket path, e.g. with a node's /var/run/nri/nri.sock so
	// that podorder's DaemonSet runs as shipped. Only one Env may use such a path at a time.
	NRISocket string
	// NRIDisabled writes `disable = true` into the NRI section, as a distribution that ships NRI
	// off does: containerd then serves no NRI socket until the config says otherwise and it restarts.
	NRIDisabled bool
	// PodNetwork gives containerd a pod network (CNI ptp with host-local addresses from a /24 of
	// 10.231.0.0/16, state in Dir), so that pods whose PodSpec.PodNetwork is set get a network namespace
	// of their own, as a Kubernetes pod without hostNetwork does. Needs Debian's
	// containernetworking-plugins (hack/install-deps.sh installs it).
	PodNetwork bool
}

// Env is one private containerd and the CRI clients connected to it.
type Env struct {
	// Dir holds everything of this containerd; removed at cleanup.
	Dir string
	// Address is containerd's gRPC socket (the CRI endpoint).
	Address string
	// NRISocket is where external NRI plugins connect.
	NRISocket string
	// Runtime and Images are CRI clients; they stay valid across Restart.
	Runtime runtimeapi.RuntimeServiceClient
	Images  runtimeapi.ImageServiceClient

	bin        string // directory of containerd, its shim and ctr
	runc       string
	runcRoot   string
	cgroup     string // cgroup parent of every pod, removed at cleanup
	configPath string
	logPath    string
	conn       *grpc.ClientConn

	mu     sync.Mutex
	daemon *exec.Cmd
	exited chan struct{} // closed when daemon has been waited for
}

// BinDir returns the directory hack/install-deps.sh installs into.
func BinDir() string {
	cache := os.Getenv("PODORDER_CACHE")
	if cache == "" {
		cache = "/var/cache/podorder"
	}
	return filepath.Join(cache, "bin")
}

// Start starts a private containerd for t and stops it, its shims and its pods when t ends.
func Start(t testing.TB, opts Options) *Env {
	t.Helper()
	bin := BinDir()
	runc := opts.RuncPath
	if runc == "" {
		runc = filepath.Join(bin, "runc")
	}
	var missing []string
	if os.Geteuid() != 0 {
		missing = append(missing, "root")
	}
	for _, p := range []string{filepath.Join(bin, "containerd"), filepath.Join(bin, "containerd-shim-runc-v2"), filepath.Join(bin, "ctr"), runc} {
		if _, err := os.Stat(p); err != nil {
			missing = append(missing, p)
		}
	}
	if len(missing) > 0 {
		msg := fmt.Sprintf("real-runtime test needs %s: run hack/install-deps.sh, then `make test` as root", strings.Join(missing, ", "))
		if os.Getenv("CI") == "true" {
			t.Fatal(msg)
		}
		t.Skip(msg)
	}

	// Unix socket paths are limited to 108 bytes and the shim socket dir to 42: stay short.
	dir, err := os.MkdirTemp("/tmp", "pot")
	if err != nil {
		t.Fatalf("create containerd dir: %v", err)
	}
	e := &Env{
		Dir:        dir,
		Address:    filepath.Join(dir, "c.sock"),
		NRISocket:  cmp.Or(opts.NRISocket, filepath.Join(dir, "nri.sock")),
		bin:        bin,
		runc:       runc,
		runcRoot:   filepath.Join(dir, "runc"),
		cgroup:     "/podorder-" + filepath.Base(dir),
		configPath: filepath.Join(dir, "config.toml"),
		logPath:    filepath.Join(dir, "containerd.log"),
	}
	t.Cleanup(func() { e.cleanup(t) })
	if opts.NRISocket != "" {
		if err := os.MkdirAll(filepath.Dir(opts.NRISocket), 0o755); err != nil {
			t.Fatalf("create the NRI socket's directory: %v", err)
		}
		t.Cleanup(func() { _ = os.Remove(opts.NRISocket) })
	}

	for _, d := range []string{"cni/conf", "cni/bin", "nri/plugins", "nri/conf.d", "pods", "opt"} {
		if err := os.MkdirAll(filepath.Join(dir, d), 0o755); err != nil {
			t.Fatalf("create %s: %v", d, err)
		}
	}
	if opts.PodNetwork {
		if err := e.installPodNetwork(); err != nil {
			t.Fatalf("pod network: %v", err)
		}
	}
	if err := os.WriteFile(e.configPath, []byte(e.config(opts)), 0o644); err != nil {
		t.Fatalf("write containerd config: %v", err)
	}
	e.conn, err = grpc.NewClient("unix://"+e.Address, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatalf("create CRI client for %s: %v", e.Address, err)
	}
	e.Runtime = runtimeapi.NewRuntimeServiceClient(e.conn)
	e.Images = runtimeapi.NewImageServiceClient(e.conn)
	e.start(t)
	return e
}

// config renders containerd's config.toml (version 3).
func (e *Env) config(opts Options) string {
	var nriTimeouts string
	if opts.NRIRequestTimeout > 0 {
		nriTimeouts += fmt.Sprintf("  plugin_request_timeout = %q\n", opts.NRIRequestTimeout.String())
	}
	if opts.NRIRegistrationTimeout > 0 {
		nriTimeouts += fmt.Sprintf("  plugin_registration_timeout = %q\n", opts.NRIRegistrationTimeout.String())
	}
	return fmt.Sprintf(`version = 3
root = %[1]q
state = %[2]q
temp = %[3]q
imports = []

[grpc]
  address = %[4]q

[ttrpc]
  address = %[5]q

[debug]
  address = ""
  level = "info"

[metrics]
  address = ""

[plugins."io.containerd.internal.v1.opt"]
  path = %[6]q

[plugins."io.containerd.shim.v1.manager"]
  socket_dir = %[7]q

[plugins."io.containerd.nri.v1.nri"]
  disable = %[18]t
  socket_path = %[8]q
  plugin_path = %[9]q
  plugin_config_path = %[10]q
%[11]s
[plugins."io.containerd.cri.v1.images"]
  snapshotter = "overlayfs"

[plugins."io.containerd.cri.v1.images".pinned_images]
  sandbox = %[12]q

[plugins."io.containerd.cri.v1.runtime"]
  restrict_oom_score_adj = true
  enable_selinux = false
  cdi_spec_dirs = []

[plugins."io.containerd.cri.v1.runtime".cni]
  bin_dirs = [%[13]q]
  conf_dir = %[14]q

[plugins."io.containerd.cri.v1.runtime".containerd]
  default_runtime_name = "runc"

[plugins."io.containerd.cri.v1.runtime".containerd.runtimes.runc]
  runtime_type = "io.containerd.runc.v2"

[plugins."io.containerd.cri.v1.runtime".containerd.runtimes.runc.options]
  BinaryName = %[15]q
  Root = %[16]q
  SystemdCgroup = false

%[17]s
`,
		filepath.Join(e.Dir, "root"), filepath.Join(e.Dir, "state"), filepath.Join(e.Dir, "tmp"),
		e.Address, e.Address+".ttrpc", filepath.Join(e.Dir, "opt"), filepath.Join(e.Dir, "s"),
		e.NRISocket, filepath.Join(e.Dir, "nri/plugins"), filepath.Join(e.Dir, "nri/conf.d"), nriTimeouts,
		PauseImage, filepath.Join(e.Dir, "cni/bin"), filepath.Join(e.Dir, "cni/conf"),
		e.runc, e.runcRoot, opts.ExtraConfig, opts.NRIDisabled)
}

// start runs containerd and waits until its CRI service answers.
func (e *Env) start(t testing.TB) {
	t.Helper()
	logFile, err := os.OpenFile(e.logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		t.Fatalf("open containerd log: %v", err)
	}
	defer logFile.Close()
	cmd := exec.Command(filepath.Join(e.bin, "containerd"), "--config", e.configPath)
	cmd.Stdout, cmd.Stderr = logFile, logFile
	// containerd finds containerd-shim-runc-v2 on PATH.
	cmd.Env = append(os.Environ(), "PATH="+e.bin+":"+os.Getenv("PATH"))
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		t.Fatalf("start containerd: %v", err)
	}
	exited := make(chan struct{})
	go func() { _ = cmd.Wait(); close(exited) }()
	e.mu.Lock()
	e.daemon, e.exited = cmd, exited
	e.mu.Unlock()

	// The CRI service gives no readiness event (it answers Unavailable until initialised), so ask
	// for its version until it answers, the deadline passes, or the daemon dies.
	deadline := time.Now().Add(startTimeout)
	for {
		e.conn.ResetConnectBackoff()
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		_, err := e.Runtime.Version(ctx, &runtimeapi.VersionRequest{})
		cancel()
		if err == nil {
			return
		}
		if code := status.Code(err); code != codes.Unavailable && code != codes.DeadlineExceeded {
			t.Fatalf("containerd CRI Version: %v\n%s", err, e.LogTail())
		}
		select {
		case <-exited:
			t.Fatalf("containerd exited during start-up (%v)\n%s", cmd.ProcessState, e.LogTail())
		case <-time.After(20 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			t.Fatalf("containerd did not answer CRI Version within %s: %v\n%s", startTimeout, err, e.LogTail())
		}
	}
}

// stop terminates containerd, killing it if it has not exited after a grace period.
func (e *Env) stop(sig syscall.Signal) error {
	e.mu.Lock()
	cmd, exited := e.daemon, e.exited
	e.daemon = nil
	e.mu.Unlock()
	if cmd == nil {
		return nil
	}
	if err := cmd.Process.Signal(sig); err != nil && !errors.Is(err, os.ErrProcessDone) {
		return fmt.Errorf("signal containerd: %w", err)
	}
	select {
	case <-exited:
		return nil
	case <-time.After(10 * time.Second):
	}
	_ = cmd.Process.Kill()
	<-exited
	return fmt.Errorf("containerd ignored %v for 10s; killed", sig)
}

// Restart stops containerd with SIGTERM and starts it again on the same config and state, as a
// node's containerd restart does; pods and their shims keep running, NRI plugins are disconnected.
func (e *Env) Restart(t testing.TB) {
	t.Helper()
	if err := e.stop(syscall.SIGTERM); err != nil {
		t.Fatalf("restart containerd: %v", err)
	}
	e.start(t)
}

// Kill kills containerd with SIGKILL (a crash) without restarting it; call Restart to bring it back.
func (e *Env) Kill(t testing.TB) {
	t.Helper()
	if err := e.stop(syscall.SIGKILL); err != nil {
		t.Fatalf("kill containerd: %v", err)
	}
}

// Ctr runs `ctr --address <containerd> -n k8s.io args...` and returns its combined output.
func (e *Env) Ctr(args ...string) (string, error) {
	cmd := exec.Command(filepath.Join(e.bin, "ctr"), append([]string{"--address", e.Address, "-n", Namespace}, args...)...)
	out, err := cmd.CombinedOutput()
	if err != nil {
		return string(out), fmt.Errorf("ctr %s: %w: %s", strings.Join(args, " "), err, out)
	}
	return string(out), nil
}

// ConfigPath returns containerd's config file, which Restart reads again.
func (e *Env) ConfigPath() string { return e.configPath }

// LogPath returns containerd's log file.
func (e *Env) LogPath() string { return e.logPath }

// LogTail returns the last 60 lines of containerd's log.
func (e *Env) LogTail() string {
	data, err := os.ReadFile(e.logPath)
	if err != nil {
		return fmt.Sprintf("(no containerd log: %v)", err)
	}
	lines := strings.Split(strings.TrimRight(string(data), "\n"), "\n")
	if len(lines) > 60 {
		lines = lines[len(lines)-60:]
	}
	return "--- containerd log (tail) ---\n" + strings.Join(lines, "\n")
}

// cleanup removes every pod, stops containerd, and removes what is left: runc containers, shims,
// mounts and the directory.
func (e *Env) cleanup(t testing.TB) {
	if t.Failed() {
		t.Log(e.LogTail())
	}
	if e.conn != nil {
		e.mu.Lock()
		running := e.daemon != nil
		e.mu.Unlock()
		if running {
			e.removePods(t)
		}
		_ = e.conn.Close()
	}
	if err := e.stop(syscall.SIGTERM); err != nil {
		t.Logf("cleanup: %v", err)
	}
	e.removeContainers(t)
	e.killShims(t)
	e.unmountAll(t)
	e.removeCgroups(t)
	if err := os.RemoveAll(e.Dir); err != nil {
		t.Logf("cleanup: remove %s: %v", e.Dir, err)
	}
}

func (e *Env) removePods(t testing.TB) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	pods, err := e.Runtime.ListPodSandbox(ctx, &runtimeapi.ListPodSandboxRequest{})
	if err != nil {
		t.Logf("cleanup: list pods: %v", err)
		return
	}
	for _, p := range pods.Items {
		if _, err := e.Runtime.StopPodSandbox(ctx, &runtimeapi.StopPodSandboxRequest{PodSandboxId: p.Id}); err != nil {
			t.Logf("cleanup: stop pod %s: %v", p.Metadata.GetName(), err)
		}
		if _, err := e.Runtime.RemovePodSandbox(ctx, &runtimeapi.RemovePodSandboxRequest{PodSandboxId: p.Id}); err != nil {
			t.Logf("cleanup: remove pod %s: %v", p.Metadata.GetName(), err)
		}
	}
}

// removeContainers force-deletes containers runc still knows under this test's runc root
// (the shim keeps them in <root>/<namespace>).
func (e *Env) removeContainers(t testing.TB) {
	root := filepath.Join(e.runcRoot, Namespace)
	entries, err := os.ReadDir(root)
	if err != nil {
		return
	}
	for _, c := range entries {
		if out, err := exec.Command(e.runc, "--root", root, "delete", "--force", c.Name()).CombinedOutput(); err != nil {
			t.Logf("cleanup: runc delete %s: %v: %s", c.Name(), err, out)
		}
	}
}

// killShims kills the shims this containerd started: their command line names its address.
func (e *Env) killShims(t testing.TB) {
	procs, _ := filepath.Glob("/proc/[0-9]*/cmdline")
	for _, p := range procs {
		data, err := os.ReadFile(p)
		if err != nil {
			continue
		}
		args := strings.Split(string(data), "\x00")
		if len(args) == 0 || !strings.Contains(args[0], "containerd-shim") || !slices.Contains(args, e.Address) {
			continue
		}
		var pid int
		if _, err := fmt.Sscanf(p, "/proc/%d/cmdline", &pid); err == nil {
			t.Logf("cleanup: killing leftover shim %d", pid)
			_ = syscall.Kill(pid, syscall.SIGKILL)
		}
	}
}

// unmountAll lazily unmounts every mount below Dir, deepest first.
func (e *Env) unmountAll(t testing.TB) { UnmountBelow(t, e.Dir) }

// UnmountBelow lazily unmounts dir and every mount below it, deepest first, logging failures.
func UnmountBelow(t testing.TB, dir string) {
	f, err := os.Open("/proc/self/mountinfo")
	if err != nil {
		t.Logf("cleanup: %v", err)
		return
	}
	defer f.Close()
	var mounts []string
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) < 5 {
			continue
		}
		if mp := unescapeMountPath(fields[4]); mp == dir || strings.HasPrefix(mp, dir+"/") {
			mounts = append(mounts, mp)
		}
	}
	slices.SortStableFunc(mounts, func(a, b string) int { return len(b) - len(a) })
	for _, mp := range mounts {
		// EINVAL: already gone with a parent's lazy unmount.
		if err := syscall.Unmount(mp, syscall.MNT_DETACH); err != nil && !errors.Is(err, syscall.EINVAL) {
			t.Logf("cleanup: unmount %s: %v", mp, err)
		}
	}
}

// removeCgroups removes the pods' cgroup parent in every hierarchy, children first.
func (e *Env) removeCgroups(t testing.TB) { RemoveCgroupTree(t, e.cgroup) }

// RemoveCgroupTree removes /<path> in every cgroup hierarchy (v1 and v2), children first; what
// cannot be removed is logged.
func RemoveCgroupTree(t testing.TB, path string) {
	path = "/" + strings.TrimPrefix(path, "/")
	roots, _ := filepath.Glob("/sys/fs/cgroup/*" + path)
	if _, err := os.Stat("/sys/fs/cgroup" + path); err == nil {
		roots = append(roots, "/sys/fs/cgroup"+path)
	}
	for _, root := range roots {
		var dirs []string
		_ = filepath.WalkDir(root, func(path string, d os.DirEntry, err error) error {
			if err == nil && d.IsDir() {
				dirs = append(dirs, path)
			}
			return nil
		})
		for _, d := range slices.Backward(dirs) {
			// cpu and cpuacct may be one hierarchy under two names: already gone is fine.
			if err := os.Remove(d); err != nil && !errors.Is(err, os.ErrNotExist) {
				t.Logf("cleanup: remove cgroup %s: %v", d, err)
			}
		}
	}
}

// unescapeMountPath undoes mountinfo's octal escapes (\040 for a space, …).
func unescapeMountPath(s string) string {
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+3 < len(s) {
			var c byte
			if _, err := fmt.Sscanf(s[i+1:i+4], "%o", &c); err == nil {
				b.WriteByte(c)
				i += 3
				continue
			}
		}
		b.WriteByte(s[i])
	}
	return b.String()
}

// Package cluster runs a real one-node Kubernetes (v1.37.2) for a test on top of a private
// harness containerd: etcd, kube-apiserver, kube-controller-manager, kube-scheduler and kubelet,
// each a process of the test, with certificates generated in Go, a bridge pod network, and every
// file under one directory in /tmp. The node is Ready and the default service account exists
// when Start returns.
//
// The binaries come from hack/k8s/build.sh (${PODORDER_CACHE:-/var/cache/podorder}/k8s-v1.37.2 and
// etcd-v3.7.3), the pod network from Debian's containernetworking-plugins (/usr/lib/cni), and the
// tests must run as root. Without them a test is skipped, or fails when CI=true.
//
// kubelet changes the machine: it sets kernel sysctls, creates the /kubepods cgroups, mounts under
// its root directory, and the bridge plugin creates a network interface. The teardown deletes every
// pod through the API first, then undoes each of these. Only one cluster can run on a machine at a
// time.
package cluster

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/podorder/podorder/test/harness"
)

// Versions of the binaries hack/k8s/build.sh builds.
const (
	KubernetesVersion = "v1.37.2"
	EtcdVersion       = "v3.7.3"
)

// Defaults for Options.
const (
	DefaultNodeName  = "podorder-node"
	DefaultPodSubnet = "10.244.0.0/24"
)

// serviceSubnet is the service IP range; 10.96.0.1 (the kubernetes service) is in the API
// server's certificate.
const serviceSubnet = "10.96.0.0/16"

// cniPluginDir is where Debian's containernetworking-plugins installs the plugins.
const cniPluginDir = "/usr/lib/cni"

// startTimeout bounds each start-up step: API server ready, node registered, node Ready.
const startTimeout = 90 * time.Second

// Options tune the cluster.
type Options struct {
	// NodeName is the node's name (kubelet's --hostname-override); DefaultNodeName if empty.
	NodeName string
	// NodeIP is the node's InternalIP; the first non-loopback IPv4 address of the machine if empty.
	NodeIP string
	// PodSubnet is the bridge network pods get their IPs from; DefaultPodSubnet if empty.
	PodSubnet string
	// Verbosity is the klog level (-v) of the API server and kubelet; 0 if unset.
	Verbosity int
}

// Cluster is a running one-node Kubernetes on a harness containerd.
type Cluster struct {
	// Kubeconfig is the admin kubeconfig (group system:masters).
	Kubeconfig string
	// NodeName is the one node's name.
	NodeName string
	// NodeIP is the node's InternalIP, where kubelet serves.
	NodeIP string
	// Dir holds certificates, configs, logs, etcd's data and kubelet's root; removed at teardown.
	Dir string

	env        *harness.Env
	kubeletDir string
	bridge     string

	// ctx is cancelled when a component exits by itself, so that kubectl waits end at once.
	ctx    context.Context
	cancel context.CancelCauseFunc

	mu         sync.Mutex
	components map[string]*component

	sysctls        map[string]string // value before kubelet started, by /proc/sys path
	createdCgroups bool              // /kubepods did not exist before kubelet started
	createdDirs    []string          // hostDirs that did not exist before the start
	createdChains  bool              // kubelet's iptables chains did not exist before the start
}

// BinDir returns the directory hack/k8s/build.sh puts the Kubernetes binaries in.
func BinDir() string { return filepath.Join(cacheDir(), "k8s-"+KubernetesVersion) }

// EtcdBinDir returns the directory hack/k8s/build.sh puts etcd in.
func EtcdBinDir() string { return filepath.Join(cacheDir(), "etcd-"+EtcdVersion) }

func cacheDir() string {
	if cache := os.Getenv("PODORDER_CACHE"); cache != "" {
		return cache
	}
	return "/var/cache/podorder"
}

// Start starts a one-node cluster whose kubelet drives env's containerd, and tears it down when t
// ends (before env's own cleanup, which t.Cleanup's order guarantees when env was started first).
// It returns once the node is Ready and the default namespace has its service account and
// kube-root-ca.crt, so pods can be created at once.
func Start(t testing.TB, env *harness.Env, opts Options) *Cluster {
	t.Helper()
	requireBinaries(t)
	if opts.NodeName == "" {
		opts.NodeName = DefaultNodeName
	}
	if opts.PodSubnet == "" {
		opts.PodSubnet = DefaultPodSubnet
	}
	if opts.NodeIP == "" {
		ip, err := nodeIP()
		if err != nil {
			t.Fatalf("cluster: %v", err)
		}
		opts.NodeIP = ip
	}
	lockMachine(t)
	began := time.Now()

	// Short: kubelet's sockets live below it and unix socket paths are limited to 108 bytes.
	dir, err := os.MkdirTemp("/tmp", "pok")
	if err != nil {
		t.Fatalf("cluster: create dir: %v", err)
	}
	ctx, cancel := context.WithCancelCause(context.Background())
	c := &Cluster{
		NodeName:   opts.NodeName,
		NodeIP:     opts.NodeIP,
		Dir:        dir,
		Kubeconfig: filepath.Join(dir, "admin.kubeconfig"),
		env:        env,
		kubeletDir: filepath.Join(dir, "kubelet"),
		bridge:     fmt.Sprintf("pob%08x", rand.Uint32()),
		ctx:        ctx,
		cancel:     cancel,
		components: map[string]*component{},
	}
	t.Cleanup(func() { c.teardown(t) })

	if err := c.start(t, opts, began); err != nil {
		t.Fatalf("cluster: %v", err)
	}
	t.Logf("cluster: node %s (%s) Ready %v after start", c.NodeName, c.NodeIP, time.Since(began).Round(time.Millisecond))
	return c
}

// machineLock serializes clusters across test processes: a cluster owns machine-wide state (sysctls,
// iptables rules, /kubepods cgroups, the pod subnet), and `go test` runs packages in parallel.
const machineLock = "/run/lock/podorder-cluster.lock"

// lockMachine waits until no other cluster runs on this machine; the lock ends with t.
func lockMachine(t testing.TB) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(machineLock), 0o755); err != nil {
		t.Fatalf("cluster: %v", err)
	}
	f, err := os.OpenFile(machineLock, os.O_CREATE|os.O_RDWR, 0o644)
	if err != nil {
		t.Fatalf("cluster: open %s: %v", machineLock, err)
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX); err != nil {
		f.Close()
		t.Fatalf("cluster: lock %s: %v", machineLock, err)
	}
	// Registered first, so it runs last: after the teardown.
	t.Cleanup(func() { f.Close() })
}

// requireBinaries skips (or, with CI=true, fails) the test when something the cluster runs is missing.
func requireBinaries(t testing.TB) {
	t.Helper()
	var missing []string
	if os.Geteuid() != 0 {
		missing = append(missing, "root")
	}
	paths := []string{filepath.Join(EtcdBinDir(), "etcd"), filepath.Join(cniPluginDir, "bridge"), filepath.Join(cniPluginDir, "host-local")}
	for _, name := range []string{"kube-apiserver", "kube-controller-manager", "kube-scheduler", "kubelet", "kubectl"} {
		paths = append(paths, filepath.Join(BinDir(), name))
	}
	for _, p := range paths {
		if _, err := os.Stat(p); err != nil {
			missing = append(missing, p)
		}
	}
	if len(missing) == 0 {
		return
	}
	msg := fmt.Sprintf("cluster test needs %s: run hack/k8s/build.sh (builds Kubernetes %s and etcd %s, ~13 min cold; installs containernetworking-plugins), then run the tests as root",
		strings.Join(missing, ", "), KubernetesVersion, EtcdVersion)
	if os.Getenv("CI") == "true" {
		t.Fatal(msg)
	}
	t.Skip(msg)
}

func (c *Cluster) start(t testing.TB, opts Options, began time.Time) error {
	ports, err := freePorts(4)
	if err != nil {
		return err
	}
	etcdClient, etcdPeer, apiPort, kubeletPort := ports[0], ports[1], ports[2], ports[3]
	server := fmt.Sprintf("https://127.0.0.1:%d", apiPort)
	verbosity := "--v=" + strconv.Itoa(opts.Verbosity)

	certs, err := c.writeCertificates()
	if err != nil {
		return err
	}
	if err := c.installCNI(opts.PodSubnet); err != nil {
		return err
	}

	etcdURL := fmt.Sprintf("http://127.0.0.1:%d", etcdClient)
	peerURL := fmt.Sprintf("http://127.0.0.1:%d", etcdPeer)
	if err := c.run("etcd", filepath.Join(EtcdBinDir(), "etcd"),
		"--name=podorder", "--data-dir="+filepath.Join(c.Dir, "etcd"),
		"--listen-client-urls="+etcdURL, "--advertise-client-urls="+etcdURL,
		"--listen-peer-urls="+peerURL, "--initial-advertise-peer-urls="+peerURL,
		"--initial-cluster=podorder="+peerURL, "--initial-cluster-state=new",
		"--unsafe-no-fsync", "--log-level=warn",
	); err != nil {
		return err
	}

	if err := c.run("kube-apiserver", filepath.Join(BinDir(), "kube-apiserver"),
		"--etcd-servers="+etcdURL,
		"--bind-address=127.0.0.1", "--secure-port="+strconv.Itoa(apiPort), "--advertise-address="+c.NodeIP,
		"--cert-dir="+filepath.Join(c.Dir, "apiserver"),
		"--tls-cert-file="+certs.apiserver.cert, "--tls-private-key-file="+certs.apiserver.key,
		"--client-ca-file="+certs.ca,
		"--service-cluster-ip-range="+serviceSubnet,
		"--service-account-issuer=https://kubernetes.default.svc.cluster.local",
		"--service-account-key-file="+certs.saPublic, "--service-account-signing-key-file="+certs.saPrivate,
		"--authorization-mode=Node,RBAC", "--enable-admission-plugins=NodeRestriction",
		// No endpoint reconciler: the one API server's address is loopback, which pods cannot use.
		"--endpoint-reconciler-type=none",
		// Else logs and exec resolve the node name through DNS.
		"--kubelet-preferred-address-types=InternalIP,Hostname",
		"--kubelet-client-certificate="+certs.apiserverKubelet.cert, "--kubelet-client-key="+certs.apiserverKubelet.key,
		"--kubelet-certificate-authority="+certs.ca,
		"--allow-privileged=true", "--profiling=false", verbosity,
	); err != nil {
		return err
	}
	if err := c.waitAPIServer(server, certs); err != nil {
		return err
	}
	t.Logf("cluster: kube-apiserver ready %v after start", time.Since(began).Round(time.Millisecond))

	for name, client := range map[string]pair{
		"admin": certs.admin, "controller-manager": certs.controllerManager,
		"scheduler": certs.scheduler, "kubelet": certs.kubeletClient,
	} {
		if err := writeFile(filepath.Join(c.Dir, name+".kubeconfig"), kubeconfig(server, certs.ca, client), 0o600); err != nil {
			return err
		}
	}
	if err := c.run("kube-controller-manager", filepath.Join(BinDir(), "kube-controller-manager"),
		"--kubeconfig="+filepath.Join(c.Dir, "controller-manager.kubeconfig"),
		"--secure-port=0", "--leader-elect=false",
		"--use-service-account-credentials=true",
		"--service-account-private-key-file="+certs.saPrivate, "--root-ca-file="+certs.ca,
		"--cluster-signing-cert-file="+certs.ca, "--cluster-signing-key-file="+certs.caKey,
	); err != nil {
		return err
	}
	if err := c.run("kube-scheduler", filepath.Join(BinDir(), "kube-scheduler"),
		"--kubeconfig="+filepath.Join(c.Dir, "scheduler.kubeconfig"),
		"--secure-port=0", "--leader-elect=false",
	); err != nil {
		return err
	}

	if err := c.startKubelet(kubeletPort, certs, verbosity); err != nil {
		return err
	}
	if err := c.waitFor(startTimeout, "", "node/"+c.NodeName, "condition=Ready"); err != nil {
		return fmt.Errorf("node %s: %w", c.NodeName, err)
	}
	for _, obj := range []string{"serviceaccount/default", "configmap/kube-root-ca.crt"} {
		if err := c.waitFor(startTimeout, "default", obj, ""); err != nil {
			return fmt.Errorf("default namespace: %w", err)
		}
	}
	return nil
}

// certificates are the files the components are started with.
type certificates struct {
	ca, caKey                          string
	apiserver, apiserverKubelet, admin pair
	controllerManager, scheduler       pair
	kubeletClient, kubeletServing      pair
	saPrivate, saPublic                string
}

func (c *Cluster) writeCertificates() (certificates, error) {
	p, err := newPKI(filepath.Join(c.Dir, "pki"))
	if err != nil {
		return certificates{}, err
	}
	certs := certificates{ca: p.caFile(), caKey: p.caKeyFile()}
	nodeIP := net.ParseIP(c.NodeIP)
	steps := []struct {
		into *pair
		make func() (pair, error)
	}{
		{&certs.apiserver, func() (pair, error) {
			return p.serving("apiserver", "kube-apiserver",
				[]string{"localhost", "kubernetes", "kubernetes.default", "kubernetes.default.svc", "kubernetes.default.svc.cluster.local"},
				[]net.IP{net.IPv4(127, 0, 0, 1), net.IPv4(10, 96, 0, 1), nodeIP})
		}},
		{&certs.apiserverKubelet, func() (pair, error) {
			return p.client("apiserver-kubelet-client", "kube-apiserver-kubelet-client", "system:masters")
		}},
		{&certs.admin, func() (pair, error) { return p.client("admin", "podorder-admin", "system:masters") }},
		{&certs.controllerManager, func() (pair, error) {
			return p.client("controller-manager", "system:kube-controller-manager")
		}},
		{&certs.scheduler, func() (pair, error) { return p.client("scheduler", "system:kube-scheduler") }},
		{&certs.kubeletClient, func() (pair, error) {
			return p.client("kubelet-client", "system:node:"+c.NodeName, "system:nodes")
		}},
		{&certs.kubeletServing, func() (pair, error) {
			return p.serving("kubelet", c.NodeName, []string{c.NodeName, "localhost"}, []net.IP{nodeIP, net.IPv4(127, 0, 0, 1)})
		}},
	}
	for _, s := range steps {
		if *s.into, err = s.make(); err != nil {
			return certificates{}, err
		}
	}
	if certs.saPrivate, certs.saPublic, err = p.serviceAccountKeys(); err != nil {
		return certificates{}, err
	}
	return certs, nil
}

// installCNI gives containerd the plugins and a bridge network; containerd watches its config
// directory and reports the network ready to kubelet, which then marks the node Ready.
func (c *Cluster) installCNI(subnet string) error {
	plugins, err := os.ReadDir(cniPluginDir)
	if err != nil {
		return fmt.Errorf("list CNI plugins: %w", err)
	}
	for _, p := range plugins {
		link := filepath.Join(c.env.CNIBinDir(), p.Name())
		if err := os.Symlink(filepath.Join(cniPluginDir, p.Name()), link); err != nil && !errors.Is(err, os.ErrExist) {
			return fmt.Errorf("link CNI plugin %s: %w", p.Name(), err)
		}
	}
	conf, err := cniConflist(c.bridge, subnet, filepath.Join(c.Dir, "cni-ipam"))
	if err != nil {
		return err
	}
	return writeFile(filepath.Join(c.env.CNIConfDir(), "10-podorder.conflist"), conf, 0o644)
}

func (c *Cluster) startKubelet(port int, certs certificates, verbosity string) error {
	config := kubeletConfig(kubeletSettings{
		address:         c.NodeIP,
		port:            port,
		runtimeEndpoint: "unix://" + c.env.Address,
		caFile:          certs.ca,
		podLogsDir:      filepath.Join(c.Dir, "pod-logs"),
		serving:         certs.kubeletServing,
	})
	configPath := filepath.Join(c.Dir, "kubelet.yaml")
	if err := writeFile(configPath, config, 0o644); err != nil {
		return err
	}
	c.sysctls = map[string]string{}
	for _, name := range kubeletSysctls {
		if data, err := os.ReadFile(filepath.Join("/proc/sys", name)); err == nil {
			c.sysctls[name] = strings.TrimSpace(string(data))
		}
	}
	if _, err := os.Stat("/sys/fs/cgroup/memory/kubepods"); errors.Is(err, os.ErrNotExist) {
		c.createdCgroups = true
	}
	c.createdChains = exec.Command("iptables", "-w", "-t", "mangle", "-n", "-L", kubeletCanaryChain).Run() != nil
	for _, d := range hostDirs {
		if _, err := os.Stat(d); errors.Is(err, os.ErrNotExist) {
			c.createdDirs = append(c.createdDirs, d)
		}
	}
	return c.run("kubelet", filepath.Join(BinDir(), "kubelet"),
		"--config="+configPath,
		"--kubeconfig="+filepath.Join(c.Dir, "kubelet.kubeconfig"),
		"--root-dir="+c.kubeletDir, "--cert-dir="+filepath.Join(c.Dir, "kubelet-pki"),
		"--hostname-override="+c.NodeName, "--node-ip="+c.NodeIP, verbosity,
	)
}

// run starts one component; its exit before the teardown cancels every pending wait.
func (c *Cluster) run(name, bin string, args ...string) error {
	comp, err := startComponent(name, bin, filepath.Join(c.Dir, name+".log"), args, func(comp *component) {
		c.cancel(fmt.Errorf("%s exited (%v)\n%s", comp.name, comp.cmd.ProcessState, comp.logTail(30)))
	})
	if err != nil {
		return err
	}
	c.mu.Lock()
	c.components[name] = comp
	c.mu.Unlock()
	return nil
}

// waitAPIServer waits until the API server's /readyz answers ok (etcd reachable, RBAC bootstrap
// roles in place). Nothing announces that, so ask every 100 ms.
func (c *Cluster) waitAPIServer(server string, certs certificates) error {
	caPEM, err := os.ReadFile(certs.ca)
	if err != nil {
		return fmt.Errorf("read CA: %w", err)
	}
	roots := x509.NewCertPool()
	roots.AppendCertsFromPEM(caPEM)
	admin, err := tls.LoadX509KeyPair(certs.admin.cert, certs.admin.key)
	if err != nil {
		return fmt.Errorf("load admin certificate: %w", err)
	}
	client := &http.Client{
		Timeout:   2 * time.Second,
		Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: roots, Certificates: []tls.Certificate{admin}}},
	}
	defer client.CloseIdleConnections()
	deadline := time.Now().Add(startTimeout)
	var last string
	for {
		resp, err := client.Get(server + "/readyz")
		if err == nil {
			_ = resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
			last = resp.Status
		} else {
			last = err.Error()
		}
		select {
		case <-c.ctx.Done():
			return fmt.Errorf("waiting for kube-apiserver: %w", context.Cause(c.ctx))
		case <-time.After(100 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("kube-apiserver not ready after %s (last: %s)\n%s", startTimeout, last, c.logTail("kube-apiserver", 40))
		}
	}
}

// logTail returns the tail of a component's log, or a note that it was never started.
func (c *Cluster) logTail(name string, n int) string {
	c.mu.Lock()
	comp := c.components[name]
	c.mu.Unlock()
	if comp == nil {
		return fmt.Sprintf("(%s not started)", name)
	}
	return comp.logTail(n)
}

// stopComponent stops one component if it runs.
func (c *Cluster) stopComponent(t testing.TB, name string, grace time.Duration) {
	c.mu.Lock()
	comp := c.components[name]
	c.mu.Unlock()
	if comp == nil {
		return
	}
	if err := comp.stop(grace); err != nil {
		t.Logf("cluster teardown: %v", err)
	}
}

// running reports whether a component was started and has not exited.
func (c *Cluster) running(name string) bool {
	c.mu.Lock()
	comp := c.components[name]
	c.mu.Unlock()
	if comp == nil {
		return false
	}
	select {
	case <-comp.exited:
		return false
	default:
		return true
	}
}

// nodeIP returns the first IPv4 address of an up, non-loopback interface.
func nodeIP() (string, error) {
	ifaces, err := net.Interfaces()
	if err != nil {
		return "", fmt.Errorf("list network interfaces: %w", err)
	}
	for _, iface := range ifaces {
		if iface.Flags&net.FlagUp == 0 || iface.Flags&net.FlagLoopback != 0 || strings.HasPrefix(iface.Name, "pob") {
			continue
		}
		addrs, err := iface.Addrs()
		if err != nil {
			continue
		}
		for _, a := range addrs {
			if ipnet, ok := a.(*net.IPNet); ok && ipnet.IP.To4() != nil && ipnet.IP.IsGlobalUnicast() {
				return ipnet.IP.String(), nil
			}
		}
	}
	return "", errors.New("no non-loopback IPv4 address for the node: set Options.NodeIP")
}

// freePorts returns n distinct TCP ports that were free a moment ago.
func freePorts(n int) ([]int, error) {
	var ports []int
	var listeners []net.Listener
	defer func() {
		for _, l := range listeners {
			_ = l.Close()
		}
	}()
	for range n {
		l, err := net.Listen("tcp", "0.0.0.0:0")
		if err != nil {
			return nil, fmt.Errorf("find a free port: %w", err)
		}
		listeners = append(listeners, l)
		ports = append(ports, l.Addr().(*net.TCPAddr).Port)
	}
	return ports, nil
}

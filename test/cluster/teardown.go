package cluster

import (
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/podorder/podorder/test/harness"
)

// kubeletSysctls are the kernel settings kubelet changes at start-up (setupKernelTunables) and
// the bridge plugin's ip_forward; the teardown puts back what it found.
var kubeletSysctls = []string{
	"vm/overcommit_memory", "vm/panic_on_oom", "kernel/panic", "kernel/panic_on_oops",
	"kernel/keys/root_maxkeys", "kernel/keys/root_maxbytes", "net/ipv4/ip_forward",
}

// hostDirs are created outside the cluster's directory whatever the flags say: kubelet's
// device-plugin socket directory is a constant, and containerd's CNI library caches results in
// /var/lib/cni. Each is removed at teardown, deepest first, if the cluster created it and it is
// empty by then.
var hostDirs = []string{"/var/lib/kubelet", "/var/lib/kubelet/device-plugins", "/var/lib/cni", "/var/lib/cni/results"}

// kubeletCanaryChain is one of the iptables chains kubelet creates at start-up (initNetworkUtil),
// whatever its configuration says; its presence tells whether kubelet ran here before.
const kubeletCanaryChain = "KUBE-KUBELET-CANARY"

// kubeletChainCleanup undoes kubelet's syncIPTablesRules, for iptables and ip6tables: the
// KUBE-FIREWALL chain (IPv4 only) and the jumps to it from INPUT and OUTPUT, the canary chain in
// three tables, and the hint chain in mangle. Each command may find nothing to remove.
var kubeletChainCleanup = [][]string{
	{"-t", "filter", "-D", "INPUT", "-j", "KUBE-FIREWALL"},
	{"-t", "filter", "-D", "OUTPUT", "-j", "KUBE-FIREWALL"},
	{"-t", "filter", "-F", "KUBE-FIREWALL"},
	{"-t", "filter", "-X", "KUBE-FIREWALL"},
	{"-t", "filter", "-X", kubeletCanaryChain},
	{"-t", "nat", "-X", kubeletCanaryChain},
	{"-t", "mangle", "-X", kubeletCanaryChain},
	{"-t", "mangle", "-X", "KUBE-IPTABLES-HINT"},
}

// teardown deletes every pod through the API while kubelet still runs (so kubelet unmounts their
// volumes and CNI releases their addresses), then stops the components and undoes what kubelet and
// the bridge plugin changed on the machine.
func (c *Cluster) teardown(t testing.TB) {
	began := time.Now()
	defer func() { t.Logf("cluster: torn down in %v", time.Since(began).Round(time.Millisecond)) }()
	if t.Failed() {
		for _, name := range []string{"etcd", "kube-apiserver", "kube-controller-manager", "kube-scheduler", "kubelet"} {
			t.Log(c.logTail(name, 40))
		}
	}
	// Without the controllers nothing re-creates the pods deleted below.
	c.stopComponent(t, "kube-controller-manager", 10*time.Second)
	c.stopComponent(t, "kube-scheduler", 10*time.Second)
	if c.running("kube-apiserver") && c.running("kubelet") {
		c.deletePods(t)
	}
	c.stopComponent(t, "kubelet", 15*time.Second)
	c.removeSandboxes(t)
	// kubelet bind-mounts its root dir onto itself and leaves volume tmpfs mounts below it.
	harness.UnmountBelow(t, c.kubeletDir)
	c.stopComponent(t, "kube-apiserver", 15*time.Second)
	c.stopComponent(t, "etcd", 10*time.Second)
	c.cancel(errors.New("cluster torn down"))

	if out, err := exec.Command("ip", "link", "del", c.bridge).CombinedOutput(); err != nil && !strings.Contains(string(out), "Cannot find device") {
		t.Logf("cluster teardown: ip link del %s: %v: %s", c.bridge, err, out)
	}
	_ = os.Remove(filepath.Join(c.env.CNIConfDir(), "10-podorder.conflist"))
	c.restoreSysctls(t)
	if c.createdCgroups {
		harness.RemoveCgroupTree(t, "kubepods")
	}
	c.removeHostDirs(t)
	if c.createdChains {
		removeKubeletChains(t)
	}
	if err := os.RemoveAll(c.Dir); err != nil {
		t.Logf("cluster teardown: remove %s: %v", c.Dir, err)
	}
}

// deletePods deletes every pod with its grace period, and force-deletes what is left after a minute.
func (c *Cluster) deletePods(t testing.TB) {
	_, err := c.kubectl(context.Background(), 90*time.Second, nil, "delete", "pods", "--all", "--all-namespaces", "--wait=true", "--timeout=60s")
	if err == nil {
		return
	}
	t.Logf("cluster teardown: %v; force-deleting", err)
	if _, err := c.kubectl(context.Background(), 30*time.Second, nil, "delete", "pods", "--all", "--all-namespaces", "--force", "--grace-period=0"); err != nil {
		t.Logf("cluster teardown: %v", err)
	}
}

// removeSandboxes stops and removes the pod sandboxes kubelet left in containerd (it removes
// deleted pods' sandboxes only at its next garbage collection), so CNI releases their interfaces
// before the bridge goes.
func (c *Cluster) removeSandboxes(t testing.TB) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	pods, err := c.env.Runtime.ListPodSandbox(ctx, &runtimeapi.ListPodSandboxRequest{})
	if err != nil {
		t.Logf("cluster teardown: list sandboxes: %v", err)
		return
	}
	for _, p := range pods.Items {
		if _, err := c.env.Runtime.StopPodSandbox(ctx, &runtimeapi.StopPodSandboxRequest{PodSandboxId: p.Id}); err != nil {
			t.Logf("cluster teardown: stop sandbox %s: %v", p.Metadata.GetName(), err)
		}
		if _, err := c.env.Runtime.RemovePodSandbox(ctx, &runtimeapi.RemovePodSandboxRequest{PodSandboxId: p.Id}); err != nil {
			t.Logf("cluster teardown: remove sandbox %s: %v", p.Metadata.GetName(), err)
		}
	}
}

// removeKubeletChains removes the iptables chains and rules kubelet created, and reports any
// that survive.
func removeKubeletChains(t testing.TB) {
	for _, tool := range []string{"iptables", "ip6tables"} {
		for _, args := range kubeletChainCleanup {
			_ = exec.Command(tool, append([]string{"-w"}, args...)...).Run()
		}
		for _, table := range []string{"filter", "nat", "mangle"} {
			if out, err := exec.Command(tool, "-w", "-t", table, "-S").Output(); err == nil && strings.Contains(string(out), "KUBE-") {
				t.Logf("cluster teardown: %s table %s still has kubelet's chains:\n%s", tool, table, out)
			}
		}
	}
}

// removeHostDirs removes the directories from hostDirs the cluster created, and kubelet's
// device-plugin socket in one of them.
func (c *Cluster) removeHostDirs(t testing.TB) {
	if len(c.createdDirs) == 0 {
		return
	}
	_ = os.Remove("/var/lib/kubelet/device-plugins/kubelet.sock")
	for _, d := range slices.Backward(c.createdDirs) {
		if err := os.Remove(d); err != nil && !errors.Is(err, os.ErrNotExist) {
			t.Logf("cluster teardown: remove %s: %v", d, err)
		}
	}
}

func (c *Cluster) restoreSysctls(t testing.TB) {
	for name, want := range c.sysctls {
		path := filepath.Join("/proc/sys", name)
		data, err := os.ReadFile(path)
		if err == nil && strings.TrimSpace(string(data)) == want {
			continue
		}
		if err := os.WriteFile(path, []byte(want+"\n"), 0o644); err != nil {
			t.Logf("cluster teardown: restore sysctl %s=%s: %v", name, want, err)
		}
	}
}

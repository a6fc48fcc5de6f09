package harness

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
)

// CNIConfDir is the directory containerd's CRI plugin reads pod-network configs from
// (cni.conf_dir); containerd watches it, so a config written here takes effect without a restart.
// A kubelet driving this containerd needs one there for its node to become Ready.
func (e *Env) CNIConfDir() string { return filepath.Join(e.Dir, "cni/conf") }

// CNIBinDir is the directory containerd runs CNI plugins from (cni.bin_dirs); it starts empty.
func (e *Env) CNIBinDir() string { return filepath.Join(e.Dir, "cni/bin") }

// cniPluginDir is where Debian's containernetworking-plugins installs the plugins.
const cniPluginDir = "/usr/lib/cni"

// podSubnet is a bed's pod network (Options.PodNetwork): a /24 of 10.231.0.0/16, outside the
// cluster bed's pod subnet so that the two never meet in the host's routes, drawn per bed so that
// two beds at once (a test's and a benchmark's) seldom hand out the same address.
func podSubnet() string { return fmt.Sprintf("10.231.%d.0/24", rand.N(256)) }

// installPodNetwork links the ptp and host-local plugins and writes a network that gives each pod
// sandbox a veth pair and a /32 from podSubnet(): containerd wants an address on the sandbox's eth0,
// and ptp, unlike a bridge, creates no device that another bed could share. Addresses are
// allocated in Dir, so they go with the bed.
func (e *Env) installPodNetwork() error {
	for _, p := range []string{"ptp", "host-local", "loopback"} {
		src := filepath.Join(cniPluginDir, p)
		if _, err := os.Stat(src); err != nil {
			return fmt.Errorf("CNI plugin %s: %w (apt-get install containernetworking-plugins, or run hack/install-deps.sh)", p, err)
		}
		if err := os.Symlink(src, filepath.Join(e.CNIBinDir(), p)); err != nil && !errors.Is(err, os.ErrExist) {
			return fmt.Errorf("link CNI plugin %s: %w", p, err)
		}
	}
	conf := fmt.Sprintf(`{
  "cniVersion": "1.0.0",
  "name": "podorder-e2e",
  "plugins": [{
    "type": "ptp",
    "ipMasq": false,
    "ipam": {"type": "host-local", "ranges": [[{"subnet": %q}]], "dataDir": %q}
  }]
}
`, podSubnet(), filepath.Join(e.Dir, "cni-ipam"))
	return os.WriteFile(filepath.Join(e.CNIConfDir(), "10-podorder-e2e.conflist"), []byte(conf), 0o644)
}

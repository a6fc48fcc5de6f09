package harness

import "path/filepath"

// CNIConfDir is the directory containerd's CRI plugin reads pod-network configs from
// (cni.conf_dir); containerd watches it, so a config written here takes effect without a restart.
// A kubelet driving this containerd needs one there for its node to become Ready.
func (e *Env) CNIConfDir() string { return filepath.Join(e.Dir, "cni/conf") }

// CNIBinDir is the directory containerd runs CNI plugins from (cni.bin_dirs); it starts empty.
func (e *Env) CNIBinDir() string { return filepath.Join(e.Dir, "cni/bin") }

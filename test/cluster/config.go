package cluster

import (
	"encoding/json"
	"fmt"
	"os"
)

// kubeconfig renders a kubeconfig for one client certificate against the API server at server.
func kubeconfig(server, caFile string, client pair) string {
	return fmt.Sprintf(`apiVersion: v1
kind: Config
clusters:
- name: podorder
  cluster:
    server: %q
    certificate-authority: %q
users:
- name: podorder
  user:
    client-certificate: %q
    client-key: %q
contexts:
- name: podorder
  context:
    cluster: podorder
    user: podorder
current-context: podorder
`, server, caFile, client.cert, client.key)
}

// kubeletSettings are the values the KubeletConfiguration is rendered from.
type kubeletSettings struct {
	address, runtimeEndpoint, caFile, podLogsDir string
	port                                         int
	serving                                      pair
}

// kubeletConfig renders the KubeletConfiguration for a node on this kind of machine: cgroup v1
// (hybrid) with the cgroupfs driver, no CAP_SYS_RESOURCE (oomScoreAdj 0), eviction and image GC
// thresholds low enough never to evict the test's pods or images, no read-only port, x509 and
// webhook authentication and webhook authorization against the API server.
func kubeletConfig(s kubeletSettings) string {
	return fmt.Sprintf(`apiVersion: kubelet.config.k8s.io/v1beta1
kind: KubeletConfiguration
address: %q
port: %d
readOnlyPort: 0
healthzPort: 0
tlsCertFile: %q
tlsPrivateKeyFile: %q
authentication:
  anonymous:
    enabled: false
  webhook:
    enabled: true
  x509:
    clientCAFile: %q
authorization:
  mode: Webhook
containerRuntimeEndpoint: %q
imageServiceEndpoint: %q
cgroupDriver: cgroupfs
failCgroupV1: false
failSwapOn: false
oomScoreAdj: 0
podLogsDir: %q
evictionHard:
  memory.available: "1Mi"
  nodefs.available: "1%%"
  nodefs.inodesFree: "1%%"
  imagefs.available: "1%%"
  imagefs.inodesFree: "1%%"
imageGCHighThresholdPercent: 100
imageGCLowThresholdPercent: 99
resolvConf: /etc/resolv.conf
clusterDomain: cluster.local
rotateCertificates: false
serverTLSBootstrap: false
shutdownGracePeriod: 0s
`, s.address, s.port, s.serving.cert, s.serving.key, s.caFile,
		s.runtimeEndpoint, s.runtimeEndpoint, s.podLogsDir)
}

// cniConflist renders the pod network: a bridge that is the pods' gateway (so kubelet's probes
// reach pod IPs from the host) with host-local IPAM keeping its leases in ipamDir. No masquerade:
// test pods need no way out.
func cniConflist(bridge, subnet, ipamDir string) (string, error) {
	conf := map[string]any{
		"cniVersion": "1.0.0",
		"name":       "podorder",
		"plugins": []any{
			map[string]any{
				"type":        "bridge",
				"bridge":      bridge,
				"isGateway":   true,
				"ipMasq":      false,
				"hairpinMode": true,
				"ipam": map[string]any{
					"type":    "host-local",
					"ranges":  [][]map[string]string{{{"subnet": subnet}}},
					"dataDir": ipamDir,
				},
			},
		},
	}
	data, err := json.MarshalIndent(conf, "", "  ")
	if err != nil {
		return "", fmt.Errorf("encode CNI config: %w", err)
	}
	return string(data), nil
}

// writeFile writes a config file, naming it in the error.
func writeFile(path, content string, mode os.FileMode) error {
	if err := os.WriteFile(path, []byte(content), mode); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	return nil
}

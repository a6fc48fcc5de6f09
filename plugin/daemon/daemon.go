// Package daemon runs podorder's node daemon: it connects the NRI plugin to the runtime's NRI socket
// and reconnects whenever the runtime restarts, for as long as its context lives.
package daemon

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"strings"

	"github.com/podorder/podorder/plugin/hostnet"
	"github.com/podorder/podorder/plugin/podstate"
)

// Config is the daemon's configuration; every field is a flag and an env var PODORDER_<FLAG>.
type Config struct {
	NRISocket   string
	PluginIndex string
	StoreDir    string
	HookBinary  string
	LogFormat   string
	LogLevel    string
	// NodeName enables the Kubernetes API (with Kubeconfig, or in-cluster credentials).
	NodeName   string
	Kubeconfig string
	// AllowCrossNamespace lists source=target rules: pods of source may depend on pods of target.
	AllowCrossNamespace string
	// ProbeHostNetwork says podorder runs in the node's network namespace and may probe
	// host-network pods from there.
	ProbeHostNetwork bool
	// StopWith lets podorder stop containers bound with podorder.dev/stop-with, which needs the
	// host's PID namespace and CAP_KILL; without it such declarations are refused.
	StopWith bool
	// HealthAddr serves /healthz (200 while connected to the runtime's NRI socket) and
	// /debug/runtime, unauthenticated: loopback by default, where only the node reaches it.
	HealthAddr string
	// MetricsAddr serves /metrics over HTTPS to users the API server authorizes; empty disables it.
	MetricsAddr string
	// MetricsCertDir holds tls.crt and tls.key for MetricsAddr; empty: a self-signed certificate.
	MetricsCertDir string
	// MetricsSecure false serves MetricsAddr over plain HTTP to anyone (kubebuilder's
	// --metrics-secure): for a loopback address, where no API is needed to authorize a scraper.
	MetricsSecure bool
	// RuntimeBinary is the runtime binary containerd runs (runc), as the daemon sees it, for the
	// preflight to read its version; empty: unknown until the first held container shows it.
	RuntimeBinary string
	// ReadinessEvents is "auto" (follow the kernel's LISTEN events when the kernel allows it) or
	// "none" (probes poll).
	ReadinessEvents string
}

// RegisterFlags declares the daemon's flags on fs, with defaults taken from PODORDER_* env vars.
func (c *Config) RegisterFlags(fs *flag.FlagSet) {
	fs.StringVar(&c.NRISocket, "nri-socket", env("nri-socket", "/var/run/nri/nri.sock"), "the runtime's NRI socket")
	fs.StringVar(&c.PluginIndex, "plugin-index", env("plugin-index", "10"), "NRI plugin index, two digits: order among plugins")
	fs.StringVar(&c.StoreDir, "store-dir", env("store-dir", "/run/podorder"), "directory of the tombstone store")
	fs.StringVar(&c.HookBinary, "hook-binary", env("hook-binary", "/opt/podorder/bin/podorder-hook"), "host path of the hook binary to bind-mount into held containers")
	fs.StringVar(&c.LogFormat, "log-format", env("log-format", "text"), "log format: text or json")
	fs.StringVar(&c.LogLevel, "log-level", env("log-level", "info"), "log level: debug, info, warn or error")
	fs.StringVar(&c.NodeName, "node-name", env("node-name", os.Getenv("NODE_NAME")), "this node's name; enables kubelet readiness, Events and pod(...) dependencies through the Kubernetes API (default $NODE_NAME)")
	fs.StringVar(&c.Kubeconfig, "kubeconfig", env("kubeconfig", ""), "kubeconfig for the Kubernetes API (default: in-cluster credentials)")
	fs.StringVar(&c.HealthAddr, "health-addr", env("health-addr", "127.0.0.1:8081"), "address of the /healthz endpoint (200 while connected to NRI), unauthenticated; empty to disable")
	fs.StringVar(&c.MetricsAddr, "metrics-addr", env("metrics-addr", ":8443"),
		"address of the HTTPS /metrics endpoint, for bearer tokens the API server allows to get /metrics (ClusterRole podorder-metrics-reader); needs the Kubernetes API; empty to disable")
	fs.StringVar(&c.MetricsCertDir, "metrics-cert-dir", env("metrics-cert-dir", ""), "directory of tls.crt and tls.key for the metrics endpoint (default: a self-signed certificate made at start)")
	fs.BoolVar(&c.MetricsSecure, "metrics-secure", env("metrics-secure", "true") == "true",
		"serve metrics over HTTPS with authentication and authorization by the API server; false: plain HTTP to anyone, only for a loopback --metrics-addr")
	fs.StringVar(&c.AllowCrossNamespace, "allow-cross-namespace", env("allow-cross-namespace", ""),
		"comma-separated <source>=<target> namespace rules: pods of source may declare pod(<target>/...) dependencies; *=<target> allows every source")
	fs.BoolVar(&c.StopWith, "stop-with", env("stop-with", "true") == "true",
		"stop containers bound with podorder.dev/stop-with (needs hostPID and CAP_KILL); false refuses those declarations")
	fs.StringVar(&c.RuntimeBinary, "runtime-binary", env("runtime-binary", ""),
		"the runtime binary containerd runs (runc), as podorder sees it (mount the host's read-only), to check its version at start; empty: judged at the first held container")
	fs.StringVar(&c.ReadinessEvents, "readiness-events", env("readiness-events", "auto"),
		"auto: probes follow the kernel's LISTEN events (an eBPF program; needs BTF and CAP_BPF+CAP_PERFMON or CAP_SYS_ADMIN) when the kernel allows it, else poll; none: poll")
	fs.BoolVar(&c.ProbeHostNetwork, "probe-host-network", env("probe-host-network", "false") == "true",
		"podorder runs in the node's network namespace (a host process, or hostNetwork: true), so podorder.dev/probe may be declared by hostNetwork pods")
}

// env returns PODORDER_<FLAG> (dashes as underscores) or def.
func env(flagName, def string) string {
	if v, ok := os.LookupEnv("PODORDER_" + strings.ToUpper(strings.ReplaceAll(flagName, "-", "_"))); ok {
		return v
	}
	return def
}

// Logger returns the daemon's structured logger as configured, writing to w (standard error).
func (c *Config) Logger(w io.Writer) (*slog.Logger, error) {
	var level slog.Level
	if err := level.UnmarshalText([]byte(c.LogLevel)); err != nil {
		return nil, fmt.Errorf("--log-level %q: %w", c.LogLevel, err)
	}
	opts := &slog.HandlerOptions{Level: level}
	switch c.LogFormat {
	case "text":
		return slog.New(slog.NewTextHandler(w, opts)), nil
	case "json":
		return slog.New(slog.NewJSONHandler(w, opts)), nil
	}
	return nil, fmt.Errorf("--log-format %q: use text or json", c.LogFormat)
}

// Validate checks what would otherwise fail later, at the first held container.
func (c *Config) Validate() error {
	if len(c.PluginIndex) != 2 || strings.Trim(c.PluginIndex, "0123456789") != "" {
		return fmt.Errorf("--plugin-index %q: want two digits, such as 10", c.PluginIndex)
	}
	st, err := os.Stat(c.HookBinary)
	if err != nil {
		return fmt.Errorf("--hook-binary: %w (the DaemonSet's init container copies it there)", err)
	}
	if st.Mode()&0o111 == 0 {
		return fmt.Errorf("--hook-binary %s is not executable", c.HookBinary)
	}
	if _, err := podstate.ParseCrossNamespaceRules(c.AllowCrossNamespace); err != nil {
		return fmt.Errorf("--allow-cross-namespace: %w", err)
	}
	if c.ReadinessEvents != "" && c.ReadinessEvents != "auto" && c.ReadinessEvents != "none" {
		return fmt.Errorf("--readiness-events %q: use auto or none", c.ReadinessEvents)
	}
	if !c.MetricsSecure && c.MetricsAddr != "" && !loopback(c.MetricsAddr) {
		return fmt.Errorf("--metrics-secure=false serves metrics without authentication, so only on loopback: --metrics-addr %s is not; "+
			"use 127.0.0.1:<port>, or keep --metrics-secure (HTTPS, authorized by the API server)", c.MetricsAddr)
	}
	if !c.ProbeHostNetwork {
		return nil
	}
	// When podorder cannot tell (Run warns), the flag is taken on trust: refusing to start would,
	// with containerd's fail-closed validator, stop every container start on the node, a worse
	// failure than probes of hostNetwork pods run from the wrong network.
	if in, err := inNodeNetwork(); err == nil && !in {
		return errors.New("--probe-host-network needs hostNetwork: true: podorder runs in a network namespace other than the node's (PID 1's), " +
			"so it would probe hostNetwork pods from the wrong network. Give its DaemonSet hostNetwork: true (the chart's hostNetwork value), " +
			"or drop the flag (the chart's probes.hostNetwork: false)")
	}
	return nil
}

// loopback reports whether addr (host:port) names a loopback address: an empty host or a name
// listens on every address, so neither is.
func loopback(addr string) bool {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return false
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// inNodeNetwork is hostnet.InNode; tests replace it.
var inNodeNetwork = hostnet.InNode

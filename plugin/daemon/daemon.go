// Package daemon runs podorder's node daemon: it connects the NRI plugin to the runtime's NRI socket
// and reconnects whenever the runtime restarts, for as long as its context lives.
package daemon

import (
	"cmp"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"runtime"
	"strings"
	"sync/atomic"
	"time"

	nrilog "github.com/containerd/nri/pkg/log"
	"github.com/containerd/nri/pkg/stub"
	"k8s.io/klog/v2"

	"github.com/podorder/podorder/hooks/tombstone"
	"github.com/podorder/podorder/plugin"
	"github.com/podorder/podorder/plugin/hostnet"
	"github.com/podorder/podorder/plugin/kube"
	"github.com/podorder/podorder/plugin/kubeauth"
	"github.com/podorder/podorder/plugin/metrics"
	"github.com/podorder/podorder/plugin/podstate"
	"github.com/podorder/podorder/plugin/preflight"
	"github.com/podorder/podorder/plugin/probe"
	"github.com/podorder/podorder/plugin/serve"
	"github.com/podorder/podorder/plugin/status"
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

// Run serves the runtime until ctx ends, reconnecting after every disconnect.
func Run(ctx context.Context, cfg Config, log *slog.Logger) error {
	store := tombstone.Store{Root: cfg.StoreDir}
	if err := os.MkdirAll(store.Root, 0o755); err != nil {
		return fmt.Errorf("create store directory: %w", err)
	}
	nrilog.Set(nriLogger{log.With("component", "nri")})
	rules, err := podstate.ParseCrossNamespaceRules(cfg.AllowCrossNamespace)
	if err != nil {
		return fmt.Errorf("--allow-cross-namespace: %w", err)
	}
	var p *plugin.Plugin
	src := connectAPI(cfg, log)
	m := metrics.New(func() float64 { return float64(p.Held()) }, func() float64 {
		if src != nil && src.Synced() {
			return 1
		}
		return 0
	})
	var events preflight.Events
	if src != nil {
		events = src
	}
	node := preflight.NewNode(log, m, events)
	node.Observe(preflight.JudgeRuntime(preflight.FindRuntime(ctx, cfg.RuntimeBinary)))
	pcfg := plugin.Config{HookBinary: cfg.HookBinary, CrossNamespace: rules, ProbeHostNetwork: cfg.ProbeHostNetwork, Metrics: m,
		RuntimeConnected: func(runtime, version string) { node.Observe(preflight.JudgeContainerd(runtime, version)) },
		RuntimeJudged: func(blocking bool, after time.Duration, seenAt string) {
			node.Observe(preflight.JudgeRuntimeFinding(node.Verdict(preflight.RuntimeVersion), blocking, after, seenAt))
		},
	}
	if cfg.StopWith {
		pcfg.Processes = plugin.OSProcesses
	}
	if pcfg.NodeNetwork, err = hostnet.Node(); err != nil {
		log.Warn("cannot identify the node's network namespace: a pod counts as hostNetwork only when it names no network namespace", "error", err)
	}
	if cfg.ProbeHostNetwork {
		if _, err := inNodeNetwork(); err != nil {
			log.Warn("--probe-host-network is taken on trust: podorder cannot tell whether it runs in the node's network namespace", "error", err)
		}
	}
	if src != nil {
		conditions := kube.NewConditions(src.Client(), 10, log)
		conditions.Failed = m.ConditionWriteFailed
		go conditions.Run(ctx)
		pcfg.Kube = &plugin.Kubernetes{Specs: src, Events: src, Pods: src, Conditions: conditions}
	}
	prober := probe.NewRunner(log)
	prober.Attempted = m.ProbeAttempted
	p = plugin.New(pcfg, store, prober, log)
	if src != nil {
		// Names are checked against pod specs at CreateContainer: list this node's pods first, but
		// do not hold up the NRI connection for long if the API is slow.
		if err := src.Start(ctx, p, 20*time.Second); err != nil {
			log.Warn("Kubernetes API not ready; continuing, the informer keeps trying", "error", err)
		}
	}

	if err := status.Serve(ctx, status.Socket(cfg.StoreDir), p.Status, node.Verdicts, p.Timeline, log); err != nil {
		return err
	}
	var connected atomic.Bool
	if cfg.HealthAddr != "" {
		if err := serveHealth(ctx, cfg.HealthAddr, &connected, log); err != nil {
			return err
		}
	}
	if err := serveMetrics(ctx, cfg, src, m.Handler(), log); err != nil {
		return err
	}
	l := nriLoop{
		socket: cfg.NRISocket,
		serve: func(ctx context.Context, up func()) (preflight.Reachability, error) {
			return serveNRI(ctx, cfg, p, &connected, up)
		},
		node:        node,
		log:         log,
		now:         time.Now,
		sleep:       sleep,
		reconnected: m.Reconnected,
		grace:       30 * time.Second,
	}
	l.run(ctx)
	return nil
}

// nriLoop connects to the runtime's NRI socket and reconnects after every disconnect, for as long
// as its context lives, and tells the preflight what each attempt found.
type nriLoop struct {
	socket string
	// serve connects and serves until the connection ends; it calls up once connected, and returns
	// what its dial found (Path empty: it did not dial) and why it ended.
	serve func(ctx context.Context, up func()) (preflight.Reachability, error)
	node  *preflight.Node
	log   *slog.Logger
	now   func() time.Time
	// sleep waits d, or returns false when ctx ends first.
	sleep       func(ctx context.Context, d time.Duration) bool
	reconnected func()
	// grace is how long the socket may stay unreachable once podorder was connected before the
	// preflight reports it: containerd restarts take a few seconds.
	grace time.Duration
}

// run tries to connect at a growing interval (100 ms to 5 s). The preflight's actionable message
// is logged once per change of verdict; the loop's own line is at warn only when its error
// changes, at debug when it repeats.
func (l *nriLoop) run(ctx context.Context) {
	backoff := 100 * time.Millisecond
	var everConnected bool
	var downSince time.Time
	var lastErr string
	for {
		began := l.now()
		up := false
		r, err := l.serve(ctx, func() {
			up, everConnected, downSince, lastErr = true, true, time.Time{}, ""
			l.node.Observe(preflight.JudgeSocket(preflight.Reachability{Path: l.socket}))
		})
		if ctx.Err() != nil {
			return
		}
		now := l.now()
		if now.Sub(began) > 10*time.Second {
			backoff = 100 * time.Millisecond
		}
		if downSince.IsZero() {
			downSince = now
		}
		if r.Path != "" && r.Problem != preflight.Reachable && preflight.Settled(everConnected, now.Sub(downSince), l.grace) {
			l.node.Observe(preflight.JudgeSocket(r))
		}
		msg := "cannot connect to the runtime's NRI socket; retrying"
		if up {
			msg = "disconnected from the runtime's NRI socket; reconnecting"
		}
		errText := fmt.Sprint(err)
		level := slog.LevelDebug
		if up || errText != lastErr {
			level = slog.LevelWarn
		}
		lastErr = errText
		l.log.Log(ctx, level, msg, "socket", l.socket, "error", err, "retry_in", backoff.String())
		if !l.sleep(ctx, backoff) {
			return
		}
		backoff = min(backoff*2, 5*time.Second)
		l.reconnected()
	}
}

// sleep waits d, or returns false when ctx ends first.
func sleep(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}

// serveNRI connects to the NRI socket, through a dialer that records what it found, and serves
// until the connection ends; up is called once podorder is registered.
func serveNRI(ctx context.Context, cfg Config, p *plugin.Plugin, connected *atomic.Bool, up func()) (preflight.Reachability, error) {
	var reach preflight.Reachability
	s, err := stub.New(p,
		stub.WithPluginName("podorder"),
		stub.WithPluginIdx(cfg.PluginIndex),
		stub.WithSocketPath(cfg.NRISocket),
		// The connection podorder makes anyway is the preflight's probe of the socket.
		stub.WithDialer(func(path string) (net.Conn, error) {
			conn, r := preflight.Dial(path, 2*time.Second)
			reach = r
			return conn, r.Err
		}),
		// The default on-close handler exits the process; podorder reconnects instead.
		stub.WithOnClose(func() {}),
	)
	if err != nil {
		return reach, fmt.Errorf("create NRI stub: %w", err)
	}
	if err := s.Start(ctx); err != nil {
		return reach, err
	}
	connected.Store(true)
	defer connected.Store(false)
	up()
	stopped := make(chan struct{})
	defer close(stopped)
	go func() {
		select {
		case <-ctx.Done():
			s.Stop()
		case <-stopped:
		}
	}()
	s.Wait()
	return reach, errors.New("connection closed")
}

// serveHealth answers /healthz with 200 while podorder is connected to the runtime, 503 otherwise,
// for the DaemonSet's probes. It has no authentication: it is meant for loopback, which kubelet
// reaches for a hostNetwork pod.
func serveHealth(ctx context.Context, addr string, connected *atomic.Bool, log *slog.Logger) error {
	l, err := serve.Listen(addr, serve.DefaultLimits.MaxConns)
	if err != nil {
		return fmt.Errorf("--health-addr %s: %w", addr, err)
	}
	mux := http.NewServeMux()
	mux.HandleFunc("/healthz", func(w http.ResponseWriter, _ *http.Request) {
		if !connected.Load() {
			http.Error(w, "not connected to the runtime's NRI socket", http.StatusServiceUnavailable)
			return
		}
		fmt.Fprintln(w, "ok: connected to the runtime")
	})
	// What a churn campaign checks returns to its baseline once the pods are gone; threads and
	// memory are in /proc.
	mux.HandleFunc("/debug/runtime", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		fmt.Fprintf(w, "{\"goroutines\":%d}\n", runtime.NumGoroutine())
	})
	serve.Run(serve.Server(mux, serve.DefaultLimits, log), l, ctx.Done(), "health", log)
	return nil
}

// serveMetrics serves /metrics over HTTPS to the bearer tokens whose users the API server allows to
// get /metrics; or, with --metrics-secure=false, over plain HTTP to anyone. Without the API (src
// nil) there is no one to ask, and it says so.
func serveMetrics(ctx context.Context, cfg Config, src *kube.Source, metrics http.Handler, log *slog.Logger) error {
	if cfg.MetricsAddr == "" {
		return nil
	}
	if cfg.MetricsSecure && src == nil {
		log.Warn("metrics are off: the metrics endpoint lets the Kubernetes API server authorize each scraper, "+
			"and there is no API (set NODE_NAME; or --metrics-addr= to silence this, or --metrics-secure=false on a loopback address)", "metrics_addr", cfg.MetricsAddr)
		return nil
	}
	l, err := serve.Listen(cfg.MetricsAddr, serve.DefaultLimits.MaxConns)
	if err != nil {
		return fmt.Errorf("--metrics-addr %s: %w", cfg.MetricsAddr, err)
	}
	l.PerPeer = serve.MetricsPerPeer
	mux := http.NewServeMux()
	srv := serve.Server(mux, serve.DefaultLimits, log)
	if !cfg.MetricsSecure {
		mux.Handle("/metrics", metrics)
		serve.Run(srv, l, ctx.Done(), "metrics", log)
		log.Warn("serving metrics over plain HTTP to anyone (--metrics-secure=false)", "metrics_addr", cfg.MetricsAddr)
		return nil
	}
	if srv.TLSConfig, err = serve.TLSConfig(cfg.MetricsCertDir, cfg.NodeName); err != nil {
		l.Close()
		return fmt.Errorf("--metrics-cert-dir: %w", err)
	}
	mux.Handle("/metrics", kubeauth.New(src.Client(), log).Wrap(metrics))
	serve.Run(srv, l, ctx.Done(), "metrics", log)
	log.Info("serving metrics over HTTPS to users allowed to get /metrics", "metrics_addr", cfg.MetricsAddr,
		"certificate", cmp.Or(cfg.MetricsCertDir, "self-signed"))
	return nil
}

// nriLogger routes the NRI library's logs into the daemon's structured log.
type nriLogger struct{ log *slog.Logger }

// Debugf logs at debug level.
func (l nriLogger) Debugf(_ context.Context, f string, a ...any) { l.log.Debug(fmt.Sprintf(f, a...)) }

// Infof logs at debug level too: NRI's info lines are per-connection chatter, and podorder's own log
// keeps one line per decision at info.
func (l nriLogger) Infof(_ context.Context, f string, a ...any) { l.log.Debug(fmt.Sprintf(f, a...)) }

// Warnf logs at warn level.
func (l nriLogger) Warnf(_ context.Context, f string, a ...any) { l.log.Warn(fmt.Sprintf(f, a...)) }

// Errorf logs at error level.
func (l nriLogger) Errorf(_ context.Context, f string, a ...any) { l.log.Error(fmt.Sprintf(f, a...)) }

// connectAPI returns the Kubernetes API source, or nil (said once) when podorder runs without it.
func connectAPI(cfg Config, log *slog.Logger) *kube.Source {
	if cfg.NodeName == "" {
		log.Warn("no Kubernetes API: NODE_NAME is not set; readiness comes from podorder's own probes only, " +
			"and pod(...) dependencies are refused")
		return nil
	}
	// client-go logs through klog: route it into the daemon's handler, so --log-format=json gives
	// one format.
	klog.SetSlogLogger(log.With("component", "client-go"))
	rc, err := kube.Config(cfg.Kubeconfig)
	if err == nil {
		var src *kube.Source
		if src, err = kube.New(rc, cfg.NodeName, log); err == nil {
			log.Info("using the Kubernetes API: ready means kubelet-ready and released", "node", cfg.NodeName)
			return src
		}
	}
	log.Warn("no Kubernetes API; readiness comes from podorder's own probes only, and pod(...) dependencies are refused", "error", err)
	return nil
}

// The daemon proper, Linux only: NRI, pidfds, netlink and network namespaces. run_other.go stands in
// elsewhere, so that the offline commands build for a workstation.

package daemon

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"runtime"
	"sync/atomic"
	"time"

	nrilog "github.com/containerd/nri/pkg/log"
	"github.com/containerd/nri/pkg/stub"
	"k8s.io/klog/v2"

	"github.com/podorder/podorder/hooks/tombstone"
	"github.com/podorder/podorder/plugin"
	"github.com/podorder/podorder/plugin/appready"
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
	var nodeEvents preflight.Events
	if src != nil {
		nodeEvents = src
	}
	node := preflight.NewNode(log, m, nodeEvents)
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
	notifier := appready.NewNotifier(0, log)
	notifier.Datagram = m.NotifyDatagram
	pcfg.Signals = appSignals{notify: notifier, files: appready.NewFiles(0, log)}
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
	events := followListenEvents(ctx, cfg.ReadinessEvents, prober, m, log)
	p = plugin.New(pcfg, store, prober, log)
	if src != nil {
		// Names are checked against pod specs at CreateContainer: list this node's pods first, but
		// do not hold up the NRI connection for long if the API is slow.
		if err := src.Start(ctx, p, 20*time.Second); err != nil {
			log.Warn("Kubernetes API not ready; continuing, the informer keeps trying", "error", err)
		}
	}

	nodeLines := func() []preflight.Verdict { return append(node.Verdicts(), events.verdict()) }
	if err := status.Serve(ctx, status.Socket(cfg.StoreDir), p.Status, nodeLines, p.Timeline, log); err != nil {
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

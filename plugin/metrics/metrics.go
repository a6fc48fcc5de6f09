// Package metrics is podorder's Prometheus instrumentation, served at /metrics on the daemon's HTTPS metrics port.
// Labels are bounded: NRI event names, hold outcomes and fixed results, never pod or container names.
package metrics

import (
	"net/http"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/podorder/podorder/plugin/podstate"
	"github.com/podorder/podorder/plugin/preflight"
)

// Metrics holds podorder's collectors in a registry of its own.
type Metrics struct {
	registry *prometheus.Registry

	holdDuration   *prometheus.HistogramVec
	releaseLatency prometheus.Histogram
	nriDuration    *prometheus.HistogramVec
	probeAttempts  *prometheus.CounterVec
	notifyGrams    *prometheus.CounterVec
	storeErrors    prometheus.Counter
	reconnects     prometheus.Counter
	conditionErrs  prometheus.Counter
	preflight      *prometheus.GaugeVec
	readiness      *prometheus.GaugeVec
}

// New registers podorder's metrics. holds and apiSynced are read at each scrape: the number of
// containers held right now, and whether the node's pod informer has synced (1) or not (0).
func New(holds func() float64, apiSynced func() float64) *Metrics {
	m := &Metrics{
		registry: prometheus.NewRegistry(),
		holdDuration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "podorder_hold_duration_seconds",
			Help:    "How long a held container waited, from its creation to the end of its hold, by outcome.",
			Buckets: []float64{0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600, 1800, 3600},
		}, []string{"outcome"}),
		releaseLatency: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "podorder_release_latency_seconds",
			Help:    "From the event that met a hold's last dependency to its release being written and the hook woken.",
			Buckets: []float64{0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1},
		}),
		nriDuration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "podorder_nri_handler_duration_seconds",
			Help:    "Time spent in podorder's NRI handlers, under the runtime's node-wide NRI lock, by event.",
			Buckets: []float64{0.00001, 0.000025, 0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1},
		}, []string{"event"}),
		notifyGrams: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "podorder_notify_datagrams_total",
			Help: "Datagrams read from containers' notify sockets: counted (a READY=1 from a process of the container attempt), ignored (no READY=1) or refused (over 4 KiB, passing file descriptors, or sent by a process of another container or of the node).",
		}, []string{"result"}),
		probeAttempts: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "podorder_probe_attempts_total",
			Help: "Attempts of podorder's own readiness probes, by result (passed or failed).",
		}, []string{"result"}),
		storeErrors: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "podorder_store_write_errors_total",
			Help: "Tombstone writes that failed; hooks keep waiting on the previous state until the next write.",
		}),
		reconnects: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "podorder_runtime_reconnects_total",
			Help: "Connections to the runtime's NRI socket after the first (containerd restarts, plugin timeouts).",
		}),
		conditionErrs: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "podorder_condition_write_errors_total",
			Help: "Failed writes of the podorder.dev/released pod condition through the API; each is retried.",
		}),
		preflight: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "podorder_preflight_ok",
			Help: "1 when a check of the node passes (nri_socket, containerd_version, runtime_version), 0 when it fails; absent while podorder cannot tell.",
		}, []string{"check"}),
		readiness: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "podorder_readiness_events",
			Help: "1 for the source of the kernel's LISTEN events podorder's probes follow (ebpf), or for none when they poll; 0 for the other.",
		}, []string{"source"}),
	}
	m.registry.MustRegister(m.preflight, m.readiness, m.holdDuration, m.releaseLatency, m.nriDuration, m.probeAttempts, m.notifyGrams, m.storeErrors, m.reconnects, m.conditionErrs,
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "podorder_holds", Help: "Containers held right now."}, holds),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "podorder_api_synced", Help: "1 when the node's pod informer has listed the API's pods, 0 when not (or no API)."}, apiSynced),
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
	)
	for _, o := range []string{podstate.OutcomeReleased, podstate.OutcomeTimeout, podstate.OutcomeDependencyFailed, podstate.OutcomeStopped} {
		m.holdDuration.WithLabelValues(o)
	}
	m.probeAttempts.WithLabelValues("passed")
	m.probeAttempts.WithLabelValues("failed")
	for _, r := range []string{"counted", "ignored", "refused"} {
		m.notifyGrams.WithLabelValues(r)
	}
	return m
}

// Handler serves the registry in the Prometheus exposition format.
func (m *Metrics) Handler() http.Handler {
	return promhttp.HandlerFor(m.registry, promhttp.HandlerOpts{})
}

// HoldEnded records a hold's end.
func (m *Metrics) HoldEnded(outcome string, held time.Duration) {
	m.holdDuration.WithLabelValues(outcome).Observe(held.Seconds())
}

// Released records how long a release took to be written.
func (m *Metrics) Released(latency time.Duration) { m.releaseLatency.Observe(latency.Seconds()) }

// Handled records one NRI handler's duration.
func (m *Metrics) Handled(event string, d time.Duration) {
	m.nriDuration.WithLabelValues(event).Observe(d.Seconds())
}

// ProbeAttempted records one probe attempt's result.
func (m *Metrics) ProbeAttempted(err error) {
	if err == nil {
		m.probeAttempts.WithLabelValues("passed").Inc()
		return
	}
	m.probeAttempts.WithLabelValues("failed").Inc()
}

// StoreWriteFailed counts a failed tombstone write.
func (m *Metrics) StoreWriteFailed() { m.storeErrors.Inc() }

// Reconnected counts a reconnection to the runtime.
func (m *Metrics) Reconnected() { m.reconnects.Inc() }

// ConditionWriteFailed counts a failed pod-condition write.
func (m *Metrics) ConditionWriteFailed() { m.conditionErrs.Inc() }

// NotifyDatagram counts one datagram read from a notify socket, by its result: counted, ignored or
// refused.
func (m *Metrics) NotifyDatagram(result string) { m.notifyGrams.WithLabelValues(result).Inc() }

// ReadinessSources are the values of podorder_readiness_events' source label.
var ReadinessSources = []string{"ebpf", "none"}

// ReadinessEvents records which source of LISTEN events the probes follow: "ebpf", or "none".
func (m *Metrics) ReadinessEvents(source string) {
	for _, s := range ReadinessSources {
		v := 0.0
		if s == source {
			v = 1
		}
		m.readiness.WithLabelValues(s).Set(v)
	}
}

// PreflightChecked records a preflight check's result: 1 pass, 0 fail, no series while unknown.
func (m *Metrics) PreflightChecked(check string, result preflight.Result) {
	switch result {
	case preflight.Pass:
		m.preflight.WithLabelValues(check).Set(1)
	case preflight.Fail:
		m.preflight.WithLabelValues(check).Set(0)
	default:
		m.preflight.DeleteLabelValues(check)
	}
}

package probe

import (
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"net/url"
	"strconv"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"google.golang.org/grpc"
	"google.golang.org/grpc/encoding"
	grpcproto "google.golang.org/grpc/encoding/proto"
	grpchealth "google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/mem"

	"github.com/podorder/podorder/plugin/decl"
)

func TestListenersAreTheSocketsListeningInTheNamespace(t *testing.T) {
	l4, err := net.Listen("tcp4", "127.0.0.1:0")
	require.NoError(t, err)
	defer l4.Close()
	l6, err := net.Listen("tcp", ":0") // Go's dual-stack wildcard, an IPv6 socket
	require.NoError(t, err)
	defer l6.Close()
	bound := reservePort(t) // bound, not listening: not a listener
	c, err := net.Dial("tcp", l4.Addr().String())
	require.NoError(t, err)
	defer c.Close()

	var ds diagSocket
	defer ds.close()
	l4Port := uint16(l4.Addr().(*net.TCPAddr).Port)
	assert.Equal(t, []netip.AddrPort{netip.MustParseAddrPort(l4.Addr().String())}, listenersOn(t, &ds, l4Port),
		"only the sockets on the port asked for")
	wildcard := netip.IPv6Unspecified()
	if l6.Addr().(*net.TCPAddr).IP.To4() != nil {
		wildcard = netip.IPv4Unspecified() // a host without IPv6: Go listens on IPv4 alone
	}
	l6Port := uint16(l6.Addr().(*net.TCPAddr).Port)
	assert.Equal(t, []netip.AddrPort{netip.AddrPortFrom(wildcard, l6Port)}, listenersOn(t, &ds, l6Port))
	assert.Empty(t, listenersOn(t, &ds, uint16(bound.port)), "a bound socket that does not listen is no listener")
	assert.Empty(t, listenersOn(t, &ds, uint16(c.LocalAddr().(*net.TCPAddr).Port)), "a connection is no listener")
}

// listenersOn lists the listeners on port in the test's own namespace.
func listenersOn(t testing.TB, ds *diagSocket, port uint16) []netip.AddrPort {
	t.Helper()
	ls, err := ds.listeners(func(create func() error) error { return create() }, port, time.Now().Add(time.Second))
	require.NoError(t, err)
	return ls
}

// BenchmarkListeners is the cost of an attempt on a port that does not listen yet.
func BenchmarkListeners(b *testing.B) {
	var ds diagSocket
	defer ds.close()
	for b.Loop() {
		listenersOn(b, &ds, 1)
	}
}

func TestPickListenersDialsWhatKubeletWouldReach(t *testing.T) {
	ap := netip.MustParseAddrPort
	tests := []struct {
		name      string
		ls        []netip.AddrPort
		readiness bool
		want      []string // empty when nothing counts
	}{
		{"nothing on the port", []netip.AddrPort{ap("0.0.0.0:81")}, false, nil},
		{"IPv4 wildcard, reached on loopback", []netip.AddrPort{ap("0.0.0.0:80")}, true, []string{"127.0.0.1"}},
		{"IPv6 wildcard, dual-stack first", []netip.AddrPort{ap("[::]:80")}, true, []string{"127.0.0.1", "::1"}},
		{"both wildcards", []netip.AddrPort{ap("[::]:80"), ap("0.0.0.0:80")}, true, []string{"127.0.0.1", "::1"}},
		{"loopback counts for an annotation probe", []netip.AddrPort{ap("127.0.0.1:80")}, false, []string{"127.0.0.1"}},
		{"loopback only fails a readinessProbe, as kubelet's", []netip.AddrPort{ap("127.0.0.1:80"), ap("[::1]:80")}, true, nil},
		{"mapped loopback fails a readinessProbe", []netip.AddrPort{ap("[::ffff:127.0.0.1]:80")}, true, nil},
		{"the pod's own address", []netip.AddrPort{ap("127.0.0.1:80"), ap("10.244.0.7:80")}, true, []string{"10.244.0.7"}},
		{"IPv4 before IPv6", []netip.AddrPort{ap("[fd00::7]:80"), ap("10.244.0.7:80")}, true, []string{"10.244.0.7", "fd00::7"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var got []string
			for _, a := range pickListeners(tt.ls, 80, tt.readiness) {
				got = append(got, a.String())
			}
			assert.Equal(t, tt.want, got)
		})
	}
}

func TestBackOffAndNodeBudgetStretchThePeriod(t *testing.T) {
	r := &Runner{Interval: 10 * time.Millisecond, FastFor: time.Second, MaxInterval: 100 * time.Millisecond, AttemptsPerSecond: 1000}
	now := time.Now()
	tk := &task{interval: r.Interval, period: r.Interval, begun: now, index: -1}
	r.scheduling = true // keep the scheduler goroutine out of a pure test
	r.wake = make(chan struct{}, 1)
	r.active = 1

	next := func(start time.Time, failed bool) time.Duration {
		r.due, tk.index = nil, -1 // as after the attempt's dispatch
		r.scheduleLocked(tk, start, failed)
		return tk.at.Sub(start)
	}
	future := now.Add(time.Hour) // so that "not before now" never clamps
	tk.begun = future
	assert.Equal(t, 10*time.Millisecond, next(future.Add(500*time.Millisecond), true), "fast while young")
	assert.Equal(t, 20*time.Millisecond, next(future.Add(time.Second), true), "doubles after FastFor")
	assert.Equal(t, 40*time.Millisecond, next(future.Add(time.Second), true))
	assert.Equal(t, 80*time.Millisecond, next(future.Add(time.Second), true))
	assert.Equal(t, 100*time.Millisecond, next(future.Add(time.Second), true), "capped")
	assert.Equal(t, 100*time.Millisecond, next(future.Add(time.Second), false), "a pass towards the threshold keeps the period")

	r.active = 500
	tk.period = r.Interval
	assert.Equal(t, 500*time.Millisecond, next(future, true), "500 probes share 1000 attempts per second")
}

func TestReadinessProbeIgnoresAListenerOnLoopbackOnly(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	defer l.Close()
	port := l.Addr().(*net.TCPAddr).Port
	r, rec := newTestRunner()

	ready, readyCh := signal()
	stop, err := r.Start("", &decl.Probe{Kind: "tcp", Port: port, Readiness: true}, ready)
	require.NoError(t, err)
	defer stop()
	rec.waitFor(t, msgFailed, 3)
	notReady(t, readyCh)

	annotation, annotationCh := signal()
	stop2, err := r.Start("", &decl.Probe{Kind: "tcp", Port: port}, annotation)
	require.NoError(t, err)
	defer stop2()
	waitReady(t, annotationCh)
	notReady(t, readyCh)
}

func TestSuccessThresholdNeedsConsecutivePasses(t *testing.T) {
	var requests atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		if requests.Add(1) == 2 {
			w.WriteHeader(http.StatusServiceUnavailable) // resets the count: 3, 4 and 5 must pass
		}
	}))
	defer srv.Close()
	r, _ := newTestRunner()
	ready, readyCh := signal()
	stop, err := r.Start("", &decl.Probe{Kind: "http", Port: portOf(t, srv.URL), Path: "/", SuccessThreshold: 3}, ready)
	require.NoError(t, err)
	defer stop()
	waitReady(t, readyCh)
	assert.EqualValues(t, 5, requests.Load())
}

func TestInitialDelayPostponesTheFirstAttempt(t *testing.T) {
	var first atomic.Int64
	srv := httptest.NewServer(http.HandlerFunc(func(http.ResponseWriter, *http.Request) {
		first.CompareAndSwap(0, time.Now().UnixNano())
	}))
	defer srv.Close()
	r, _ := newTestRunner()
	ready, readyCh := signal()
	started := time.Now()
	stop, err := r.Start("", &decl.Probe{Kind: "http", Port: portOf(t, srv.URL), Path: "/", InitialDelay: 300 * time.Millisecond}, ready)
	require.NoError(t, err)
	defer stop()
	waitReady(t, readyCh)
	assert.GreaterOrEqual(t, time.Unix(0, first.Load()).Sub(started), 300*time.Millisecond, "no attempt before initialDelaySeconds")
}

func TestHTTPSProbeSendsHeadersAndSkipsVerificationAsKubelet(t *testing.T) {
	var host, token, agent atomic.Value
	srv := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		host.Store(r.Host)
		token.Store(r.Header.Get("X-Token"))
		agent.Store(r.UserAgent())
		if r.URL.Path != "/ready" {
			w.WriteHeader(http.StatusNotFound)
		}
	}))
	defer srv.Close()
	r, _ := newTestRunner()
	ready, readyCh := signal()
	stop, err := r.Start("", &decl.Probe{Kind: "https", Port: portOf(t, srv.URL), Path: "/ready",
		Headers: []decl.Header{{Name: "Host", Value: "api.example"}, {Name: "X-Token", Value: "t1"}}}, ready)
	require.NoError(t, err)
	defer stop()
	waitReady(t, readyCh)
	assert.Equal(t, "api.example", host.Load())
	assert.Equal(t, "t1", token.Load())
	assert.Equal(t, userAgent, agent.Load())
}

func TestGRPCProbePassesWhenTheHealthServiceServes(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	hs := grpchealth.NewServer()
	hs.SetServingStatus("db", healthpb.HealthCheckResponse_NOT_SERVING)
	srv := grpc.NewServer()
	healthpb.RegisterHealthServer(srv, hs)
	go func() { _ = srv.Serve(l) }()
	defer srv.Stop()

	r, rec := newTestRunner()
	ready, readyCh := signal()
	stop, err := r.Start("", &decl.Probe{Kind: "grpc", Port: l.Addr().(*net.TCPAddr).Port, Service: "db"}, ready)
	require.NoError(t, err)
	defer stop()
	rec.waitFor(t, msgFailed, 3)
	notReady(t, readyCh)
	hs.SetServingStatus("db", healthpb.HealthCheckResponse_SERVING)
	waitReady(t, readyCh)
}

func TestAnAttemptOnAClosedPortNeverConnects(t *testing.T) {
	port := reservePort(t)
	var ds diagSocket
	defer ds.close()
	_, err := listeningAddrs(&decl.Probe{Kind: "tcp", Port: port.port}, listenersOn(t, &ds, uint16(port.port)))
	require.ErrorIs(t, err, errNotListening)
	port.listen(t)
	addrs, err := listeningAddrs(&decl.Probe{Kind: "tcp", Port: port.port}, listenersOn(t, &ds, uint16(port.port)))
	require.NoError(t, err)
	assert.Equal(t, []string{net.JoinHostPort("127.0.0.1", strconv.Itoa(port.port))}, addrs)
}

func portOf(t *testing.T, rawURL string) int {
	t.Helper()
	u, err := url.Parse(rawURL)
	require.NoError(t, err)
	n, err := strconv.Atoi(u.Port())
	require.NoError(t, err)
	return n
}

func TestGRPCHealthMessages(t *testing.T) {
	assert.Nil(t, healthRequest(""), "the whole server: an empty message")
	assert.Equal(t, []byte{0x0a, 2, 'd', 'b'}, healthRequest("db"))
	assert.Equal(t, []byte{0, 0, 0, 0, 2, 0x08, 0x01}, grpcFrame([]byte{0x08, 0x01}))
	tests := []struct {
		name    string
		body    []byte
		serving bool
		err     string
	}{
		{"SERVING", grpcFrame([]byte{0x08, 1}), true, ""},
		{"NOT_SERVING", grpcFrame([]byte{0x08, 2}), false, ""},
		{"UNKNOWN, the field absent", grpcFrame(nil), false, ""},
		{"an unknown string field is skipped", grpcFrame([]byte{0x12, 1, 'x', 0x08, 1}), true, ""},
		{"a frame shorter than it says", []byte{0, 0, 0, 0, 9, 0x08}, false, "malformed response frame"},
		{"a truncated varint", grpcFrame([]byte{0x08}), false, "malformed response"},
		{"a fixed64 field", grpcFrame([]byte{0x09, 1, 2, 3, 4, 5, 6, 7, 8}), false, "unexpected wire type 1"},
		{"a compressed message", []byte{1, 0, 0, 0, 2, 0x08, 0x01}, false, "malformed response frame"},
		{"a frame announcing more than 1 KiB", []byte{0, 0, 0, 4, 1, 0x08, 0x01}, false, "exceeds the 1024 bytes"},
		{"a message over 1 KiB", grpcFrame(append([]byte{0x08, 1, 0x12, 0x80, 0x08}, make([]byte, 1<<10)...)), false, "exceeds the 1024 bytes"},
		{"field number 0", grpcFrame([]byte{0x00, 1, 0x08, 1}), false, "malformed response"},
		{"an enum keeps its low 32 bits, as protobuf's decoder", grpcFrame([]byte{0x08, 0x81, 0x80, 0x80, 0x80, 0x10}), true, ""},
		{"a second message", append(grpcFrame([]byte{0x08, 1}), grpcFrame([]byte{0x08, 1})...), false, "more than one message"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			serving, err := healthServing(tt.body)
			if tt.err != "" {
				require.ErrorContains(t, err, tt.err)
				return
			}
			require.NoError(t, err)
			assert.Equal(t, tt.serving, serving)
		})
	}
}

// FuzzHealthServing holds the hand-written health answer decoder to gRPC's own, the one kubelet's
// grpc probe decodes with: whatever it accepts, gRPC accepts too, with the same verdict. The body
// comes from a tenant's server.
func FuzzHealthServing(f *testing.F) {
	for _, msg := range [][]byte{
		{0x08, 1}, {0x08, 2}, nil, {0x12, 1, 'x', 0x08, 1}, {0x08}, {0x09, 1, 2, 3, 4, 5, 6, 7, 8},
		{0x08, 1, 0x08, 3}, {0x0a, 0}, {0x80, 0x80, 0x80, 0x80, 0x10, 0}, {0xf8, 0xff, 0xff, 0xff, 0x0f, 0},
	} {
		f.Add(grpcFrame(msg))
	}
	f.Add([]byte{1, 0, 0, 0, 2, 0x08, 1})
	f.Add([]byte{0, 0xff, 0xff, 0xff, 0xff, 0x08, 1})
	codec := encoding.GetCodecV2(grpcproto.Name)
	f.Fuzz(func(t *testing.T, body []byte) {
		serving, err := healthServing(body)
		if err != nil {
			require.False(t, serving)
			return
		}
		require.LessOrEqual(t, len(body), 5+maxHealthMessage)
		var resp healthpb.HealthCheckResponse
		require.NoError(t, codec.Unmarshal(mem.BufferSlice{mem.SliceBuffer(body[5:])}, &resp), "gRPC refuses what healthServing accepted")
		assert.Equal(t, resp.GetStatus() == healthpb.HealthCheckResponse_SERVING, serving, "status %v", resp.GetStatus())
	})
}

func TestGRPCProbeOfAnUnknownServiceNeverPasses(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	srv := grpc.NewServer()
	healthpb.RegisterHealthServer(srv, grpchealth.NewServer())
	go func() { _ = srv.Serve(l) }()
	defer srv.Stop()
	r, rec := newTestRunner()
	ready, readyCh := signal()
	stop, err := r.Start("", &decl.Probe{Kind: "grpc", Port: l.Addr().(*net.TCPAddr).Port, Service: "ghost"}, ready)
	require.NoError(t, err)
	defer stop()
	rec.waitFor(t, msgFailed, 5) // NOT_FOUND, in a trailers-only answer
	notReady(t, readyCh)
}

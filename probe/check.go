package probe

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"net/http"
	"strconv"
	"sync/atomic"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
)

// userAgent is what kubelet's probes send, with podorder's name, so applications that keep probes
// out of their access logs keep podorder's out too.
const userAgent = "kube-probe/podorder"

// check judges one attempt over conn, which was connected to addr in the pod's namespace; any thread
// can use it from here on. A tcp probe has passed by connecting.
func check(ctx context.Context, conn net.Conn, addr string, t *task) error {
	switch t.probe.Kind {
	case "http", "https":
		return get(ctx, conn, addr, t)
	case "grpc":
		return health(ctx, conn, addr, t)
	}
	return nil
}

// once hands out conn to the first dial only: a second connection would be made outside the pod's
// namespace.
func once(conn net.Conn) func(context.Context, string, string) (net.Conn, error) {
	var used atomic.Bool
	return func(context.Context, string, string) (net.Conn, error) {
		if used.Swap(true) {
			return nil, errors.New("probe connection already used")
		}
		return conn, nil
	}
}

// get sends the HTTP GET over conn as kubelet does: TLS without verifying the certificate for
// https, the probe's headers, 2xx and 3xx pass, a redirect is judged rather than followed.
func get(ctx context.Context, conn net.Conn, addr string, t *task) error {
	_ = conn.SetDeadline(time.Now().Add(t.timeout))
	p := t.probe
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, p.Kind+"://"+addr+p.Path, nil)
	if err != nil {
		return err
	}
	req.Header.Set("User-Agent", userAgent)
	req.Header.Set("Accept", "*/*")
	for _, h := range p.Headers {
		if http.CanonicalHeaderKey(h.Name) == "Host" {
			req.Host = h.Value
			continue
		}
		req.Header.Add(h.Name, h.Value)
	}
	dial := once(conn)
	tr := &http.Transport{
		// Proxy stays nil: a proxy would reach the node's network, not the pod's.
		DialContext:       dial,
		DisableKeepAlives: true,
	}
	if p.Kind == "https" {
		tr.DialTLSContext = func(ctx context.Context, network, a string) (net.Conn, error) {
			c, err := dial(ctx, network, a)
			if err != nil {
				return nil, err
			}
			// kubelet does not verify a probe's certificate either: the pod is talking to itself.
			tc := tls.Client(c, &tls.Config{InsecureSkipVerify: true}) //nolint:gosec // as kubelet's probes
			if err := tc.HandshakeContext(ctx); err != nil {
				return nil, err
			}
			return tc, nil
		}
	}
	defer tr.CloseIdleConnections()
	client := &http.Client{
		Transport: tr,
		// Judge the 3xx itself, as kubelet does: following it would leave the pod, or fail on a
		// second dial that would not be in the pod's namespace.
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
	resp, err := client.Do(req)
	if err != nil {
		return err
	}
	resp.Body.Close()
	if resp.StatusCode < 200 || resp.StatusCode >= 400 {
		return fmt.Errorf("http status %d", resp.StatusCode)
	}
	return nil
}

// health asks the gRPC health service over conn, as kubelet's grpc probe does: it passes when the
// answer is SERVING.
func health(ctx context.Context, conn net.Conn, addr string, t *task) error {
	dial := once(conn)
	cc, err := grpc.NewClient("passthrough:///"+addr,
		grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithUserAgent(userAgent),
		grpc.WithContextDialer(func(ctx context.Context, a string) (net.Conn, error) { return dial(ctx, "tcp", a) }))
	if err != nil {
		return err
	}
	defer cc.Close()
	resp, err := healthpb.NewHealthClient(cc).Check(ctx, &healthpb.HealthCheckRequest{Service: t.probe.Service})
	if err != nil {
		return err
	}
	if s := resp.GetStatus(); s != healthpb.HealthCheckResponse_SERVING {
		return fmt.Errorf("grpc health status %s", s)
	}
	return nil
}

// hostPort joins an address and a port for dialling.
func hostPort(ip string, port int) string { return net.JoinHostPort(ip, strconv.Itoa(port)) }

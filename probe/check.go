package probe

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"sync/atomic"
	"time"
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
// answer is SERVING. It speaks the protocol itself — one unary call over cleartext HTTP/2 with a
// hand-encoded protobuf message — because the gRPC library would double the daemon's binary and its
// memory for this one call.
func health(ctx context.Context, conn net.Conn, addr string, t *task) error {
	_ = conn.SetDeadline(time.Now().Add(t.timeout))
	var protos http.Protocols
	protos.SetUnencryptedHTTP2(true) // gRPC without TLS: HTTP/2 with prior knowledge
	tr := &http.Transport{DialContext: once(conn), Protocols: &protos, DisableKeepAlives: true}
	defer tr.CloseIdleConnections()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, "http://"+addr+"/grpc.health.v1.Health/Check",
		bytes.NewReader(grpcFrame(healthRequest(t.probe.Service))))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/grpc")
	req.Header.Set("TE", "trailers")
	req.Header.Set("User-Agent", userAgent)
	resp, err := tr.RoundTrip(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
	if err != nil {
		return err
	}
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("grpc health: http status %d", resp.StatusCode)
	}
	// A failed call may come "trailers-only": its status in the headers.
	status := resp.Trailer.Get("Grpc-Status")
	if status == "" {
		status = resp.Header.Get("Grpc-Status")
	}
	if status != "0" {
		return fmt.Errorf("grpc health: status %s %s", status, resp.Trailer.Get("Grpc-Message")+resp.Header.Get("Grpc-Message"))
	}
	serving, err := healthServing(body)
	if err != nil {
		return err
	}
	if !serving {
		return errors.New("grpc health status is not SERVING")
	}
	return nil
}

// healthRequest encodes grpc.health.v1.HealthCheckRequest{service}: field 1, a string.
func healthRequest(service string) []byte {
	if service == "" {
		return nil
	}
	return append(binary.AppendUvarint([]byte{0x0a}, uint64(len(service))), service...)
}

// grpcFrame prefixes a message as gRPC's length-prefixed framing does: uncompressed, big-endian size.
func grpcFrame(msg []byte) []byte {
	return append(binary.BigEndian.AppendUint32([]byte{0}, uint32(len(msg))), msg...)
}

// healthServing decodes one framed grpc.health.v1.HealthCheckResponse and reports whether its status
// (field 1, an enum) is SERVING (1).
func healthServing(body []byte) (bool, error) {
	if len(body) < 5 || body[0] != 0 || int(binary.BigEndian.Uint32(body[1:5])) > len(body)-5 {
		return false, errors.New("grpc health: malformed response frame")
	}
	msg := body[5 : 5+binary.BigEndian.Uint32(body[1:5])]
	status := uint64(0) // UNKNOWN when absent
	for len(msg) > 0 {
		key, n := binary.Uvarint(msg)
		if n <= 0 {
			return false, errors.New("grpc health: malformed response")
		}
		msg = msg[n:]
		switch key & 7 {
		case 0: // varint
			v, n := binary.Uvarint(msg)
			if n <= 0 {
				return false, errors.New("grpc health: malformed response")
			}
			msg = msg[n:]
			if key>>3 == 1 {
				status = v
			}
		case 2: // length-delimited, skipped
			l, n := binary.Uvarint(msg)
			if n <= 0 || l > uint64(len(msg)-n) {
				return false, errors.New("grpc health: malformed response")
			}
			msg = msg[n+int(l):]
		default:
			return false, fmt.Errorf("grpc health: unexpected wire type %d", key&7)
		}
	}
	return status == 1, nil
}

// hostPort joins an address and a port for dialling.
func hostPort(ip string, port int) string { return net.JoinHostPort(ip, strconv.Itoa(port)) }

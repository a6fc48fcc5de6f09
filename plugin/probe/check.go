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
	bc := &boundedConn{Conn: conn}
	switch t.probe.Kind {
	case "http", "https":
		return get(ctx, bc, addr, t)
	case "grpc":
		return health(ctx, bc, addr, t)
	}
	return nil
}

// The bounds on what an attempt reads. Tenants write the servers that answer, so every byte of an
// answer is bounded: a server that answers 200 with 10 MB of tiny headers made one attempt allocate
// over 100 MiB under Go's defaults, and four workers at once put the daemon over its memory limit.
const (
	// maxHeaderBytes caps a response's headers (HTTP/1 counts the status line and every 1xx answer
	// before the final one too; HTTP/2 counts each header list, headers and trailers alike). An
	// answer to a probe needs a status and a few headers; 16 KiB is at least twice what nginx's
	// default proxy_buffer_size lets an application behind it send, and it keeps the parse of a
	// hostile answer to some hundreds of KiB where Go's default of 10 MiB let it pass 100 MiB.
	maxHeaderBytes = 16 << 10
	// maxHealthMessage caps the gRPC health answer, a HealthCheckResponse of two bytes: a larger
	// one is refused, not truncated, so a verdict is never read from part of a message.
	maxHealthMessage = 1 << 10
	// maxAnswerBytes caps everything an attempt reads from its connection — the TLS handshake,
	// HTTP/2's frames, headers, trailers and body — so an answer that stays under the caps above
	// but never ends (endless 1xx answers, frames of no stream) fails as soon as it passes this.
	maxAnswerBytes = 64 << 10
	// h2FrameBytes is the largest HTTP/2 frame, and the per-stream receive window, an attempt
	// accepts: the smallest frame size limit the protocol allows, far more than the answer needs.
	h2FrameBytes = 16 << 10
	// h2ConnWindow is the smallest connection receive window HTTP/2 allows.
	h2ConnWindow = 64 << 10
)

// errHealthTooLarge refuses a health answer larger than maxHealthMessage.
var errHealthTooLarge = fmt.Errorf("grpc health: the answer's message exceeds the %d bytes podorder reads of a "+
	"HealthCheckResponse; answer with the grpc.health.v1 service as it is", maxHealthMessage)

// errReadLimit fails a read past maxAnswerBytes.
var errReadLimit = fmt.Errorf("read limit of %d bytes reached", maxAnswerBytes)

// boundedConn fails reads past maxAnswerBytes, and counts them so that a failure can say the
// answer was too large: net/http's errors for its own caps are not all ones errors.Is can tell.
type boundedConn struct {
	net.Conn
	read atomic.Int64 // written by the transport's reading goroutine, read by the attempt's
}

func (c *boundedConn) Read(p []byte) (int, error) {
	left := maxAnswerBytes - c.read.Load()
	if left <= 0 {
		return 0, errReadLimit
	}
	if int64(len(p)) > left {
		p = p[:left]
	}
	n, err := c.Conn.Read(p)
	c.read.Add(int64(n))
	return n, err
}

// explain adds to err, a failure to get an answer, that the answer was too large, once the attempt
// has read maxHeaderBytes, more than any probe's answer needs before its body: HTTP/2 reports its
// header cap as a bare PROTOCOL_ERROR, which would leave the pod's owner guessing.
func (c *boundedConn) explain(err error) error {
	if n := c.read.Load(); n >= maxHeaderBytes {
		return fmt.Errorf("%w, after %d bytes of answer: podorder reads at most %d bytes of a probe's response headers "+
			"and %d bytes in all; answer the probe with a status and a few headers", err, n, maxHeaderBytes, maxAnswerBytes)
	}
	return err
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
func get(ctx context.Context, conn *boundedConn, addr string, t *task) error {
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
		DialContext:            dial,
		DisableKeepAlives:      true,
		MaxResponseHeaderBytes: maxHeaderBytes,
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
		return conn.explain(err)
	}
	// The verdict is the status alone: the body is closed unread, which also closes the connection
	// (keep-alives are off) rather than draining whatever the server sends.
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
func health(ctx context.Context, conn *boundedConn, addr string, t *task) error {
	_ = conn.SetDeadline(time.Now().Add(t.timeout))
	var protos http.Protocols
	protos.SetUnencryptedHTTP2(true) // gRPC without TLS: HTTP/2 with prior knowledge
	tr := &http.Transport{
		DialContext:            once(conn),
		Protocols:              &protos,
		DisableKeepAlives:      true,
		MaxResponseHeaderBytes: maxHeaderBytes, // also HTTP/2's MAX_HEADER_LIST_SIZE, for trailers too
		// Go's defaults let a server send 1 MiB frames and 4 MiB on the stream before the call
		// reads any of it; the answer is seven bytes. MaxDecoderHeaderTableSize keeps HPACK's
		// default of 4 KiB, which the server may use before it has read these settings.
		HTTP2: &http.HTTP2Config{
			MaxReadFrameSize:              h2FrameBytes,
			MaxReceiveBufferPerStream:     h2FrameBytes,
			MaxReceiveBufferPerConnection: h2ConnWindow,
		},
	}
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
		return conn.explain(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("grpc health: http status %d", resp.StatusCode)
	}
	// One byte more than a frame may hold tells a message that is too large from one that fits;
	// healthServing refuses both it and a frame announcing more.
	body, err := io.ReadAll(io.LimitReader(resp.Body, 5+maxHealthMessage+1))
	if err != nil {
		return conn.explain(fmt.Errorf("grpc health: reading the answer: %w", err))
	}
	if len(body) > 5+maxHealthMessage {
		return errHealthTooLarge // before its trailers, which a server sending more may never reach
	}
	// A failed call may come "trailers-only": its status in the headers.
	status := resp.Trailer.Get("Grpc-Status")
	if status == "" {
		status = resp.Header.Get("Grpc-Status")
	}
	if status == "" {
		return errors.New("grpc health: the answer has no grpc-status")
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
// (field 1, an enum) is SERVING (1). It accepts no answer that gRPC's own decoder would refuse:
// FuzzHealthServing holds it to that.
func healthServing(body []byte) (bool, error) {
	if len(body) < 5 || body[0] != 0 {
		return false, errors.New("grpc health: malformed response frame")
	}
	size := binary.BigEndian.Uint32(body[1:5])
	if size > maxHealthMessage || len(body)-5 > maxHealthMessage {
		return false, errHealthTooLarge
	}
	if int(size) > len(body)-5 {
		return false, errors.New("grpc health: malformed response frame")
	}
	if int(size) < len(body)-5 {
		// As gRPC's own client, which kubelet's probe uses: a unary call has one answer.
		return false, errors.New("grpc health: the answer holds more than one message")
	}
	msg := body[5:]
	status := uint64(0) // UNKNOWN when absent
	for len(msg) > 0 {
		key, n := binary.Uvarint(msg)
		// Protobuf's field numbers run from 1 to 2^29-1; its decoder refuses a message with others.
		if n <= 0 || key>>3 == 0 || key>>3 > 1<<29-1 {
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
	// An enum is an int32: protobuf keeps the low 32 bits of a longer varint, and so does this.
	return int32(status) == 1, nil
}

// hostPort joins an address and a port for dialling.
func hostPort(ip string, port int) string { return net.JoinHostPort(ip, strconv.Itoa(port)) }

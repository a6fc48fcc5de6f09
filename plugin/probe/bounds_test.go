package probe

import (
	"bytes"
	"encoding/binary"
	"io"
	"net"
	"os"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/podorder/podorder/plugin/decl"
)

// bombBytes is the size of every hostile answer below: what made one attempt allocate about
// 115 MiB under Go's defaults.
const bombBytes = 10 << 20

// maxAttemptAlloc is what one attempt on a hostile answer may allocate, all garbage included; an
// attempt on a well-behaved server allocates some tens of KiB.
const maxAttemptAlloc = 1 << 20

// answering serves answer to every connection once its request has arrived, then discards what
// the client sends until it hangs up. The answer is prebuilt, so the server allocates next to
// nothing while an attempt is measured.
func answering(t *testing.T, answer []byte, h2 bool) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	done := make(chan struct{})
	t.Cleanup(func() {
		l.Close()
		<-done
	})
	go func() {
		defer close(done)
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			if readRequest(c, h2) == nil {
				_, _ = c.Write(answer) // fails once the client gives up: that is the point
				_, _ = io.Copy(io.Discard, c)
			}
			c.Close()
		}
	}()
	return l.Addr().(*net.TCPAddr).Port
}

// readRequest reads one request: an HTTP/1 GET's headers, or HTTP/2's preface and frames until
// one ends stream 1.
func readRequest(c net.Conn, h2 bool) error {
	if !h2 {
		var got []byte
		b := make([]byte, 4<<10)
		for !bytes.Contains(got, []byte("\r\n\r\n")) {
			n, err := c.Read(b)
			if err != nil {
				return err
			}
			got = append(got, b[:n]...)
		}
		return nil
	}
	if _, err := io.ReadFull(c, make([]byte, len("PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"))); err != nil {
		return err
	}
	for {
		var fh [9]byte
		if _, err := io.ReadFull(c, fh[:]); err != nil {
			return err
		}
		size := int(fh[0])<<16 | int(fh[1])<<8 | int(fh[2])
		if _, err := io.ReadFull(c, make([]byte, size)); err != nil {
			return err
		}
		if fh[4]&h2EndStream != 0 && fh[3] != h2Settings && binary.BigEndian.Uint32(fh[5:]) == 1 {
			return nil
		}
	}
}

// attemptAlloc runs one attempt of p against 127.0.0.1 and returns how many bytes it allocated and
// its error.
func attemptAlloc(t *testing.T, p *decl.Probe) (uint64, error) {
	t.Helper()
	addr := hostPort("127.0.0.1", p.Port)
	conn, err := net.Dial("tcp", addr)
	require.NoError(t, err)
	defer conn.Close()
	tk := &task{probe: p, timeout: wait}
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	start := time.Now()
	err = check(t.Context(), conn, addr, tk)
	runtime.ReadMemStats(&after)
	alloc := after.TotalAlloc - before.TotalAlloc
	t.Logf("%s attempt: %d KiB allocated in %v: %v", p.Kind, alloc>>10, time.Since(start).Round(time.Millisecond), err)
	return alloc, err
}

// repeat repeats s until it makes n bytes.
func repeat(s string, n int) string { return strings.Repeat(s, n/len(s)) }

// Under Go's defaults the first three answers allocated 70 to 165 MiB in one attempt.
func TestAnHTTPAnswerIsBounded(t *testing.T) {
	tests := []struct {
		name   string
		answer string
		err    string
	}{
		{"10 MB of tiny headers", "HTTP/1.1 200 OK\r\n" + repeat("a: b\r\n", bombBytes) + "\r\n", "podorder reads at most 16384 bytes of a probe's response headers"},
		{"one 10 MB header", "HTTP/1.1 200 OK\r\nX: " + strings.Repeat("x", bombBytes) + "\r\n\r\n", "podorder reads at most 16384 bytes of a probe's response headers"},
		{"endless 1xx answers", repeat("HTTP/1.1 102 Processing\r\n\r\n", bombBytes), "podorder reads at most 16384 bytes of a probe's response headers"},
		{"a 10 MB body, never read", "HTTP/1.1 200 OK\r\nContent-Length: 10485760\r\n\r\n" + strings.Repeat("x", bombBytes), ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			port := answering(t, []byte(tt.answer), false)
			alloc, err := attemptAlloc(t, &decl.Probe{Kind: "http", Port: port, Path: "/"})
			if tt.err == "" {
				require.NoError(t, err)
			} else {
				require.ErrorContains(t, err, tt.err)
			}
			assert.Less(t, alloc, uint64(maxAttemptAlloc), "bytes allocated by one attempt")
		})
	}
}

// The finding itself: every worker on a header bomb at once put the daemon at twice its memory
// limit. The daemon's peak RSS must stay under 64 MiB. Under the race detector this process's grew
// by 74 MiB before the caps and by under 6 MiB after (under 1 MiB without it).
func TestHeaderBombsOnEveryWorkerKeepTheDaemonSmall(t *testing.T) {
	port := answering(t, []byte("HTTP/1.1 200 OK\r\n"+repeat("a: b\r\n", bombBytes)+"\r\n"), false)
	r, rec := newTestRunner()
	// The server's first answer pages in what the race detector keeps for the answer's 10 MB.
	c, err := net.Dial("tcp", hostPort("127.0.0.1", port))
	require.NoError(t, err)
	_, err = c.Write([]byte("GET / HTTP/1.1\r\n\r\n"))
	require.NoError(t, err)
	_, err = c.Read(make([]byte, 1))
	require.NoError(t, err)
	c.Close()
	// Reset the process's peak to what it holds now, so that an earlier test's peak cannot hide
	// this one's (Linux ≥ 4.0: writing 5 to clear_refs resets VmHWM).
	require.NoError(t, os.WriteFile("/proc/self/clear_refs", []byte("5"), 0))
	before := procStatus(t, "VmRSS")
	for range 2 * r.Workers {
		stop, err := r.Start("", &decl.Probe{Kind: "http", Port: port, Path: "/"}, func() {})
		require.NoError(t, err)
		defer stop()
	}
	rec.waitFor(t, msgFailed, 3*r.Workers)
	grown := procStatus(t, "VmHWM") - before
	t.Logf("peak RSS grew by %d KiB over %d failed attempts on %d workers", grown, rec.count(msgFailed), r.Workers)
	// Unbounded, the attempts grew it by about 74 MiB; bounded, by up to 12 MiB under the race
	// detector (its shadow memory), and under 1 MiB without it.
	assert.Less(t, grown, 32<<10, "peak RSS growth, KiB")
}

// h2Frame encodes one HTTP/2 frame.
func h2Frame(typ, flags byte, stream uint32, payload []byte) []byte {
	b := []byte{byte(len(payload) >> 16), byte(len(payload) >> 8), byte(len(payload)), typ, flags}
	return append(binary.BigEndian.AppendUint32(b, stream), payload...)
}

const (
	h2Data, h2Headers, h2Settings, h2WindowUpdate, h2Continuation = 0, 1, 4, 8, 9
	h2EndStream, h2EndHeaders                                     = 1, 4
)

// h2HeaderBlock sends an HPACK block on stream 1 as a HEADERS frame and as many CONTINUATIONs as
// it takes, in frames of 16 KiB, the size every HTTP/2 endpoint accepts.
func h2HeaderBlock(block []byte, endStream bool) []byte {
	var out []byte
	typ, flags := byte(h2Headers), byte(0)
	if endStream {
		flags = h2EndStream
	}
	for {
		n := min(len(block), 16<<10)
		if n == len(block) {
			flags |= h2EndHeaders
		}
		out = append(out, h2Frame(typ, flags, 1, block[:n])...)
		block = block[n:]
		if len(block) == 0 {
			return out
		}
		typ, flags = h2Continuation, 0
	}
}

// hpackLiteral encodes a header field as a literal without indexing, with a literal name; name and
// value are shorter than 127 bytes.
func hpackLiteral(name, value string) []byte {
	b := append([]byte{0, byte(len(name))}, name...)
	return append(append(b, byte(len(value))), value...)
}

// grpcAnswer is an h2c server's answer to the health call: its SETTINGS, response headers with
// extra appended, DATA frames carrying data, and trailers with extraTrailers appended.
func grpcAnswer(extra, data, extraTrailers []byte) []byte {
	return grpcAnswerAfter(nil, extra, data, extraTrailers)
}

// grpcAnswerAfter is grpcAnswer with frames sent before the headers.
func grpcAnswerAfter(frames, extra, data, extraTrailers []byte) []byte {
	out := append(h2Frame(h2Settings, 0, 0, nil), frames...)
	// :status 200 (static index 8), then content-type (static name 31): application/grpc.
	headers := append([]byte{0x88, 0x0f, 0x10, 16}, "application/grpc"...)
	out = append(out, h2HeaderBlock(append(headers, extra...), false)...)
	for len(data) > 0 {
		n := min(len(data), 16<<10)
		out = append(out, h2Frame(h2Data, 0, 1, data[:n])...)
		data = data[n:]
	}
	return append(out, h2HeaderBlock(append(hpackLiteral("grpc-status", "0"), extraTrailers...), true)...)
}

// Under Go's defaults the header lists allocated about 67 MiB in one attempt, the message 2 MiB, and
// the frames before the answer 12 MiB over the whole 10 MB.
func TestAGRPCAnswerIsBounded(t *testing.T) {
	serving := grpcFrame([]byte{0x08, 1})
	tiny := bytes.Repeat(hpackLiteral("a", "b"), bombBytes/5)
	// Each adds 1 to the connection's window: a frame the client reads and forgets.
	windowUpdates := bytes.Repeat(h2Frame(h2WindowUpdate, 0, 0, []byte{0, 0, 0, 1}), bombBytes/13)
	huge := append(make([]byte, 5, 5+bombBytes), make([]byte, bombBytes)...)
	binary.BigEndian.PutUint32(huge[1:], bombBytes)
	tests := []struct {
		name   string
		answer []byte
		err    string
	}{
		{"SERVING", grpcAnswer(nil, serving, nil), ""},
		{"10 MB of tiny headers", grpcAnswer(tiny, serving, nil), "podorder reads at most 16384 bytes of a probe's response headers"},
		{"10 MB of tiny trailers", grpcAnswer(nil, serving, tiny), "podorder reads at most 16384 bytes of a probe's response headers"},
		{"a 10 MB message", grpcAnswer(nil, huge, nil), "exceeds the 1024 bytes"},
		{"a small frame announcing 10 MB", grpcAnswer(nil, huge[:5+2], nil), "exceeds the 1024 bytes"},
		{"10 MB of frames before the answer", grpcAnswerAfter(windowUpdates, nil, serving, nil), "read limit of 65536 bytes reached"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			port := answering(t, tt.answer, true)
			alloc, err := attemptAlloc(t, &decl.Probe{Kind: "grpc", Port: port})
			if tt.err == "" {
				require.NoError(t, err)
			} else {
				require.ErrorContains(t, err, tt.err)
			}
			assert.Less(t, alloc, uint64(maxAttemptAlloc), "bytes allocated by one attempt")
		})
	}
}

// Package serve is the one way podorder serves HTTP: an http.Server with every timeout set and a
// small header cap, on a listener that caps the connections it holds open. Both of the daemon's
// endpoints use it, so a peer that opens connections and sends nothing costs a bounded amount of
// memory, not a goroutine and a buffer per connection for as long as it likes.
package serve

import (
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"sync"
	"sync/atomic"
	"time"
)

// Limits bounds what one peer can hold of an endpoint.
type Limits struct {
	// Timeout bounds reading a request (headers and body, and the TLS handshake) and writing its
	// response.
	Timeout time.Duration
	// IdleTimeout closes a kept-alive connection that sends no next request.
	IdleTimeout time.Duration
	// MaxHeaderBytes answers 431 to larger request headers.
	MaxHeaderBytes int
	// MaxConns is how many connections are open at once; the ones beyond are closed at accept.
	MaxConns int
}

// DefaultLimits fit a kubelet probe every few seconds and a Prometheus scrape every 15 s, with room
// for a few people running curl.
var DefaultLimits = Limits{Timeout: 5 * time.Second, IdleTimeout: 5 * time.Second, MaxHeaderBytes: 8 << 10, MaxConns: 32}

// MetricsPerPeer is how many connections one address may hold open on the metrics endpoint, which
// every pod of the cluster can reach: a scraper needs one, and no single pod can take the 32 slots.
const MetricsPerPeer = 4

// Server returns an http.Server for h with lim's timeouts and header cap. HTTP/2 is off: its
// streams multiply what one connection may cost (and were the vector of the rapid-reset attack),
// and a scrape or a probe gains nothing from it.
func Server(h http.Handler, lim Limits, log *slog.Logger) *http.Server {
	return &http.Server{
		Handler:           h,
		ReadHeaderTimeout: lim.Timeout,
		ReadTimeout:       lim.Timeout,
		WriteTimeout:      lim.Timeout,
		IdleTimeout:       lim.IdleTimeout,
		MaxHeaderBytes:    lim.MaxHeaderBytes,
		TLSNextProto:      map[string]func(*http.Server, *tls.Conn, http.Handler){},
		// The server's own errors (bad TLS handshakes, mostly) would otherwise go to the standard
		// logger, outside the daemon's format; anyone can cause them, so they stay at debug.
		ErrorLog: slog.NewLogLogger(log.Handler(), slog.LevelDebug),
	}
}

// Listener is a TCP listener that holds at most a fixed number of connections open. A connection
// beyond the cap is accepted and closed at once rather than left in the kernel's accept queue: a
// flood then ends for its peer with a closed connection, and the connections queued behind it do
// not wait out the timeouts of the ones being served.
type Listener struct {
	net.Listener
	// PerPeer, when above zero, is how many of the slots one peer address may hold: on an endpoint
	// every pod can reach, one pod must not take them all. Set it before the first Accept.
	PerPeer int

	slots    chan struct{}
	refused  atomic.Int64
	accepted atomic.Int64

	mu    sync.Mutex
	peers map[string]int // open connections by peer address, with PerPeer
}

// Listen listens on addr (host:port) with room for maxConns open connections.
func Listen(addr string, maxConns int) (*Listener, error) {
	if maxConns < 1 {
		return nil, fmt.Errorf("listen on %s: a connection cap of %d serves nothing; give at least 1", addr, maxConns)
	}
	l, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, err
	}
	return &Listener{Listener: l, slots: make(chan struct{}, maxConns)}, nil
}

// Accept returns the next connection while there is room for it, closing the ones that come while
// the cap is reached.
func (l *Listener) Accept() (net.Conn, error) {
	for {
		c, err := l.Listener.Accept()
		if err != nil {
			return nil, err
		}
		peer, ok := l.takePeer(c)
		if !ok {
			l.refused.Add(1)
			c.Close()
			continue
		}
		select {
		case l.slots <- struct{}{}:
			l.accepted.Add(1)
			return &slotConn{Conn: c, release: func() { <-l.slots; l.releasePeer(peer) }}, nil
		default:
			l.releasePeer(peer)
			l.refused.Add(1)
			c.Close()
		}
	}
}

// takePeer counts c against its peer's share, or reports that the peer holds its share already.
func (l *Listener) takePeer(c net.Conn) (peer string, ok bool) {
	if l.PerPeer <= 0 {
		return "", true
	}
	peer = c.RemoteAddr().String()
	if host, _, err := net.SplitHostPort(peer); err == nil {
		peer = host
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.peers[peer] >= l.PerPeer {
		return "", false
	}
	if l.peers == nil {
		l.peers = map[string]int{}
	}
	l.peers[peer]++
	return peer, true
}

// releasePeer gives back a connection of peer's share.
func (l *Listener) releasePeer(peer string) {
	if l.PerPeer <= 0 {
		return
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.peers[peer]--; l.peers[peer] <= 0 {
		delete(l.peers, peer)
	}
}

// Open is how many connections are open now.
func (l *Listener) Open() int { return len(l.slots) }

// Seen is how many connections the listener has accepted into a slot and how many it closed at
// once because every slot was taken.
func (l *Listener) Seen() (accepted, refused int64) { return l.accepted.Load(), l.refused.Load() }

// slotConn gives its slot back when it is closed, once, whoever closes it first.
type slotConn struct {
	net.Conn
	once    sync.Once
	release func()
}

// Close closes the connection and frees its slot.
func (c *slotConn) Close() error {
	err := c.Conn.Close()
	c.once.Do(c.release)
	return err
}

// Run serves srv on l until stop is closed, logging an unexpected end.
func Run(srv *http.Server, l net.Listener, stop <-chan struct{}, name string, log *slog.Logger) {
	go func() { <-stop; srv.Close() }()
	go func() {
		var err error
		if srv.TLSConfig != nil {
			err = srv.ServeTLS(l, "", "")
		} else {
			err = srv.Serve(l)
		}
		if err != nil && !errors.Is(err, http.ErrServerClosed) {
			log.Error("endpoint stopped", "endpoint", name, "error", err)
		}
	}()
}

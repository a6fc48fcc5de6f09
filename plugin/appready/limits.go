// Package appready watches for the readiness a container's own process gives: a READY=1 datagram on
// the NOTIFY_SOCKET podorder gives it (systemd's sd_notify protocol), counted only when the sender
// is a process of that container attempt, or a path appearing inside the container's own mount
// namespace, seen by inotify and by the mount table's change events. Every byte it reads from a
// tenant is bounded, and so is everything a pod can make it hold: sockets, watches, goroutines.
package appready

import (
	"fmt"
	"sync"

	"github.com/podorder/podorder/plugin/decl"
)

// Limits on what the node's pods together may make the daemon hold.
const (
	// DefaultMaxNotifyPerNode is the most notify sockets open on the node at once: one fd each,
	// read through Go's poller (no thread each).
	DefaultMaxNotifyPerNode = 512
	// DefaultMaxFilesPerNode is the most path watches at once: each holds an inotify instance, the
	// container's root and mount table open, and a thread blocked in poll(2).
	DefaultMaxFilesPerNode = 128
	// MaxPerPod is the most sockets or watches of one pod, as decl.MaxSignals caps its keys.
	MaxPerPod = decl.MaxSignals
	// MaxDatagram is the largest notify datagram read; a longer one is refused whole.
	MaxDatagram = 4096
	// MaxDatagramsPerSecond is how many datagrams one socket is read at most per second; beyond,
	// they wait in the socket's bounded kernel buffer, and the sender's sends fail or block.
	MaxDatagramsPerSecond = 100
	// receiveBuffer bounds the kernel's buffer of one socket (SO_RCVBUF).
	receiveBuffer = 64 << 10
)

// capacity counts what each pod, and the node, holds.
type capacity struct {
	what    string
	maxNode int
	mu      sync.Mutex
	total   int
	perPod  map[string]int
}

func newCapacity(what string, maxNode int) *capacity {
	return &capacity{what: what, maxNode: maxNode, perPod: map[string]int{}}
}

// take counts one more for podUID, or says which limit refuses it.
func (c *capacity) take(podUID string) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.total >= c.maxNode {
		return fmt.Errorf("the node's limit of %d %s is reached; readiness comes from kubelet instead: use %s%s.<container>: kubelet, "+
			"or spread such pods over more nodes", c.maxNode, c.what, decl.Domain, decl.KindReadiness)
	}
	if c.perPod[podUID] >= MaxPerPod {
		return fmt.Errorf("the pod already has %d %s, its limit of %d", c.perPod[podUID], c.what, MaxPerPod)
	}
	c.total++
	c.perPod[podUID]++
	return nil
}

// give returns what podUID took.
func (c *capacity) give(podUID string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.total--
	if c.perPod[podUID]--; c.perPod[podUID] <= 0 {
		delete(c.perPod, podUID)
	}
}

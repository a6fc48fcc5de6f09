package appready

import (
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"time"

	"golang.org/x/sys/unix"
)

// SocketName is the notify socket's name in the directory mounted into the container.
const SocketName = "notify"

// Notifier makes the notify sockets of the node's containers and reads them.
type Notifier struct {
	proc string
	cap  *capacity
	log  *slog.Logger
	// Datagram, when set, is told of every datagram read: counted (a READY=1 of the attempt),
	// ignored (no READY=1) or refused (over the size, or from another process's container).
	Datagram func(result string)
}

// Results of one datagram, for Notifier.Datagram.
const (
	Counted = "counted"
	Ignored = "ignored"
	Refused = "refused"
)

// NewNotifier returns a Notifier holding at most maxNode sockets (0: DefaultMaxNotifyPerNode).
func NewNotifier(maxNode int, log *slog.Logger) *Notifier {
	if maxNode <= 0 {
		maxNode = DefaultMaxNotifyPerNode
	}
	return &Notifier{proc: "/proc", cap: newCapacity("notify sockets", maxNode), log: log}
}

// ShortPath names the notify socket in the directory open as dirfd, short enough for a socket
// address whatever the directory's own path.
func ShortPath(dirfd int) string { return "/proc/self/fd/" + strconv.Itoa(dirfd) + "/" + SocketName }

// Socket is one container attempt's notify socket.
type Socket struct {
	n      *Notifier
	podUID string
	path   string
	conn   *net.UnixConn
	once   sync.Once
}

// Open binds a unix datagram socket, SocketName in dir (a directory of this attempt alone, which
// the container gets mounted), that takes the senders' credentials. Anyone who can see it can
// send to it — a socket ignores a read-only mount, and its mode must let the container's uid in —
// which is why Arm checks every sender.
func (n *Notifier) Open(podUID, dir string) (*Socket, error) {
	if err := n.cap.take(podUID); err != nil {
		return nil, err
	}
	s, err := n.open(podUID, dir)
	if err != nil {
		n.cap.give(podUID)
		return nil, err
	}
	return s, nil
}

func (n *Notifier) open(podUID, dir string) (*Socket, error) {
	path := filepath.Join(dir, SocketName)
	if err := os.Remove(path); err != nil && !errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("remove a stale notify socket: %w", err)
	}
	// A socket's path is at most 107 bytes, and the store's paths are longer: bind through a
	// descriptor of the directory instead.
	dirfd, err := unix.Open(dir, unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("open the notify socket's directory: %w", err)
	}
	defer unix.Close(dirfd)
	conn, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: ShortPath(dirfd), Net: "unixgram"})
	if err != nil {
		return nil, fmt.Errorf("bind the notify socket: %w", err)
	}
	fail := func(err error) (*Socket, error) {
		conn.Close()
		os.Remove(path)
		return nil, err
	}
	if err := conn.SetReadBuffer(receiveBuffer); err != nil {
		return fail(fmt.Errorf("bound the notify socket's buffer: %w", err))
	}
	rc, err := conn.SyscallConn()
	if err != nil {
		return fail(err)
	}
	var serr error
	if err := rc.Control(func(fd uintptr) { serr = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_PASSCRED, 1) }); err != nil || serr != nil {
		return fail(fmt.Errorf("ask for the senders' credentials (SO_PASSCRED): %w", errors.Join(err, serr)))
	}
	// The container's processes may run as any uid; sending needs write permission on the socket.
	if err := os.Chmod(path, 0o666); err != nil {
		return fail(fmt.Errorf("open the notify socket to the container's uid: %w", err))
	}
	return &Socket{n: n, podUID: podUID, path: path, conn: conn}, nil
}

// Arm starts reading the socket: the first READY=1 sent by a process of the attempt whose process
// is pid calls ready, once, and ends the reading. Datagrams of other processes never count: every
// one is checked by the sender's credentials, which the kernel fills in (a process cannot claim
// another's pid without CAP_SYS_ADMIN over its PID namespace).
func (s *Socket) Arm(pid uint32, ready func()) error {
	id, err := identify(s.n.proc, pid)
	if err != nil {
		return err
	}
	go s.read(id, ready)
	return nil
}

// Close ends the reading, removes the socket and gives back its place in the node's limit. It may
// be called more than once.
func (s *Socket) Close() {
	s.once.Do(func() {
		s.conn.Close()
		os.Remove(s.path)
		s.n.cap.give(s.podUID)
	})
}

// read takes datagrams until one counts or the socket is closed, at most MaxDatagramsPerSecond.
func (s *Socket) read(id identity, ready func()) {
	buf := make([]byte, MaxDatagram)
	oob := make([]byte, unix.CmsgSpace(unix.SizeofUcred))
	refusedOnce := false
	window, inWindow := time.Now(), 0
	for {
		if inWindow++; inWindow > MaxDatagramsPerSecond {
			if wait := time.Second - time.Since(window); wait > 0 {
				time.Sleep(wait)
			}
			window, inWindow = time.Now(), 1
		}
		n, oobn, flags, _, err := s.conn.ReadMsgUnix(buf, oob)
		if err != nil {
			return // closed
		}
		pid, why := sender(oob[:oobn], flags)
		result := Ignored
		switch {
		case why != "":
			result = Refused
		case !Ready(buf[:n]):
		case !id.owns(pid):
			result, why = Refused, fmt.Sprintf("READY=1 from process %d, which is not a process of this container attempt", pid)
		default:
			result = Counted
		}
		if s.n.Datagram != nil {
			s.n.Datagram(result)
		}
		switch {
		case result == Counted:
			ready()
			return
		case result == Refused && !refusedOnce:
			// Once per socket: a flood of forged datagrams must not become a flood of log lines.
			refusedOnce = true
			s.n.log.Warn("notify datagram refused; further ones on this socket are refused silently", "socket", s.path, "reason", why)
		}
	}
}

// sender reads the sender's pid from a datagram's control messages, and why the datagram is
// refused, if it is: cut short, or without credentials. File descriptors passed along are closed:
// a sender must not make the daemon hold its files.
func sender(oob []byte, flags int) (pid int32, refused string) {
	msgs, err := unix.ParseSocketControlMessage(oob)
	if err != nil {
		return 0, "unreadable control messages"
	}
	for _, m := range msgs {
		if m.Header.Level != unix.SOL_SOCKET {
			continue
		}
		switch m.Header.Type {
		case unix.SCM_RIGHTS:
			if fds, err := unix.ParseUnixRights(&m); err == nil {
				for _, fd := range fds {
					unix.Close(fd)
				}
			}
		case unix.SCM_CREDENTIALS:
			if c, err := unix.ParseUnixCredentials(&m); err == nil {
				pid = c.Pid
			}
		}
	}
	switch {
	case flags&unix.MSG_TRUNC != 0:
		return 0, fmt.Sprintf("datagram over %d bytes", MaxDatagram)
	case flags&unix.MSG_CTRUNC != 0:
		return 0, "control messages cut short (file descriptors passed along)"
	case pid <= 0:
		return 0, "no sender credentials"
	}
	return pid, ""
}

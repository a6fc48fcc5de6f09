// Command workload is the one binary inside podorder's test images: the pod sandbox ("pause") and
// every test container ("run"). It marks the moments a test measures with lines on stdout:
//
//	START <name> <unix-nanos>        when main runs
//	LISTEN <name> <unix-nanos>       when it started listening (its port accepts connections after),
//	                                 --listen-after its start or on SIGUSR1 (--listen-on USR1)
//	SIGNAL <name> <unix-nanos> <sig>  when a stop signal arrives
//	EXIT <name> <unix-nanos> <code>  just before it exits
//	ID <name> uid=<n> gid=<n> rootfs=<ro|rw>  with --print-id
//	STEAL <name> fifos=<n> bytes=<n>  with --steal-wakes: FIFOs of others found under /.podorder
//	BOMB <name> <n>                   with --header-bomb: the n-th answer of tiny headers was sent
//	READY <name> <unix-nanos>        with --notify-after: just before READY=1 is sent to $NOTIFY_SOCKET
//	TOUCH <name> <unix-nanos>        with --touch-after: just before --touch's file is created
//
// Build it static (CGO_ENABLED=0): the image holds nothing else.
package main

import (
	"flag"
	"fmt"
	"io/fs"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"
)

// out serialises lines so that concurrent marks never interleave; os.Stdout is unbuffered, so
// each line reaches the pipe in one write.
var out sync.Mutex

// marks, when set, gets a copy of every line: a file on the host outlives the container's log,
// which kubelet removes with the container.
var marks *os.File

func mark(format string, args ...any) {
	out.Lock()
	defer out.Unlock()
	fmt.Fprintf(os.Stdout, format+"\n", args...)
	if marks != nil {
		fmt.Fprintf(marks, format+"\n", args...)
	}
}

func main() {
	started := time.Now()
	if len(os.Args) < 2 {
		fmt.Fprintln(os.Stderr, "usage: workload pause | workload run [flags]")
		os.Exit(2)
	}
	switch os.Args[1] {
	case "pause":
		pause()
	case "run":
		os.Exit(run(started, os.Args[2:]))
	default:
		fmt.Fprintf(os.Stderr, "workload: unknown mode %q (want pause or run)\n", os.Args[1])
		os.Exit(2)
	}
}

// pause is a sandbox's PID 1: it reaps every child re-parented to it and exits 0 on SIGTERM/SIGINT.
func pause() {
	sigs := make(chan os.Signal, 8)
	signal.Notify(sigs, syscall.SIGCHLD, syscall.SIGTERM, syscall.SIGINT)
	for sig := range sigs {
		if sig != syscall.SIGCHLD {
			os.Exit(0)
		}
		for {
			var ws syscall.WaitStatus
			pid, err := syscall.Wait4(-1, &ws, syscall.WNOHANG, nil)
			if pid <= 0 || err != nil {
				break
			}
		}
	}
}

func run(started time.Time, args []string) int {
	fs := flag.NewFlagSet("run", flag.ContinueOnError)
	name := fs.String("name", "workload", "name printed in every line")
	listenAfter := fs.Duration("listen-after", 0, "delay before listening on --port")
	listenOn := fs.String("listen-on", "", "listen on --port only once this signal (USR1) arrives, instead of after --listen-after: "+
		"a test decides when the port opens, with no race against its own steps")
	port := fs.Int("port", 0, "tcp port to serve HTTP 200 on (0: do not listen)")
	exitAfter := fs.Duration("exit-after", 0, "delay before exiting with --exit-code (0: run until SIGTERM)")
	exitCode := fs.Int("exit-code", 0, "exit code after --exit-after")
	printID := fs.Bool("print-id", false, "print uid, gid and whether / is read-only")
	waitTCP := fs.String("wait-tcp", "", "host:port to poll before starting, like a wait-for-it entrypoint wrapper (the baseline podorder replaces)")
	waitEvery := fs.Duration("wait-every", time.Second, "poll period of --wait-tcp")
	waitExec := fs.Bool("wait-exec", false, "once --wait-tcp connects, exec this program again without the --wait flags, as `wait-for-it host:port -- app` execs the app: START is then stamped by a new process, as for a held container")
	waitRandomPhase := fs.Bool("wait-random-phase", false, "wait a random part of --wait-every before the first poll of --wait-tcp, "+
		"so that the polls fall at a random phase to the port's opening, as for a poller that started at an unrelated moment")
	stealFor := fs.Duration("steal-wakes", 0, "for this long, read every FIFO under /.podorder but the container's own wake FIFO, as a hostile sibling would")
	termCode := fs.Int("term-code", 0, "exit code after a stop signal (143 is what many programs give for SIGTERM)")
	drain := fs.Duration("drain", 0, "how long to keep running after a stop signal, like a server draining its requests")
	ignoreTerm := fs.Bool("ignore-term", false, "mark stop signals but keep running, like a program stuck in shutdown")
	headerBomb := fs.Int("header-bomb", 0, "answer every HTTP request with 200 and this many bytes of tiny headers, as a hostile server would")
	marksDir := fs.String("marks", "", "directory to append every line to, as <name>.log, as well")
	notifyAfter := fs.Duration("notify-after", -1, "send READY=1 to the notify socket this long after the start (systemd's sd_notify; negative: never)")
	notifyOn := fs.String("notify-on", "", "send READY=1 only once this signal (USR2) arrives, instead of after --notify-after: "+
		"a test decides when, with no race against its own steps")
	notifySocket := fs.String("notify-socket", os.Getenv("NOTIFY_SOCKET"), "the notify socket --notify-after sends to (default $NOTIFY_SOCKET)")
	touchAfter := fs.Duration("touch-after", -1, "create --touch this long after the start (negative: never)")
	touchPath := fs.String("touch", "", "the file --touch-after creates, with its parent directories")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	if *marksDir != "" {
		f, err := os.OpenFile(filepath.Join(*marksDir, *name+".log"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
		if err != nil {
			fmt.Fprintf(os.Stderr, "workload %s: %v\n", *name, err)
			return 2
		}
		marks = f
	}
	// Before START: once a test sees START, the signal that opens the port is not lost.
	usr1 := make(chan os.Signal, 1)
	if *listenOn == "USR1" {
		signal.Notify(usr1, syscall.SIGUSR1)
	}
	usr2 := make(chan os.Signal, 1)
	if *notifyOn == "USR2" {
		signal.Notify(usr2, syscall.SIGUSR2)
	}
	if *waitTCP != "" {
		if *waitRandomPhase {
			time.Sleep(rand.N(*waitEvery)) // the phase, not an ordering: the poller being modelled sleeps too
		}
		for {
			c, err := net.DialTimeout("tcp", *waitTCP, time.Second)
			if err == nil {
				c.Close()
				break
			}
			time.Sleep(*waitEvery) // the baseline being measured is a polling loop
		}
		if *waitExec {
			return execWithoutWait(fs)
		}
		started = time.Now()
	}
	mark("START %s %d", *name, started.UnixNano())
	if *printID {
		mark("ID %s uid=%d gid=%d rootfs=%s", *name, os.Getuid(), os.Getgid(), rootfsMode())
	}
	if *stealFor > 0 {
		fifos, stolen := stealWakes(*stealFor)
		mark("STEAL %s fifos=%d bytes=%d", *name, fifos, stolen)
	}

	exit := make(chan int, 1)
	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, syscall.SIGTERM, syscall.SIGINT)
	openPort := func() {
		if err := listen(*name, *port, *headerBomb); err != nil {
			fmt.Fprintf(os.Stderr, "workload %s: %v\n", *name, err)
			exit <- 1
		}
	}
	switch {
	case *port > 0 && *listenOn == "USR1":
		go func() { <-usr1; openPort() }()
	case *listenOn != "":
		fmt.Fprintf(os.Stderr, "workload %s: --listen-on %q: only USR1 is known\n", *name, *listenOn)
		return 2
	case *port > 0:
		time.AfterFunc(*listenAfter, openPort)
	}
	if *exitAfter > 0 {
		time.AfterFunc(*exitAfter, func() { exit <- *exitCode })
	}
	sendReady := func() {
		if err := notify(*name, *notifySocket); err != nil {
			fmt.Fprintf(os.Stderr, "workload %s: %v\n", *name, err)
			exit <- 1
		}
	}
	switch {
	case *notifyOn == "USR2":
		go func() { <-usr2; sendReady() }()
	case *notifyOn != "":
		fmt.Fprintf(os.Stderr, "workload %s: --notify-on %q: only USR2 is known\n", *name, *notifyOn)
		return 2
	case *notifyAfter >= 0:
		time.AfterFunc(*notifyAfter, sendReady)
	}
	if *touchAfter >= 0 {
		time.AfterFunc(*touchAfter, func() {
			if err := touch(*name, *touchPath); err != nil {
				fmt.Fprintf(os.Stderr, "workload %s: %v\n", *name, err)
				exit <- 1
			}
		})
	}

	code := 0
	for waiting := true; waiting; {
		select {
		case sig := <-sigs:
			mark("SIGNAL %s %d %s", *name, time.Now().UnixNano(), sig)
			if *ignoreTerm {
				continue
			}
			time.Sleep(*drain) // the drain being modelled is time spent running
			code, waiting = *termCode, false
		case code = <-exit:
			waiting = false
		}
	}
	mark("EXIT %s %d %d", *name, time.Now().UnixNano(), code)
	return code
}

// notify sends READY=1 to the notify socket as sd_notify(3) does, one datagram, and marks READY
// first: the daemon may act on it before this goroutine gets to print.
func notify(name, socket string) error {
	if socket == "" {
		return fmt.Errorf("--notify-after: no NOTIFY_SOCKET")
	}
	c, err := net.DialUnix("unixgram", nil, &net.UnixAddr{Name: socket, Net: "unixgram"})
	if err != nil {
		return fmt.Errorf("notify %s: %w", socket, err)
	}
	defer c.Close()
	mark("READY %s %d", name, time.Now().UnixNano())
	if _, err := c.Write([]byte("STATUS=serving\nREADY=1\n")); err != nil {
		return fmt.Errorf("notify %s: %w", socket, err)
	}
	return nil
}

// touch creates path (its parents first) and marks TOUCH just before the file appears.
func touch(name, path string) error {
	if path == "" {
		return fmt.Errorf("--touch-after: no --touch path")
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return err
	}
	mark("TOUCH %s %d", name, time.Now().UnixNano())
	return os.WriteFile(path, nil, 0o644)
}

// execWithoutWait replaces the process with the workload run with the flags set in fs but its
// --wait ones.
func execWithoutWait(fs *flag.FlagSet) int {
	rest := []string{os.Args[0], "run"}
	fs.Visit(func(f *flag.Flag) {
		if !strings.HasPrefix(f.Name, "wait-") {
			rest = append(rest, "--"+f.Name+"="+f.Value.String())
		}
	})
	self, err := os.Executable()
	if err == nil {
		err = syscall.Exec(self, rest, os.Environ())
	}
	fmt.Fprintf(os.Stderr, "workload: exec after the wait: %v\n", err)
	return 2
}

// listen opens the port, marks LISTEN, and serves HTTP 200 in the background (with bomb bytes of
// headers when bomb > 0). A raw TCP client that connects and hangs up is fine too.
func listen(name string, port, bomb int) error {
	// Stamped before listen(2): the port may accept a connection before this goroutine gets to
	// print, and a checker must never see a connection "before" the port opened.
	at := time.Now()
	l, err := net.Listen("tcp", fmt.Sprintf("0.0.0.0:%d", port))
	if err != nil {
		return fmt.Errorf("listen on port %d: %w", port, err)
	}
	mark("LISTEN %s %d", name, at.UnixNano())
	if bomb > 0 {
		go serveHeaderBomb(name, l, bomb)
		return nil
	}
	go func() {
		_ = http.Serve(l, http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
			fmt.Fprintf(w, "%s ok\n", name)
		}))
	}()
	return nil
}

// serveHeaderBomb answers each connection's first request with a 200 whose header block is bomb
// bytes of one-byte headers, written raw: net/http's server would refuse to build it.
func serveHeaderBomb(name string, l net.Listener, bomb int) {
	block := []byte("HTTP/1.1 200 OK\r\n")
	for len(block) < bomb {
		block = append(block, "a: b\r\n"...)
	}
	block = append(block, "Content-Length: 0\r\n\r\n"...)
	for n := 1; ; n++ {
		c, err := l.Accept()
		if err != nil {
			return
		}
		go func() {
			defer c.Close()
			buf := make([]byte, 4096)
			_, _ = c.Read(buf) // the request; its content does not matter
			_, _ = c.Write(block)
			mark("BOMB %s %d", name, n)
		}()
	}
}

func rootfsMode() string {
	var st syscall.Statfs_t
	if err := syscall.Statfs("/", &st); err != nil {
		return "unknown"
	}
	const stRdonly = 0x1 // ST_RDONLY in statfs(2) f_flags
	if st.Flags&stRdonly != 0 {
		return "ro"
	}
	return "rw"
}

// ownWake is the container's own wake FIFO, which podorder mounts into it alone.
const ownWake = "/.podorder/wake/wake"

// stealWakes reads, for d, every FIFO under /.podorder but the container's own, and returns how many
// it found and how many bytes it took. Special files ignore a read-only mount, so only not seeing
// another container's FIFO protects it.
func stealWakes(d time.Duration) (fifos, stolen int) {
	found := map[string]bool{}
	buf := make([]byte, 64)
	for deadline := time.Now().Add(d); time.Now().Before(deadline); time.Sleep(time.Millisecond) {
		_ = filepath.WalkDir("/.podorder", func(path string, e fs.DirEntry, err error) error {
			if err != nil || path == ownWake || e.Type()&fs.ModeNamedPipe == 0 {
				return nil
			}
			found[path] = true
			fd, err := syscall.Open(path, syscall.O_RDWR|syscall.O_NONBLOCK, 0)
			if err != nil {
				return nil
			}
			n, _ := syscall.Read(fd, buf)
			syscall.Close(fd)
			stolen += max(n, 0)
			return nil
		})
	}
	return len(found), stolen
}

package e2e

import (
	"bufio"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// kernelTrace records, in a tracefs instance of its own, the kernel moments of a release that no
// log line shows: a TCP socket on a port starting to listen (sock:inet_sock_set_state, the event
// podorder itself follows), the hook's process exiting (the last of its threads,
// sched_process_exit with group_dead) and runc's execve of the container's program completing
// (sched_process_exec). A measurement uses it to split a release into
// podorder's part and runc's and the program's; it is for measurements only, never for a verdict.
type kernelTrace struct {
	dir string // the instance
	// offset turns the trace's monotonic clock into wall-clock time, which the workloads stamp.
	offset time.Duration
}

// kernelMoment is one traced event: when, and the process it names.
type kernelMoment struct {
	at  time.Time
	pid int
}

// startKernelTrace makes a tracefs instance that records TCP sockets listening on port, the exits
// of processes named comm (the hook's) and the execs of program. It skips the test when the kernel
// has no tracefs.
func startKernelTrace(t *testing.T, port int, comm, program string) *kernelTrace {
	t.Helper()
	root := "/sys/kernel/tracing"
	if _, err := os.Stat(filepath.Join(root, "instances")); err != nil {
		root = t.TempDir()
		if err := unix.Mount("nodev", root, "tracefs", 0, ""); err != nil {
			t.Skipf("no tracefs to split the release with: %v", err)
		}
		t.Cleanup(func() { _ = unix.Unmount(root, unix.MNT_DETACH) })
	}
	dir := filepath.Join(root, "instances", fmt.Sprintf("podorder-bench-%d", os.Getpid()))
	if err := os.Mkdir(dir, 0o755); err != nil {
		t.Skipf("no tracefs instance to split the release with: %v", err)
	}
	t.Cleanup(func() { _ = os.Remove(dir) })
	k := &kernelTrace{dir: dir}
	for _, w := range []struct{ file, value string }{
		{"trace_clock", "mono"},
		{"buffer_size_kb", "4096"},
		{"events/sched/sched_process_exit/filter", fmt.Sprintf("comm == %q && group_dead == 1", comm)},
		{"events/sched/sched_process_exit/enable", "1"},
		{"events/sched/sched_process_exec/filter", fmt.Sprintf("filename == %q", program)},
		{"events/sched/sched_process_exec/enable", "1"},
		// 10 is TCP_LISTEN and 6 IPPROTO_TCP (an MPTCP listener has a TCP one under it).
		{"events/sock/inet_sock_set_state/filter", fmt.Sprintf("newstate == 10 && oldstate == 7 && protocol == 6 && sport == %d", port)},
		{"events/sock/inet_sock_set_state/enable", "1"},
	} {
		if err := os.WriteFile(filepath.Join(dir, w.file), []byte(w.value), 0o644); err != nil {
			t.Skipf("cannot set up the kernel trace (%s): %v", w.file, err)
		}
	}
	var mono, real unix.Timespec
	if err := unix.ClockGettime(unix.CLOCK_MONOTONIC, &mono); err != nil {
		t.Skipf("clock_gettime: %v", err)
	}
	if err := unix.ClockGettime(unix.CLOCK_REALTIME, &real); err != nil {
		t.Skipf("clock_gettime: %v", err)
	}
	k.offset = time.Duration(real.Nano() - mono.Nano())
	return k
}

// traceLine is one line of the trace file: its timestamp in seconds and the event's fields.
var traceLine = regexp.MustCompile(`\s([0-9]+\.[0-9]+): (sched_process_exit|sched_process_exec|inet_sock_set_state): (.*)$`)

// kernelRecords are a trace's moments by kind, oldest first.
type kernelRecords struct{ listens, exits, execs []kernelMoment }

// read returns what was recorded so far.
func (k *kernelTrace) read(t *testing.T) (r kernelRecords) {
	t.Helper()
	f, err := os.Open(filepath.Join(k.dir, "trace"))
	if err != nil {
		t.Fatalf("read the kernel trace: %v", err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		m := traceLine.FindStringSubmatch(sc.Text())
		if m == nil {
			continue
		}
		secs, err := strconv.ParseFloat(m[1], 64)
		if err != nil {
			continue
		}
		pid := 0
		for _, field := range strings.Fields(m[3]) {
			if v, ok := strings.CutPrefix(field, "pid="); ok {
				pid, _ = strconv.Atoi(v)
				break
			}
		}
		at := time.Unix(0, int64(secs*1e9)).Add(k.offset)
		switch m[2] {
		case "inet_sock_set_state":
			r.listens = append(r.listens, kernelMoment{at, 0})
		case "sched_process_exit":
			r.exits = append(r.exits, kernelMoment{at, pid})
		default:
			r.execs = append(r.execs, kernelMoment{at, pid})
		}
	}
	return r
}

// lastBetween returns the last moment in ms within (from, to].
func lastBetween(ms []kernelMoment, from, to time.Time) (time.Time, bool) {
	var last time.Time
	ok := false
	for _, m := range ms {
		if m.at.After(from) && !m.at.After(to) {
			last, ok = m.at, true
		}
	}
	return last, ok
}

// hookExitAndExec finds, for the container whose process is pid, runc's exec of its program and
// the last hook exit before it. It is unambiguous only when one hold ends at a time, as in the
// release split, which runs one pod at a time.
func hookExitAndExec(exits, execs []kernelMoment, pid int) (hookExit, exec time.Time, ok bool) {
	for _, e := range execs {
		if e.pid == pid {
			exec = e.at
			ok = true
			break
		}
	}
	if !ok {
		return time.Time{}, time.Time{}, false
	}
	hookExit, ok = lastBetween(exits, time.Time{}, exec)
	return hookExit, exec, ok
}

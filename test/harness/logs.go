package harness

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// ReadLog returns the lines a container wrote to a CRI log file (`<time> <stream> <P|F> <text>`),
// partial lines joined, stdout and stderr interleaved as written. A missing file has no lines.
func ReadLog(path string) ([]string, error) {
	data, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("read container log: %w", err)
	}
	// Drop the unterminated tail being written; join partial lines per stream.
	text := string(data[:strings.LastIndexByte(string(data), '\n')+1])
	var lines []string
	partial := map[string]string{}
	for _, raw := range strings.Split(text, "\n") {
		fields := strings.SplitN(raw, " ", 4)
		if len(fields) < 4 {
			continue
		}
		stream, tag, msg := fields[1], fields[2], fields[3]
		if tag == "P" {
			partial[stream] += msg
			continue
		}
		lines = append(lines, partial[stream]+msg)
		delete(partial, stream)
	}
	return lines, nil
}

// WaitLogLine waits until the CRI log file at path has a line starting with prefix and returns
// that line. It watches the log's directory with inotify, so it wakes when the runtime writes.
func WaitLogLine(t testing.TB, path, prefix string, timeout time.Duration) string {
	t.Helper()
	line, err := waitLogLine(path, prefix, timeout)
	if err != nil {
		t.Fatal(err)
	}
	return line
}

func waitLogLine(path, prefix string, timeout time.Duration) (string, error) {
	fd, err := unix.InotifyInit1(unix.IN_CLOEXEC | unix.IN_NONBLOCK)
	if err != nil {
		return "", fmt.Errorf("wait for %q in %s: inotify: %w", prefix, path, err)
	}
	defer unix.Close(fd)
	// Watch the directory: the log file may not exist yet, and CRI may reopen it.
	if _, err := unix.InotifyAddWatch(fd, filepath.Dir(path), unix.IN_CREATE|unix.IN_MODIFY|unix.IN_MOVED_TO); err != nil {
		return "", fmt.Errorf("wait for %q in %s: watch: %w", prefix, path, err)
	}
	deadline := time.Now().Add(timeout)
	buf := make([]byte, 64*1024)
	for {
		lines, err := ReadLog(path)
		if err != nil {
			return "", fmt.Errorf("wait for %q: %w", prefix, err)
		}
		for _, l := range lines {
			if strings.HasPrefix(l, prefix) {
				return l, nil
			}
		}
		left := time.Until(deadline)
		if left <= 0 {
			return "", fmt.Errorf("no line starting with %q in %s after %s; it has:\n%s", prefix, path, timeout, strings.Join(lines, "\n"))
		}
		fds := []unix.PollFd{{Fd: int32(fd), Events: unix.POLLIN}}
		if _, err := unix.Poll(fds, int(left.Milliseconds())+1); err != nil && !errors.Is(err, unix.EINTR) {
			return "", fmt.Errorf("wait for %q in %s: poll: %w", prefix, path, err)
		}
		for { // drain; the events themselves do not matter, only that something was written
			if n, err := unix.Read(fd, buf); n <= 0 || err != nil {
				break
			}
		}
	}
}

// WorkloadEvent is one line test/workload prints: START, LISTEN or EXIT.
type WorkloadEvent struct {
	Kind string // START, LISTEN or EXIT
	Name string
	At   time.Time
	Code int // exit code, for EXIT
}

// ParseWorkloadEvent parses `START <name> <unix-nanos>`, `LISTEN <name> <unix-nanos>` or
// `EXIT <name> <unix-nanos> <code>`.
func ParseWorkloadEvent(line string) (WorkloadEvent, error) {
	f := strings.Fields(line)
	if len(f) < 3 {
		return WorkloadEvent{}, fmt.Errorf("workload line %q: want KIND NAME UNIX-NANOS", line)
	}
	nanos, err := strconv.ParseInt(f[2], 10, 64)
	if err != nil {
		return WorkloadEvent{}, fmt.Errorf("workload line %q: time: %w", line, err)
	}
	ev := WorkloadEvent{Kind: f[0], Name: f[1], At: time.Unix(0, nanos)}
	if ev.Kind == "EXIT" {
		if len(f) < 4 {
			return WorkloadEvent{}, fmt.Errorf("workload line %q: EXIT without exit code", line)
		}
		if ev.Code, err = strconv.Atoi(f[3]); err != nil {
			return WorkloadEvent{}, fmt.Errorf("workload line %q: exit code: %w", line, err)
		}
	}
	return ev, nil
}

// WaitWorkloadEvent waits for a workload line of the given kind (START, LISTEN, EXIT) in a
// container's log and parses it.
func WaitWorkloadEvent(t testing.TB, c *Container, kind string, timeout time.Duration) WorkloadEvent {
	t.Helper()
	ev, err := ParseWorkloadEvent(WaitLogLine(t, c.LogPath, kind+" ", timeout))
	if err != nil {
		t.Fatal(err)
	}
	return ev
}

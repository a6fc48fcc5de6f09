package appready

import (
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"golang.org/x/sys/unix"
)

var quiet = slog.New(slog.NewTextHandler(io.Discard, nil))

func TestReadyFindsREADY1AmongTheAssignmentsOnly(t *testing.T) {
	tests := map[string]struct {
		datagram string
		want     bool
	}{
		"READY=1 alone":                         {"READY=1", true},
		"READY=1 among other assignments":       {"STATUS=listening\nREADY=1\nMAINPID=7", true},
		"READY=1 with a trailing newline":       {"READY=1\n", true},
		"a status only":                         {"STATUS=starting", false},
		"READY=0":                               {"READY=0", false},
		"READY=10 is not READY=1":               {"READY=10", false},
		"spaces around it":                      {" READY=1", false},
		"a NUL byte refuses the whole datagram": {"READY=1\n\x00", false},
		"over the size, READY=1 first":          {"READY=1\n" + strings.Repeat("X", MaxDatagram), false},
		"garbage":                               {"\xff\xfe\n==\n", false},
		"empty":                                 {"", false},
	}
	for name, tt := range tests {
		t.Run(name, func(t *testing.T) { assert.Equal(t, tt.want, Ready([]byte(tt.datagram))) })
	}
}

func FuzzReady(f *testing.F) {
	for _, s := range []string{"READY=1", "STATUS=x\nREADY=1", "READY=1\x00", ""} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		if Ready(b) {
			require.LessOrEqual(t, len(b), MaxDatagram)
			require.Contains(t, "\n"+string(b)+"\n", "\nREADY=1\n")
		}
	})
}

// fakeProc is a /proc with the cgroup files of the given pids.
func fakeProc(t *testing.T, cgroups map[int]string) string {
	dir := t.TempDir()
	for pid, cg := range cgroups {
		require.NoError(t, os.MkdirAll(filepath.Join(dir, strconv.Itoa(pid)), 0o755))
		require.NoError(t, os.WriteFile(filepath.Join(dir, strconv.Itoa(pid), "cgroup"), []byte(cg), 0o644))
	}
	return dir
}

func send(t *testing.T, path, msg string) {
	c, err := net.DialUnix("unixgram", nil, &net.UnixAddr{Name: path, Net: "unixgram"})
	require.NoError(t, err)
	defer c.Close()
	_, err = c.Write([]byte(msg))
	require.NoError(t, err)
}

const attemptPID = 999999 // the container attempt's process, in the fake /proc only

// armed opens a socket whose attempt's process has cgroup attempt, while this test's own process
// (the sender: the kernel fills in its real pid) has cgroup sender.
func armed(t *testing.T, attempt, sender string) (*Socket, *atomic.Int32) {
	s, ready, _ := armedReporting(t, attempt, sender)
	return s, ready
}

// armedReporting is armed, with the verdict on each datagram (the first 8 kept).
func armedReporting(t *testing.T, attempt, sender string) (*Socket, *atomic.Int32, <-chan string) {
	n := NewNotifier(0, quiet)
	n.proc = fakeProc(t, map[int]string{attemptPID: attempt, os.Getpid(): sender})
	results := make(chan string, 8)
	n.Datagram = func(r string) {
		select {
		case results <- r:
		default:
		}
	}
	s, err := n.Open("pod", t.TempDir())
	require.NoError(t, err)
	t.Cleanup(s.Close)
	var ready atomic.Int32
	require.NoError(t, s.Arm(attemptPID, func() { ready.Add(1) }))
	return s, &ready, results
}

func TestAREADY1FromAProcessOfTheAttemptCounts(t *testing.T) {
	s, ready := armed(t, "0::/kubepods/pod1/ctr-a\n", "0::/kubepods/pod1/ctr-a\n")
	fi, err := os.Stat(s.path)
	require.NoError(t, err)
	assert.Equal(t, os.ModeSocket|0o666, fi.Mode(), "any uid of the container may send")
	send(t, s.path, "STATUS=up\nREADY=1")
	assert.Eventually(t, func() bool { return ready.Load() == 1 }, 2*time.Second, time.Millisecond)
}

func TestAREADY1FromAnotherContainerOrAPreviousAttemptNeverCounts(t *testing.T) {
	for name, sender := range map[string]string{
		"a sibling container of the pod":               "0::/kubepods/pod1/ctr-b\n",
		"the previous attempt of the same container":   "0::/kubepods/pod1/ctr-a-old\n",
		"a process of the node":                        "0::/system.slice/sshd.service\n",
		"a prefix of the attempt's cgroup, not itself": "0::/kubepods/pod1\n",
	} {
		t.Run(name, func(t *testing.T) {
			s, ready := armed(t, "0::/kubepods/pod1/ctr-a\n", sender)
			for range 5 {
				send(t, s.path, "READY=1")
			}
			time.Sleep(100 * time.Millisecond)
			assert.Zero(t, ready.Load(), "forged READY=1 counted")
		})
	}
}

func TestAnOversizeDatagramIsRefusedWholeAndTheNextStillCounts(t *testing.T) {
	s, ready, results := armedReporting(t, "0::/a\n", "0::/a\n")
	send(t, s.path, "READY=1\n"+strings.Repeat("x", MaxDatagram))
	send(t, s.path, "STATUS=nearly")
	send(t, s.path, "READY=1")
	assert.Equal(t, Refused, <-results, "over the size")
	assert.Equal(t, Ignored, <-results, "no READY=1")
	assert.Equal(t, Counted, <-results)
	assert.EqualValues(t, 1, ready.Load())
}

func TestAPassedFileDescriptorIsClosedAndItsDatagramRefused(t *testing.T) {
	s, _, results := armedReporting(t, "0::/a\n", "0::/a\n")
	fd, err := unix.Socket(unix.AF_UNIX, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
	require.NoError(t, err)
	defer unix.Close(fd)
	f, err := os.Open("/dev/null")
	require.NoError(t, err)
	defer f.Close()
	require.NoError(t, unix.Sendmsg(fd, []byte("READY=1"), unix.UnixRights(int(f.Fd()), int(f.Fd()), int(f.Fd())), &unix.SockaddrUnix{Name: s.path}, 0))
	assert.Equal(t, Refused, <-results)
}

func TestCloseRemovesTheSocketAndGivesBackItsPlace(t *testing.T) {
	n := NewNotifier(2, quiet)
	dir := t.TempDir()
	a, err := n.Open("pod", filepath.Join(dir))
	require.NoError(t, err)
	b, err := n.Open("pod", t.TempDir())
	require.NoError(t, err)
	_, err = n.Open("other", t.TempDir())
	require.ErrorContains(t, err, "the node's limit of 2 notify sockets is reached")
	a.Close()
	a.Close()
	assert.NoFileExists(t, filepath.Join(dir, SocketName))
	c, err := n.Open("other", t.TempDir())
	require.NoError(t, err)
	b.Close()
	c.Close()
}

func TestAPodGetsAtMostMaxPerPodSockets(t *testing.T) {
	n := NewNotifier(0, quiet)
	for i := range MaxPerPod {
		s, err := n.Open("pod", t.TempDir())
		require.NoError(t, err, i)
		defer s.Close()
	}
	_, err := n.Open("pod", t.TempDir())
	require.ErrorContains(t, err, fmt.Sprintf("its limit of %d", MaxPerPod))
}

func TestArmNeedsTheAttemptsProcess(t *testing.T) {
	n := NewNotifier(0, quiet)
	n.proc = fakeProc(t, nil)
	s, err := n.Open("pod", t.TempDir())
	require.NoError(t, err)
	defer s.Close()
	require.Error(t, s.Arm(0, func() {}))
	require.ErrorContains(t, s.Arm(attemptPID, func() {}), "read the cgroup of the container's process")
}

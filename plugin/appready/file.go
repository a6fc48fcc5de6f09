package appready

import (
	"errors"
	"fmt"
	"log/slog"
	"path"
	"strconv"
	"sync"
	"time"

	"golang.org/x/sys/unix"
)

// DefaultRecheck is the safety net of a path watch: the path is looked up again this often even
// without an event, in case one was missed (a change inotify does not report, such as a mount
// made over a directory by a process outside the container's mount namespace).
const DefaultRecheck = time.Second

// minLookupGap bounds how often one watch looks its path up, whatever events the container causes.
const minLookupGap = 2 * time.Millisecond

// Files watches paths inside containers.
type Files struct {
	proc string
	cap  *capacity
	log  *slog.Logger
	// Recheck is the period of the safety-net lookup; zero means DefaultRecheck.
	Recheck time.Duration

	// inotifyOnce makes the loss of inotify one log line for the node.
	inotifyOnce sync.Once
	// resolveErr is set when the kernel cannot resolve a path inside a root safely (openat2 with
	// RESOLVE_IN_ROOT, Linux 5.6): then no path is watched at all.
	resolveErr error
	// opened, when set, is called between the opening of a process's /proc entries and the check
	// that the process pinned is still there: tests end the process there.
	opened func()
}

// NewFiles returns a Files holding at most maxNode watches (0: DefaultMaxFilesPerNode). It checks
// once that the kernel resolves paths inside a root safely, and logs once if it does not.
func NewFiles(maxNode int, log *slog.Logger) *Files {
	if maxNode <= 0 {
		maxNode = DefaultMaxFilesPerNode
	}
	f := &Files{proc: "/proc", cap: newCapacity("path watches", maxNode), log: log}
	fd, err := unix.Openat2(unix.AT_FDCWD, "/", &unix.OpenHow{Flags: unix.O_PATH | unix.O_CLOEXEC, Resolve: unix.RESOLVE_IN_ROOT | unix.RESOLVE_NO_MAGICLINKS})
	if err != nil {
		f.resolveErr = fmt.Errorf("this kernel cannot resolve a path inside a container's root safely (openat2 RESOLVE_IN_ROOT needs Linux 5.6): %w", err)
		log.Warn("readiness file:<path> is unavailable; such containers' readiness comes from kubelet", "error", f.resolveErr)
	} else {
		unix.Close(fd)
	}
	return f
}

// watch is one path watch's kernel objects.
type watch struct {
	root, mountinfo, inotify, stop int
}

// Watch calls ready once the absolute, clean path p exists in the mount namespace of the process
// pid (a container's), resolved inside its root: a symlink in the container cannot lead the lookup
// out of it, nor through /proc's magic links. It is seen by an event — inotify on the deepest
// existing ancestor, the mount table's change (poll POLLPRI on /proc/<pid>/mountinfo) — and, as a
// safety net, by a lookup every Recheck. stop ends the watch; it may be called more than once.
func (f *Files) Watch(podUID string, pid uint32, p string, ready func()) (stop func(), err error) {
	if f.resolveErr != nil {
		return nil, f.resolveErr
	}
	if pid == 0 || !path.IsAbs(p) || path.Clean(p) != p {
		return nil, fmt.Errorf("watch %q of process %d: want an absolute, clean path and a process", p, pid)
	}
	if err := f.cap.take(podUID); err != nil {
		return nil, err
	}
	w, err := f.open(pid)
	if err != nil {
		f.cap.give(podUID)
		return nil, err
	}
	var once sync.Once
	stop = func() {
		once.Do(func() {
			one := []byte{1, 0, 0, 0, 0, 0, 0, 0}
			unix.Write(w.stop, one) //nolint:errcheck // an eventfd write of 1 only fails on overflow
		})
	}
	go func() {
		defer f.cap.give(podUID)
		defer w.close()
		f.loop(w, p, ready)
	}()
	return stop, nil
}

// open opens what a watch of process pid needs. A pid names whichever process has it now: the
// container's process could exit and its number go to another process before /proc/<pid> is opened,
// which would watch that process's root instead. A pidfd pins the process first; once the /proc
// entries are open, the pinned process still being there (not reaped) proves that the number was
// never freed in between, so they are its. pidfd_open needs Linux 5.3, below the 5.6 openat2 needs.
func (f *Files) open(pid uint32) (*watch, error) {
	pidfd, err := unix.PidfdOpen(int(pid), 0)
	if err != nil {
		return nil, fmt.Errorf("pin process %d with a pidfd: %w", pid, err)
	}
	defer unix.Close(pidfd)
	w, err := f.openProc(pid)
	if err != nil {
		return nil, err
	}
	if f.opened != nil {
		f.opened()
	}
	if err := stillThere(pidfd); err != nil {
		w.close()
		return nil, fmt.Errorf("process %d exited while its root was opened (its number may be another process's now): %w", pid, err)
	}
	return w, nil
}

// stillThere reports, as an error, that the process of pidfd has been reaped, after which its
// number may be reused. Signal 0 checks without signalling; EPERM (a daemon without CAP_KILL, the
// chart's stopWith=false) comes only after the kernel found the process, so it means still there.
func stillThere(pidfd int) error {
	if err := unix.PidfdSendSignal(pidfd, 0, nil, 0); err != nil && !errors.Is(err, unix.EPERM) {
		return err
	}
	return nil
}

// openProc opens process pid's root and mount table, and the watch's own eventfd and inotify.
func (f *Files) openProc(pid uint32) (*watch, error) {
	w := &watch{root: -1, mountinfo: -1, inotify: -1, stop: -1}
	dir := f.proc + "/" + strconv.FormatUint(uint64(pid), 10)
	var err error
	// The container's root as its process sees it; lookups below never leave it.
	if w.root, err = unix.Open(dir+"/root", unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0); errors.Is(err, unix.EACCES) {
		return nil, fmt.Errorf("open the root of process %d: %w: looking inside a container needs CAP_SYS_PTRACE, which the daemon lacks: install with the chart's fileReadiness=true or the kustomize component daemonset/components/file-readiness", pid, err)
	} else if err != nil {
		return nil, fmt.Errorf("open the root of process %d: %w", pid, err)
	}
	if w.mountinfo, err = unix.Open(dir+"/mountinfo", unix.O_RDONLY|unix.O_CLOEXEC, 0); err != nil {
		w.close()
		return nil, fmt.Errorf("open the mount table of process %d: %w", pid, err)
	}
	if w.stop, err = unix.Eventfd(0, unix.EFD_CLOEXEC|unix.EFD_NONBLOCK); err != nil {
		w.close()
		return nil, fmt.Errorf("eventfd: %w", err)
	}
	if w.inotify, err = unix.InotifyInit1(unix.IN_CLOEXEC | unix.IN_NONBLOCK); err != nil {
		// Each user has 128 inotify instances by default: without one, the path is looked up
		// every Recheck, and on every mount table change.
		w.inotify = -1
		f.inotifyOnce.Do(func() {
			f.log.Warn("inotify unavailable; readiness file:<path> is looked up every recheck and at mount changes instead", "recheck", f.recheck().String(), "error", err)
		})
	}
	return w, nil
}

func (w *watch) close() {
	for _, fd := range []int{w.root, w.mountinfo, w.inotify, w.stop} {
		if fd >= 0 {
			unix.Close(fd)
		}
	}
}

func (f *Files) recheck() time.Duration {
	if f.Recheck > 0 {
		return f.Recheck
	}
	return DefaultRecheck
}

// loop looks p up after every event until it exists or the watch is stopped.
func (f *Files) loop(w *watch, p string, ready func()) {
	buf := make([]byte, 4096)
	wd, mounts := -1, w.mountinfo
	var last time.Time
	for {
		// A tenant that creates and removes files in the watched directory as fast as it can
		// must not make the daemon look up as fast: at most one lookup per minLookupGap.
		if gap := time.Since(last); gap < minLookupGap {
			time.Sleep(minLookupGap - gap)
		}
		last = time.Now()
		found, dir := lookup(w.root, p)
		if found {
			ready()
			return
		}
		if w.inotify >= 0 {
			if wd >= 0 {
				unix.InotifyRmWatch(w.inotify, uint32(wd)) //nolint:errcheck // the watch may be gone with its directory
				wd = -1
			}
			if dir >= 0 {
				// Through the descriptor, so that the directory watched is the one resolved inside
				// the root, never a host path of the same name.
				wd, _ = unix.InotifyAddWatch(w.inotify, "/proc/self/fd/"+strconv.Itoa(dir),
					unix.IN_CREATE|unix.IN_MOVED_TO|unix.IN_DELETE_SELF|unix.IN_MOVE_SELF|unix.IN_ATTRIB|unix.IN_ONLYDIR)
			}
		}
		// Look again now that the watch is in place: what appeared between the lookup and the
		// watch made no event for it. A deeper directory appearing meanwhile is watched next.
		again, moved := false, false
		if dir >= 0 && wd >= 0 {
			var deeper int
			again, deeper = lookup(w.root, p)
			if deeper >= 0 {
				moved = !sameFile(dir, deeper)
				unix.Close(deeper)
			}
		}
		if dir >= 0 {
			unix.Close(dir)
		}
		if again {
			ready()
			return
		}
		if moved {
			continue
		}
		// poll(2) skips a negative descriptor: the mount table once its process is gone.
		fds := []unix.PollFd{{Fd: int32(w.stop), Events: unix.POLLIN}, {Fd: int32(mounts), Events: unix.POLLPRI}}
		if w.inotify >= 0 {
			fds = append(fds, unix.PollFd{Fd: int32(w.inotify), Events: unix.POLLIN})
		}
		if _, err := unix.Poll(fds, int(f.recheck().Milliseconds())); err != nil && !errors.Is(err, unix.EINTR) {
			f.log.Warn("cannot wait for a path; looking it up every recheck", "path", p, "error", err)
			time.Sleep(f.recheck())
		}
		if fds[0].Revents != 0 {
			return
		}
		if fds[1].Revents&(unix.POLLERR|unix.POLLNVAL|unix.POLLHUP) != 0 && fds[1].Revents&unix.POLLPRI == 0 {
			mounts = -1 // it would wake every poll: the inotify watch and the recheck remain
		}
		if w.inotify >= 0 {
			for { // drain: the events only say "look again"
				if n, err := unix.Read(w.inotify, buf); n <= 0 || err != nil {
					break
				}
			}
		}
	}
}

// sameFile says whether two descriptors name one file.
func sameFile(a, b int) bool {
	var sa, sb unix.Stat_t
	if unix.Fstat(a, &sa) != nil || unix.Fstat(b, &sb) != nil {
		return false
	}
	return sa.Dev == sb.Dev && sa.Ino == sb.Ino
}

// lookup resolves p inside root. It returns whether p exists, and otherwise a descriptor of the
// deepest ancestor that does (or -1), to watch.
func lookup(root int, p string) (found bool, dir int) {
	how := &unix.OpenHow{Flags: unix.O_PATH | unix.O_CLOEXEC, Resolve: unix.RESOLVE_IN_ROOT | unix.RESOLVE_NO_MAGICLINKS}
	fd, err := unix.Openat2(root, p, how)
	if err == nil {
		unix.Close(fd)
		return true, -1
	}
	how.Flags |= unix.O_DIRECTORY
	for q := path.Dir(p); ; q = path.Dir(q) {
		if fd, err := unix.Openat2(root, q, how); err == nil {
			return false, fd
		}
		if q == "/" {
			return false, -1
		}
	}
}

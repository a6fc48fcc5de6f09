package appready

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"strconv"
)

// maxCgroupFile bounds what is read of /proc/<pid>/cgroup: a line per hierarchy.
const maxCgroupFile = 16 << 10

// identity is what makes a process one of a container attempt's: its cgroups. Every process of a
// container runs in the container's own cgroup, which the runtime names after the container's ID,
// so a process of another container, of a previous attempt of the same container, or of the node
// has a different one — and a container cannot move a process into another's cgroup.
type identity struct {
	proc   string
	cgroup []byte
}

// identify takes the identity of the attempt whose process is pid.
func identify(proc string, pid uint32) (identity, error) {
	if pid == 0 {
		return identity{}, errors.New("no process to check senders against")
	}
	cg, err := readCgroup(proc, int32(pid))
	if err != nil {
		return identity{}, fmt.Errorf("read the cgroup of the container's process %d: %w", pid, err)
	}
	if len(bytes.TrimSpace(cg)) == 0 {
		return identity{}, fmt.Errorf("process %d has no cgroup to tell its container by", pid)
	}
	return identity{proc: proc, cgroup: cg}, nil
}

// owns reports whether the process pid (as the kernel's credentials name it, in the daemon's PID
// namespace) belongs to the attempt. A process that exited before its datagram is read cannot be
// checked, so it does not count.
func (id identity) owns(pid int32) bool {
	if pid <= 0 {
		return false
	}
	cg, err := readCgroup(id.proc, pid)
	return err == nil && bytes.Equal(cg, id.cgroup)
}

func readCgroup(proc string, pid int32) ([]byte, error) {
	f, err := os.Open(proc + "/" + strconv.Itoa(int(pid)) + "/cgroup")
	if err != nil {
		return nil, err
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, maxCgroupFile+1))
	if err != nil {
		return nil, err
	}
	if len(b) > maxCgroupFile {
		return nil, fmt.Errorf("/proc/%d/cgroup is over %d bytes", pid, maxCgroupFile)
	}
	return b, nil
}

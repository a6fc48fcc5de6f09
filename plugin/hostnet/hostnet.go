// Package hostnet tells whether a network namespace is the node's by comparing namespace
// identities, not paths: an nsfs file (/proc/<pid>/ns/net, or a bind mount of one such as
// /var/run/netns/cni-…) names its namespace by the device and inode the kernel gives it, whatever
// its path.
//
// "The node's network namespace" is PID 1's: podorder's DaemonSet has hostPID, so its PID 1 is the
// node's init.
package hostnet

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"golang.org/x/sys/unix"
)

// Identity is one namespace's identity: the device and inode of its nsfs file. The zero Identity
// stands for a namespace podorder could not identify.
type Identity struct {
	Dev, Ino uint64
}

// Of returns the identity of the namespace that the nsfs file at path names.
func Of(path string) (Identity, error) {
	var st unix.Stat_t
	if err := unix.Stat(path, &st); err != nil {
		return Identity{}, fmt.Errorf("identify the namespace of %s: %w", path, err)
	}
	return Identity{Dev: uint64(st.Dev), Ino: st.Ino}, nil // Dev is int32 on darwin, where the offline commands build too
}

// NamedBy reports whether the nsfs file at path names id. It is false when id is unknown or path
// cannot be read: a namespace is counted as the node's only when podorder knows it is.
func (id Identity) NamedBy(path string) bool {
	if id == (Identity{}) || path == "" {
		return false
	}
	other, err := Of(path)
	return err == nil && other == id
}

// InNode reports whether podorder runs in the node's network namespace; an error says it cannot
// tell.
func InNode() (bool, error) {
	if err := hostPID(); err != nil {
		return false, err
	}
	return sameNetwork("/proc/1", "/proc/self")
}

// Node returns the identity of the node's network namespace, or an error saying why podorder
// cannot know it.
func Node() (Identity, error) {
	if err := hostPID(); err != nil {
		return Identity{}, err
	}
	if id, err := Of("/proc/1/ns/net"); err == nil {
		return id, nil
	}
	in, err := sameNetwork("/proc/1", "/proc/self")
	if err != nil {
		return Identity{}, err
	}
	if !in {
		return Identity{}, errors.New("PID 1's network namespace cannot be read without CAP_SYS_PTRACE, and podorder runs in another one")
	}
	return Of("/proc/self/ns/net")
}

// hostPID fails when PID 1 is podorder itself, which it never is in the node's PID namespace. (A
// PID namespace of podorder's own pod whose PID 1 is the pause process goes unnoticed: the
// DaemonSet's hostPID, which stop-with needs as well, is what rules that out.)
func hostPID() error {
	if os.Getpid() == 1 {
		return errors.New("podorder is PID 1, so it does not see the node's PID namespace and cannot find the node's network namespace: give its DaemonSet hostPID: true")
	}
	return nil
}

// sameNetwork reports whether the processes at the /proc directories a and b share a network
// namespace. Their nsfs identities say so exactly, but the kernel shows a process's namespaces only
// to processes that may ptrace it, and PID 1 holds capabilities the DaemonSet does not grant
// (CAP_SYS_PTRACE among them); then sameNetwork compares their procfs network entries instead.
func sameNetwork(a, b string) (bool, error) {
	same, errNs := sameEntry(a, b, "ns/net")
	if errNs == nil {
		return same, nil
	}
	// Each network namespace has its own procfs entries under /proc/<pid>/net, shown without the
	// ptrace check, and two live entries never share an inode number: the same net/dev entry means
	// the same namespace.
	same, err := sameEntry(a, b, "net/dev")
	if err != nil {
		return false, fmt.Errorf("cannot compare the network namespaces of %s and %s: %w", a, b, errors.Join(errNs, err))
	}
	return same, nil
}

// sameEntry reports whether name under the /proc directories a and b is one file.
func sameEntry(a, b, name string) (bool, error) {
	ia, err := Of(filepath.Join(a, name))
	if err != nil {
		return false, err
	}
	ib, err := Of(filepath.Join(b, name))
	if err != nil {
		return false, err
	}
	return ia == ib, nil
}

package plugin

import (
	"fmt"
	"math"
	"time"

	"github.com/containerd/nri/pkg/api"

	"github.com/podorder/podorder/hooks/tombstone"
	"github.com/podorder/podorder/plugin/decl"
	"github.com/podorder/podorder/plugin/podstate"
)

// Paths inside a held container. A dot directory at the root keeps them out of the image's way.
const (
	// HookPath is where the hook binary is bind-mounted and run from.
	HookPath = "/.podorder/hook"
	// StorePath is where the pod's tombstone directory is bind-mounted, read-only.
	StorePath = "/.podorder/store"
	// WakePath is where the container's own wake directory is bind-mounted, read-only (its FIFO
	// stays writable: special files ignore the flag, which is why no other container sees it).
	WakePath = "/.podorder/wake"
	// NotifyPath is where the container attempt's own notify directory is bind-mounted, read-only
	// (its socket stays writable, as a FIFO: every sender is checked by its credentials instead).
	NotifyPath = "/.podorder/notify"
	// NotifySocketPath is the container's NOTIFY_SOCKET, in NotifyPath.
	NotifySocketPath = NotifyPath + "/notify"
)

// HoldTarget names a held container for its hook's messages.
type HoldTarget struct {
	// Pod is "namespace/name".
	Pod       string
	Container string
	// ID is the runtime's ID of this container attempt: the hook obeys releases recorded for it only.
	ID string
	// PodDir is the pod's tombstone directory on the node.
	PodDir string
	// WakeDir is the container's own wake directory on the node.
	WakeDir string
}

// Adjustment is what a held container gets at CreateContainer: the mounts of Mounts and a
// startContainer hook that waits for hold.After.
func Adjustment(hookBinary string, t HoldTarget, hold *decl.Declared) *api.ContainerAdjustment {
	adj := Mounts(hookBinary, t)
	args := []string{"podorder-hook",
		"--dir=" + StorePath,
		"--wake=" + tombstone.WakeFile(WakePath),
		"--pod=" + t.Pod,
		"--container=" + t.Container,
		"--id=" + t.ID,
		"--timeout=" + hold.Timeout.String(),
	}
	for _, d := range hold.After {
		args = append(args, d.String())
	}
	adj.AddHooks(&api.Hooks{StartContainer: []*api.Hook{{
		Path: HookPath,
		Args: args,
		// The hook reads no environment; an explicit one keeps the runtime from passing anything.
		Env:     []string{"PATH=/"},
		Timeout: &api.OptionalInt{Value: hookTimeoutSeconds(hold.Timeout)},
	}}})
	return adj
}

// Mounts gives a container the hook binary, the pod's tombstone directory and its own wake
// directory, all read-only: what a held container's startContainer hook and a depended-on
// container's preStop hook read.
func Mounts(hookBinary string, t HoldTarget) *api.ContainerAdjustment {
	adj := &api.ContainerAdjustment{}
	adj.AddMount(&api.Mount{
		Destination: HookPath,
		Type:        "bind",
		Source:      hookBinary,
		Options:     []string{"bind", "ro", "nosuid", "nodev"},
	})
	adj.AddMount(&api.Mount{
		Destination: StorePath,
		Type:        "bind",
		Source:      t.PodDir,
		Options:     []string{"rbind", "ro", "nosuid", "nodev", "noexec"},
	})
	adj.AddMount(&api.Mount{
		Destination: WakePath,
		Type:        "bind",
		Source:      t.WakeDir,
		Options:     []string{"rbind", "ro", "nosuid", "nodev", "noexec"},
	})
	return adj
}

// addNotify gives a container its notify socket: the attempt's own directory, and NOTIFY_SOCKET
// naming the socket in it, as Podman's sdnotify=container does.
func addNotify(adj *api.ContainerAdjustment, dir string) *api.ContainerAdjustment {
	if adj == nil {
		adj = &api.ContainerAdjustment{}
	}
	adj.AddMount(&api.Mount{
		Destination: NotifyPath,
		Type:        "bind",
		Source:      dir,
		Options:     []string{"rbind", "ro", "nosuid", "nodev", "noexec"},
	})
	adj.AddEnv("NOTIFY_SOCKET", NotifySocketPath)
	return adj
}

// hookTimeoutSeconds is the runtime's limit for the hook, rounded up to whole seconds and saturated:
// the OCI field is an int, and an overflow would turn a long hold into a negative limit.
func hookTimeoutSeconds(hold time.Duration) int64 {
	const most = int64(math.MaxInt32)
	if hold < 0 || hold > time.Duration(most)*time.Second {
		return most
	}
	return min(int64((hold+podstate.HookGrace+time.Second-1)/time.Second), most)
}

// rejection is the error that fails CreateContainer; kubelet shows it as CreateContainerError in
// `kubectl describe pod`.
func rejection(pod, container string, err error) error {
	return fmt.Errorf("podorder: pod %s, container %s: %w", pod, container, err)
}

package plugin

import (
	"strconv"
	"syscall"
	"time"

	"github.com/podorder/podorder/plugin/podstate"
	"github.com/podorder/podorder/plugin/stopper"
)

// Processes opens handles on containers' processes, to stop them for stop-with.
type Processes interface {
	// Open takes a handle on pid and refuses it when the process is not the container's: a PID
	// from the runtime may have been reused since the runtime read it.
	Open(pid uint32, containerID string) (Process, error)
}

// Process is a handle on one container's init process that stays valid after it exits.
type Process interface {
	// Signal sends sig, or returns stopper.ErrExited when the process is gone.
	Signal(sig syscall.Signal) error
	Close() error
}

// defaultGrace is kubelet's default terminationGracePeriodSeconds, for containers whose pod does not
// say (kubelet always does).
const defaultGrace = 30 * time.Second

// podGraceAnnotation is where kubelet puts the pod's terminationGracePeriodSeconds on each container.
const podGraceAnnotation = "io.kubernetes.pod.terminationGracePeriod"

// podGrace reads kubelet's annotation of the pod's grace period.
func podGrace(annotations map[string]string) time.Duration {
	if s, err := strconv.ParseInt(annotations[podGraceAnnotation], 10, 64); err == nil && s >= 0 {
		return time.Duration(min(s, int64(24*time.Hour/time.Second))) * time.Second
	}
	return defaultGrace
}

// track takes a handle on a started attempt's process, which a stop-with may have to stop. The PID
// comes from the runtime and may be stale (a resynchronization's snapshot), so Open checks the
// process against the attempt's container ID; the handle can then never reach a later process that
// reused the PID.
func (p *Plugin) track(pd *pod, a *podstate.Attempt, pid uint32) {
	if pd.procs[a] != nil || p.cfg.Processes == nil {
		return
	}
	proc, err := p.cfg.Processes.Open(pid, a.TS.ID)
	if err != nil {
		p.logger(pd, a.Name()).Error("cannot take a handle on the container's process: stop-with cannot stop it", "pid", pid, "container_id", a.TS.ID, "error", err)
		p.event(pd, true, ReasonStopping, "podorder cannot stop container %s when its stop-with fires: %v", a.Name(), err)
		return
	}
	pd.procs[a] = proc
}

// untrack releases a's process handle and cancels a pending SIGKILL.
func (p *Plugin) untrack(pd *pod, a *podstate.Attempt) {
	if proc := pd.procs[a]; proc != nil {
		_ = proc.Close()
		delete(pd.procs, a)
	}
	if t := pd.kills[a]; t != nil {
		t.Stop()
		delete(pd.kills, a)
	}
}

// osProcesses opens real process handles.
type osProcesses struct{}

// OSProcesses opens handles on the node's processes through pidfds.
var OSProcesses Processes = osProcesses{}

func (osProcesses) Open(pid uint32, containerID string) (Process, error) {
	return stopper.Open(pid, containerID)
}

package plugin

import (
	"errors"
	"fmt"
	"strconv"
	"syscall"
	"time"

	"github.com/podorder/podorder/stopper"
)

// Processes opens handles on containers' processes, to stop them for stop-with.
type Processes interface {
	Open(pid uint32) (Process, error)
}

// Process is a handle on one container's init process that stays valid after it exits.
type Process interface {
	// Signal sends sig, or returns stopper.ErrExited when the process is gone.
	Signal(sig syscall.Signal) error
	Close() error
}

// Event reasons of podorder's stops.
const (
	ReasonStopping = "PodorderStopping"
	ReasonStopped  = "PodorderStopped"
)

// defaultGrace is kubelet's default terminationGracePeriodSeconds, for containers whose pod does not
// say (kubelet always does).
const defaultGrace = 30 * time.Second

// podGraceAnnotation is where kubelet puts the pod's terminationGracePeriodSeconds on each container.
const podGraceAnnotation = "io.kubernetes.pod.terminationGracePeriod"

// stopping is podorder's stop of one container attempt, from its signal to its exit.
type stopping struct {
	why    string
	signal syscall.Signal // zero when the stop ended a hold instead
	at     time.Time
	grace  time.Duration
	kill   *time.Timer
	killed bool
}

// podGrace reads kubelet's annotation of the pod's grace period.
func podGrace(annotations map[string]string) time.Duration {
	if s, err := strconv.ParseInt(annotations[podGraceAnnotation], 10, 64); err == nil && s >= 0 {
		return time.Duration(min(s, int64(24*time.Hour/time.Second))) * time.Second
	}
	return defaultGrace
}

// track takes a handle on a started attempt's process when a stop-with may have to stop it. The
// handle is taken while the runtime reports the process, so it can never reach a later process
// that reused the PID.
func (p *Plugin) track(pd *pod, m *member, pid uint32) {
	if m.proc != nil || m.hold == nil || len(m.hold.StopWith) == 0 || p.cfg.Processes == nil || pid == 0 {
		return
	}
	proc, err := p.cfg.Processes.Open(pid)
	if err != nil {
		p.logger(pd, m.ts.Container).Error("cannot take a handle on the container's process: stop-with cannot stop it", "pid", pid, "error", err)
		p.event(pd, true, ReasonStopping, "podorder cannot stop container %s when %s: %v", m.ts.Container, triggers(m), err)
		return
	}
	m.proc = proc
}

// untrack releases m's process handle and cancels a pending SIGKILL.
func (m *member) untrack() {
	if m.proc != nil {
		_ = m.proc.Close()
		m.proc = nil
	}
	if m.stop != nil && m.stop.kill != nil {
		m.stop.kill.Stop()
	}
}

func triggers(m *member) string {
	s := ""
	for i, t := range m.hold.StopWith {
		if i > 0 {
			s += " or "
		}
		s += t.String()
	}
	return s
}

// stopBound stops the containers bound with stop-with to exited's container, now that its current
// attempt exited with code. While the pod is being deleted kubelet stops every container itself.
func (p *Plugin) stopBound(pd *pod, exited *member, code int32) {
	if pd.terminating {
		return
	}
	for _, name := range sortedNames(pd.members) {
		m := pd.members[name]
		if m == exited || m.hold == nil {
			continue
		}
		if t, ok := m.hold.StoppedBy(exited.ts.Container, code); ok {
			p.stopMember(pd, m, fmt.Sprintf("%s exited with code %d (stop-with %s)", exited.ts.Container, code, t))
		}
	}
}

// stopMember stops m's attempt gracefully: its stop signal now, SIGKILL after the grace period. A
// held attempt never ran its process: its hold ends instead, which exits it at once.
func (p *Plugin) stopMember(pd *pod, m *member, why string) {
	ts, name := m.ts, m.ts.Container
	if ts.ExitedAt != nil || m.stop != nil || ts.StartedAt == nil && ts.HoldDeadline == nil {
		return // gone, already stopping, or not started: nothing runs
	}
	log := p.logger(pd, name)
	now := p.now()
	if ts.Held() && ts.ReleasedAt == nil {
		if ts.HoldFailed != "" {
			return
		}
		ts.HoldFailed = "stopped by podorder: " + why
		m.stop = &stopping{why: why, at: now}
		log.Info("stopping: ending the hold", "reason", why)
		p.event(pd, false, ReasonStopping, "stopping container %s: %s; it was still held, so its hold ends now", name, why)
		p.write(pd, m)
		return
	}
	if m.proc == nil {
		log.Error("cannot stop: no handle on the container's process", "reason", why)
		p.event(pd, true, ReasonStopping, "podorder cannot stop container %s (%s): no handle on its process; see podorder's log", name, why)
		return
	}
	sig := m.hold.StopSignal
	if sig == 0 {
		sig = syscall.SIGTERM
	}
	grace := m.hold.StopGrace
	if grace == 0 {
		grace = m.grace
	}
	if err := m.proc.Signal(sig); err != nil {
		if !errors.Is(err, stopper.ErrExited) {
			log.Error("cannot stop", "reason", why, "error", err)
			p.event(pd, true, ReasonStopping, "podorder cannot stop container %s (%s): %v", name, why, err)
		}
		return
	}
	st := &stopping{why: why, signal: sig, at: now, grace: grace}
	m.stop = st
	log.Info("stopping", "reason", why, "signal", signalName(sig), "grace", grace.String())
	p.event(pd, false, ReasonStopping, "stopping container %s: %s; %s now, SIGKILL after %s", name, why, signalName(sig), grace)
	st.kill = time.AfterFunc(grace, func() {
		defer p.recoverCallback("stop grace")
		p.mu.Lock()
		defer p.mu.Unlock()
		if p.pods[pd.uid] != pd || pd.members[name] != m || m.stop != st || ts.ExitedAt != nil || m.proc == nil {
			return
		}
		if err := m.proc.Signal(syscall.SIGKILL); err != nil {
			return
		}
		st.killed = true
		p.logger(pd, name).Warn("killed: still running at the end of its grace period", "grace", grace.String())
	})
}

// stopped reports the end of podorder's stop of m, which exited with code.
func (p *Plugin) stopped(pd *pod, m *member, code int32, now time.Time) {
	st := m.stop
	if st == nil {
		return
	}
	name := m.ts.Container
	took := now.Sub(st.at).Round(time.Millisecond)
	var how string
	switch {
	case st.signal == 0:
		how = "its hold ended"
	case st.killed:
		how = fmt.Sprintf("killed with SIGKILL %s after %s, at the end of its %s grace period", took, signalName(st.signal), st.grace)
	default:
		how = fmt.Sprintf("exited %s after %s", took, signalName(st.signal))
	}
	p.logger(pd, name).Info("stopped", "reason", st.why, "took_ms", took.Milliseconds(), "exit_code", code, "killed", st.killed)
	if code != 0 && st.signal != 0 {
		p.event(pd, true, ReasonStopped, "container %s stopped: %s with code %d; cause: %s. A non-zero exit fails a pod with restartPolicy Never "+
			"and restarts it under OnFailure: make %s exit 0 on %s (see podorder's README, Jobs)", name, how, code, st.why, name, signalName(st.signal))
		return
	}
	p.event(pd, false, ReasonStopped, "container %s stopped: %s with code %d; cause: %s", name, how, code, st.why)
}

func signalName(s syscall.Signal) string {
	for name, sig := range map[string]syscall.Signal{"SIGTERM": syscall.SIGTERM, "SIGINT": syscall.SIGINT, "SIGQUIT": syscall.SIGQUIT,
		"SIGHUP": syscall.SIGHUP, "SIGUSR1": syscall.SIGUSR1, "SIGUSR2": syscall.SIGUSR2, "SIGKILL": syscall.SIGKILL} {
		if sig == s {
			return name
		}
	}
	return s.String()
}

// PodTerminating records that the Kubernetes API says the pod is being deleted: kubelet now stops
// its containers, each after its preStop hook, and podorder's preStop hooks wait for dependents.
func (p *Plugin) PodTerminating(podUID string) {
	defer p.recoverCallback("pod termination")
	p.mu.Lock()
	defer p.mu.Unlock()
	pd := p.pods[podUID]
	if pd == nil || pd.terminating {
		return
	}
	pd.terminating = true
	if err := p.store.MarkTerminating(pd.uid); err != nil {
		p.log.Error("cannot mark the pod terminating: its containers stop without waiting for their dependents", "pod", pd.ref, "error", err)
		return
	}
	p.log.Info("pod is being deleted: dependencies stop after their dependents", "pod", pd.ref)
	for name, m := range pd.members {
		if m.wakes && m.ts.ExitedAt == nil {
			if err := p.store.Wake(pd.uid, name); err != nil {
				p.logger(pd, name).Warn("cannot wake the preStop hook", "error", err)
			}
		}
	}
}

// osProcesses opens real process handles.
type osProcesses struct{}

// OSProcesses opens handles on the node's processes through pidfds.
var OSProcesses Processes = osProcesses{}

func (osProcesses) Open(pid uint32) (Process, error) { return stopper.Open(pid) }

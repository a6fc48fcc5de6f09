package plugin

import (
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"sort"
	"strings"
	"time"

	"github.com/containerd/nri/pkg/api"

	"github.com/podorder/podorder/condition"
	"github.com/podorder/podorder/decl"
	"github.com/podorder/podorder/tombstone"
)

// pod is podorder's view of one pod that uses it. The tombstones on disk are the truth; members
// mirror them so that a release can be computed without reading the directory back.
type pod struct {
	uid, namespace, name string
	ref                  string // namespace/name, for messages
	netns                string
	decl                 *decl.Pod
	// members maps container name to its newest attempt, and the synthetic name of each dependency
	// on other pods to its tombstone.
	members map[string]*member
	// watches maps the synthetic name of a dependency on other pods to the end of its watch.
	watches map[string]func()
	// containers holds the IDs of the pod's containers that the runtime has not removed.
	containers map[string]bool
	// adopted marks a pod found at a Synchronize: after a runtime restart, containerd 2.4 sends no
	// RemovePodSandbox for it, so its tombstones go when its last container is removed.
	adopted bool
	// terminating is set once the Kubernetes API says the pod is being deleted.
	terminating bool
}

type member struct {
	ts   *tombstone.Tombstone
	hold *decl.Hold
	// prev is the attempt this one replaced, restored if the runtime undoes this one's creation.
	prev *member
	// stopProbe ends a running readiness probe; nil when none runs.
	stopProbe func()
	// probeRefused is set when the node could not run the probe: readiness then comes from the
	// other sources, rather than never.
	probeRefused bool
	// blind is set on a held container whose hook cannot see the store any more (it was removed
	// under podorder): a release written now would never reach it, so none is.
	blind bool
	// wakes is set when the container has a wake FIFO: it is held, or others wait for it (its
	// preStop hook waits for them when the pod is deleted).
	wakes bool
	// grace is the pod's terminationGracePeriodSeconds, as kubelet passed it to this container.
	grace time.Duration
	// proc is a handle on the attempt's process while it runs, taken only when stop-with may stop it.
	proc Process
	// stop is podorder's stop of this attempt in progress; nil when none.
	stop *stopping
}

func (p *Plugin) podFor(sb *api.PodSandbox) (*pod, error) {
	if pd := p.pods[sb.Uid]; pd != nil {
		// The store may have been removed under the daemon: a new container must get a directory
		// that exists to be bind-mounted, holding every tombstone of its pod.
		if _, err := os.Stat(p.store.PodDir(pd.uid)); errors.Is(err, fs.ErrNotExist) {
			if err := p.restore(pd); err != nil {
				return nil, err
			}
		}
		return pd, nil
	}
	if _, err := p.store.EnsurePod(sb.Uid); err != nil {
		return nil, err
	}
	pd := &pod{
		uid:        sb.Uid,
		namespace:  sb.Namespace,
		name:       sb.Name,
		ref:        sb.Namespace + "/" + sb.Name,
		netns:      netnsOf(sb),
		decl:       decl.Parse(sb.Labels, sb.Annotations),
		members:    map[string]*member{},
		watches:    map[string]func(){},
		containers: map[string]bool{},
	}
	if cs, ok := p.containersOf(sb); ok {
		pd.decl.CheckContainers(cs)
	}
	p.pods[sb.Uid] = pd
	return pd, nil
}

// containersOf returns the pod's containers: from the API when podorder has it, else from the
// kubectl last-applied annotation; NRI itself never lists them.
func (p *Plugin) containersOf(sb *api.PodSandbox) ([]decl.Container, bool) {
	if k := p.cfg.Kube; k != nil && k.Specs != nil {
		if cs, ok := k.Specs.Containers(sb.Uid); ok {
			return cs, true
		}
	}
	return decl.ContainersFromLastApplied(sb.Annotations)
}

func (p *Plugin) logger(pd *pod, container string) *slog.Logger {
	return p.log.With("pod", pd.ref, "container", container)
}

func (p *Plugin) createContainer(sb *api.PodSandbox, c *api.Container) (*api.ContainerAdjustment, error) {
	ref := sb.Namespace + "/" + sb.Name
	pd, err := p.podFor(sb)
	if err != nil {
		p.log.Error("cannot prepare tombstones; rejecting container", "pod", ref, "container", c.Name, "error", err)
		return nil, rejection(ref, c.Name, err)
	}
	log := p.logger(pd, c.Name)
	hold, err := pd.decl.For(c.Name)
	if err == nil && hold != nil {
		err = p.checkPodDependencies(sb.Namespace, hold)
	}
	if err == nil && hold != nil && hold.Probe != nil && pd.netns == "" && !p.cfg.ProbeHostNetwork {
		err = fmt.Errorf("%s%s.%s cannot be run for a hostNetwork pod: podorder runs in a network namespace of its own, not the node's. "+
			"Drop the probe key and give %s a readinessProbe (podorder follows kubelet's readiness), or run podorder with --probe-host-network "+
			"if it runs in the node's network namespace", decl.Domain, decl.KindProbe, c.Name, c.Name)
	}
	if err == nil && hold != nil && len(hold.StopWith) > 0 && p.cfg.Processes == nil {
		err = fmt.Errorf("%s%s.%s needs podorder to stop containers, and this podorder cannot: run it with the DaemonSet's hostPID and CAP_KILL", decl.Domain, decl.KindStopWith, c.Name)
	}
	if err != nil {
		err = rejection(ref, c.Name, err)
		log.Warn("rejected", "reason", err.Error())
		p.event(pd, true, ReasonRejected, "%s", err)
		return nil, err
	}
	held := hold != nil && len(hold.After) > 0
	dependedOn := pd.decl.DependedOn(c.Name)
	ts := newTombstone(c, hold, held, p.now())
	var wakeDir string
	if held || dependedOn {
		if wakeDir, err = p.store.EnsureWake(pd.uid, c.Name); err != nil {
			log.Error("cannot create the wake FIFO; rejecting container", "error", err)
			return nil, rejection(ref, c.Name, err)
		}
	}
	if held {
		if err := p.watchPodDependencies(pd, hold); err != nil {
			log.Error("cannot record pod dependencies; rejecting container", "error", err)
			return nil, rejection(ref, c.Name, err)
		}
	}
	if err := p.replace(pd, &member{ts: ts, hold: hold, wakes: held || dependedOn, grace: podGrace(c.Annotations)}); err != nil {
		log.Error("cannot record container; rejecting it", "error", err)
		return nil, rejection(ref, c.Name, err)
	}
	pd.containers[c.Id] = true
	target := HoldTarget{Pod: ref, Container: c.Name, ID: c.Id, PodDir: p.store.PodDir(pd.uid), WakeDir: wakeDir}
	if !held {
		if dependedOn {
			// Only for its preStop hook, which waits for its dependents when the pod is deleted.
			return Mounts(p.cfg.HookBinary, target), nil
		}
		return nil, nil
	}
	log.Info("holding", "waits_for", waitsFor(hold.After), "timeout", hold.Timeout.String(), "attempt", ts.Attempt)
	p.event(pd, false, ReasonWaiting, "container %s waits for %s (timeout %s)", c.Name, describe(hold), hold.Timeout)
	return Adjustment(p.cfg.HookBinary, target, hold), nil
}

// newTombstone is the record of a new container attempt; held says whether podorder's hook holds it.
func newTombstone(c *api.Container, hold *decl.Hold, held bool, created time.Time) *tombstone.Tombstone {
	ts := &tombstone.Tombstone{Container: c.Name, ID: c.Id, Attempt: attemptOf(c), CreatedAt: &created}
	if hold != nil && hold.Probe != nil {
		ts.Probe = hold.Probe.String()
	}
	if held {
		ts.WaitsFor = hold.After
		ts.HoldTimeout = tombstone.Duration(hold.Timeout)
	}
	return ts
}

// endProbe stops m's readiness probe, if one runs.
func (m *member) endProbe() {
	if m.stopProbe != nil {
		m.stopProbe()
		m.stopProbe = nil
	}
}

// markExited records that m's process exited, which also ends its probe and its process handle.
func (m *member) markExited(at time.Time, code int32) {
	m.ts.ExitedAt = &at
	m.ts.ExitCode = code
	m.endProbe()
	m.untrack()
}

// replace makes m the newest attempt of its container, ending the previous attempt's probe; on an
// error nothing changes.
func (p *Plugin) replace(pd *pod, m *member) error {
	old := pd.members[m.ts.Container]
	pd.members[m.ts.Container] = m
	if err := p.persist(pd, m); err != nil {
		if old != nil {
			pd.members[m.ts.Container] = old
		} else {
			delete(pd.members, m.ts.Container)
		}
		return err
	}
	if old != nil {
		old.endProbe()
		old.prev = nil // one step back is all an undone creation needs
	}
	m.prev = old
	p.wakeWaiters(pd, m)
	return nil
}

// current returns the member for this exact container attempt, or nil for an older attempt.
func (p *Plugin) current(sb *api.PodSandbox, c *api.Container) (*pod, *member) {
	pd := p.pods[sb.Uid]
	if pd == nil {
		return nil, nil
	}
	m := pd.members[c.Name]
	if m == nil || m.ts.ID != c.Id {
		return pd, nil
	}
	return pd, m
}

func (p *Plugin) startContainer(sb *api.PodSandbox, c *api.Container) {
	pd, m := p.current(sb, c)
	if m == nil {
		return
	}
	p.track(pd, m, c.Pid)
	if !m.ts.Held() || m.ts.ReleasedAt != nil {
		return
	}
	if m.ts.HoldDeadline == nil {
		deadline := holdDeadline(p.now(), time.Duration(m.ts.HoldTimeout))
		m.ts.HoldDeadline = &deadline
		p.write(pd, m)
	}
	p.release(pd)
	if m.ts.ReleasedAt != nil {
		return
	}
	// With runc < 1.2.8 / 1.3.3 the runtime's start does not return until the hook exits, so
	// PostStartContainer would not arrive while the container is still held.
	time.AfterFunc(p.cfg.BlockingStartAfter, func() {
		defer p.recoverCallback("blocking-start check")
		p.mu.Lock()
		defer p.mu.Unlock()
		if pd.members[c.Name] != m || m.ts.StartedAt != nil || m.ts.ExitedAt != nil || p.runtimeReported {
			return
		}
		p.runtimeReported = true
		p.logger(pd, c.Name).Error("the container runtime blocks StartContainer while a container is held: "+
			"kubelet stalls the whole pod (and the probes of its other containers) until the hold ends. "+
			"This runc runs startContainer hooks before `runc start` returns; upgrade to runc >= 1.2.8, >= 1.3.3 or 1.4+, or use crun",
			"blocked_ms", p.cfg.BlockingStartAfter.Milliseconds())
	})
}

func (p *Plugin) postStartContainer(sb *api.PodSandbox, c *api.Container) {
	pd, m := p.current(sb, c)
	if m == nil {
		return
	}
	now := p.now()
	m.ts.StartedAt = &now
	if !m.ts.Held() {
		p.markReleased(pd, m, now)
	} else if m.ts.ReleasedAt == nil && !p.runtimeReported {
		p.runtimeReported = true
		p.log.Info("the container runtime returns from start while a container is held: holds do not stall kubelet",
			"pod", pd.ref, "container", c.Name)
	}
	p.write(pd, m)
	p.release(pd)
}

// markReleased records that m's own process runs, and starts its readiness probe; without a probe
// and without kubelet's word it is ready at once, as kubelet treats a container without a probe.
func (p *Plugin) markReleased(pd *pod, m *member, now time.Time) {
	m.ts.ReleasedAt = &now
	if p.probed(pd, m) {
		p.startProbe(pd, m)
	}
	p.refreshReady(pd, m, now)
}

// probed reports whether m's readiness comes from a podorder probe: only when it declares one and a
// container of the pod waits for it to be ready, so that probes nobody needs never cost the node.
func (p *Plugin) probed(pd *pod, m *member) bool {
	if m.hold == nil || m.hold.Probe == nil || m.probeRefused || p.prober == nil {
		return false
	}
	for _, h := range pd.decl.Holds {
		for _, d := range h.After {
			if d.Container == m.ts.Container && d.Condition == condition.Ready {
				return true
			}
		}
	}
	return false
}

func (p *Plugin) startProbe(pd *pod, m *member) {
	if m.stopProbe != nil {
		return
	}
	probe := m.hold.Probe
	stop, err := p.prober.Start(pd.netns, probe, func() {
		defer p.recoverCallback("probe")
		p.mu.Lock()
		defer p.mu.Unlock()
		if pd.members[m.ts.Container] != m || m.ts.ExitedAt != nil || m.ts.ProbeReadyAt != nil {
			return
		}
		now := p.now()
		m.ts.ProbeReadyAt = &now
		m.stopProbe = nil
		p.logger(pd, m.ts.Container).Info("probe passed", "probe", probe.String())
		p.refreshReady(pd, m, now)
		p.write(pd, m)
		p.release(pd)
	})
	if err != nil {
		m.probeRefused = true
		p.logger(pd, m.ts.Container).Error("cannot probe; readiness comes from kubelet, or from the release without the API", "probe", probe.String(), "error", err)
		p.event(pd, true, ReasonProbeRefused, "the probe %s of container %s cannot run: %v; its readiness comes from kubelet instead", probe, m.ts.Container, err)
		return
	}
	m.stopProbe = stop
}

func (p *Plugin) stopContainer(sb *api.PodSandbox, c *api.Container) {
	pd, m := p.current(sb, c)
	if m == nil || m.ts.ExitedAt != nil {
		return
	}
	if m.ts.StartedAt == nil && m.ts.HoldDeadline == nil && c.StartedAt == 0 {
		p.undoCreate(pd, m)
		return
	}
	now := p.now()
	m.markExited(now, c.ExitCode)
	log := p.logger(pd, c.Name)
	if m.ts.Held() && m.ts.ReleasedAt == nil && m.ts.HoldDeadline != nil {
		missing := p.missing(pd, m)
		log.Warn("hold ended without release: the hook timed out, a dependency failed, or the container was stopped; "+
			"the hook's reason is in the container's log",
			"waits_for", waitsFor(m.ts.WaitsFor), "exit_code", c.ExitCode, "missing", missing)
		switch {
		case m.ts.HoldFailed != "" || p.anyFailed(pd, m):
			p.event(pd, true, ReasonDependencyFailed, "container %s will not start: %s (reason: kubectl logs --previous -c %s)", c.Name, missing, c.Name)
		case c.ExitCode == hookFailedExitCode || !now.Before(*m.ts.HoldDeadline):
			p.event(pd, true, ReasonTimeout, "container %s was not released within %s: %s; it exits and restarts per its restartPolicy (reason: kubectl logs --previous -c %s)",
				c.Name, time.Duration(m.ts.HoldTimeout), missing, c.Name)
		}
	} else {
		log.Debug("exited", "exit_code", c.ExitCode)
	}
	p.stopped(pd, m, c.ExitCode, now)
	p.write(pd, m)
	p.stopBound(pd, m, c.ExitCode)
	p.release(pd)
}

// undoCreate forgets an attempt that never started: the runtime undid its creation (another plugin
// or a validator refused it) or removes it unstarted. Its exit code 0 means nothing, so it must not
// count as completed; the previous attempt, if any, is the newest again.
func (p *Plugin) undoCreate(pd *pod, m *member) {
	name := m.ts.Container
	m.endProbe()
	log := p.logger(pd, name)
	if m.ts.Held() && m.ts.HoldDeadline == nil {
		// The runtime refused the adjustment podorder returned; containerd's error (in the CRI
		// error, kubelet's CreateContainerError) names who. The usual one is worth saying here.
		log.Warn("creation undone or never started; forgetting this attempt. If containerd's NRI validator has "+
			"reject_oci_hook_adjustment = true, podorder cannot hold containers: holds are OCI hooks", "container_id", m.ts.ID)
	} else {
		log.Info("creation undone or never started; forgetting this attempt", "container_id", m.ts.ID)
	}
	if m.prev != nil {
		pd.members[name] = m.prev
		p.write(pd, m.prev)
		p.release(pd)
		return
	}
	delete(pd.members, name)
	if err := p.store.Remove(pd.uid, name); err != nil {
		log.Error("cannot remove tombstone", "error", err)
	}
	p.release(pd)
}

// removeContainer forgets a container the runtime removed, and the whole pod with its last one when
// the runtime will not say that the pod itself is gone.
func (p *Plugin) removeContainer(sb *api.PodSandbox, c *api.Container) {
	pd := p.pods[sb.Uid]
	if pd == nil {
		return
	}
	delete(pd.containers, c.Id)
	p.logger(pd, c.Name).Debug("removed", "container_id", c.Id, "containers_left", len(pd.containers), "adopted", pd.adopted)
	if pd.adopted && len(pd.containers) == 0 {
		p.log.Info("the last container of a pod adopted at a resynchronization was removed; removing its tombstones",
			"pod", pd.ref)
		p.removePod(pd.uid)
	}
}

func (p *Plugin) removePod(uid string) {
	if pd := p.pods[uid]; pd != nil {
		for _, stop := range pd.watches {
			stop()
		}
		for _, m := range pd.members {
			m.endProbe()
			m.untrack()
		}
		delete(p.pods, uid)
	}
	if err := p.store.RemovePod(uid); err != nil {
		p.log.Error("cannot remove tombstones", "pod_uid", uid, "error", err)
	}
}

// deadlineMargin is how much earlier than the hook's deadline the daemon stops releasing: room for
// the tombstone write to land before the hook's final read.
const deadlineMargin = 500 * time.Millisecond

// holdDeadline is the last moment the daemon may release a hold of timeout that started no earlier
// than start. The hook's clock starts after start, and the hook reads the tombstones once more at
// its deadline: every release the daemon records is obeyed.
func holdDeadline(start time.Time, timeout time.Duration) time.Time {
	return start.Add(timeout - deadlineMargin)
}

// release records, for every held container whose dependencies are all met, that it may start,
// repeating until nothing changes so that a chain a → b → c resolves in one call. The daemon alone
// decides; the hook only obeys what is recorded for its own attempt, so the two cannot disagree.
// A hold whose dependency can no longer be met is recorded as failed, which ends it at once.
func (p *Plugin) release(pd *pod) {
	// A release written into a directory that was removed and made again would never reach a hook
	// that has the old one mounted: find out before deciding.
	if _, err := os.Stat(p.store.PodDir(pd.uid)); errors.Is(err, fs.ErrNotExist) {
		if err := p.restore(pd); err != nil {
			p.log.Error("cannot restore the pod's tombstones", "pod", pd.ref, "error", err)
		}
	}
	for changed := true; changed; {
		changed = false
		for _, name := range sortedNames(pd.members) {
			m := pd.members[name]
			ts := m.ts
			if !ts.Held() || ts.HoldDeadline == nil || ts.ReleasedAt != nil || ts.ExitedAt != nil || ts.HoldFailed != "" || m.blind {
				continue
			}
			now := p.now()
			if !now.Before(*ts.HoldDeadline) {
				continue // the hook gives up at its own deadline; its exit is recorded by StopContainer
			}
			if p.anyFailed(pd, m) {
				ts.HoldFailed = p.missing(pd, m)
				p.logger(pd, name).Warn("hold failed: a dependency can no longer be met", "missing", ts.HoldFailed)
				p.write(pd, m)
				continue
			}
			if !p.allMet(pd, ts.WaitsFor) {
				continue
			}
			p.markReleased(pd, m, now)
			p.logger(pd, name).Info("released", "container_id", ts.ID, "waits_for", waitsFor(ts.WaitsFor), "elapsed_ms", now.Sub(*ts.CreatedAt).Milliseconds())
			p.event(pd, false, ReasonReleased, "container %s released %dms after its creation: %s met", name, now.Sub(*ts.CreatedAt).Milliseconds(), describe(m.hold))
			p.write(pd, m)
			changed = true
		}
	}
}

func (p *Plugin) allMet(pd *pod, deps []condition.Dependency) bool {
	for _, d := range deps {
		if condition.Evaluate(d.Condition, pd.state(d.Container)) != condition.Met {
			return false
		}
	}
	return true
}

// hookFailedExitCode is the exit code runc gives a container whose startContainer hook failed.
const hookFailedExitCode = 255

// anyFailed reports whether a dependency of m can no longer be met by its current attempt.
func (p *Plugin) anyFailed(pd *pod, m *member) bool {
	for _, d := range m.ts.WaitsFor {
		if condition.Evaluate(d.Condition, pd.state(d.Container)) == condition.Failed {
			return true
		}
	}
	return false
}

// missing describes the unmet dependencies of m, for logs and Events.
func (p *Plugin) missing(pd *pod, m *member) string {
	var out []string
	for _, d := range m.ts.WaitsFor {
		s := pd.state(d.Container)
		if condition.Evaluate(d.Condition, s) == condition.Met {
			continue
		}
		if dm := pd.members[d.Container]; dm != nil && dm.ts.PodSelector != "" {
			out = append(out, fmt.Sprintf("no pod matching %s is %s", dm.ts.PodSelector, d.Condition))
			continue
		}
		out = append(out, condition.Describe(d, s))
	}
	return strings.Join(out, "; ")
}

// describe lists a hold's dependencies for people: "db (ready), pod(app=mysql):ready".
func describe(h *decl.Hold) string {
	if h == nil {
		return ""
	}
	onPods := map[string]string{}
	for _, d := range h.Pods {
		onPods[d.Name] = d.String()
	}
	var out []string
	for _, d := range h.After {
		if s, ok := onPods[d.Container]; ok {
			out = append(out, s)
		} else {
			out = append(out, fmt.Sprintf("%s (%s)", d.Container, d.Condition))
		}
	}
	return strings.Join(out, ", ")
}

func (pd *pod) state(container string) condition.State {
	if m := pd.members[container]; m != nil {
		return m.ts.State()
	}
	return condition.State{}
}

func (p *Plugin) write(pd *pod, m *member) {
	if err := p.persist(pd, m); err != nil {
		// Waiters keep waiting on the previous state; the next write retries with the full state.
		p.logger(pd, m.ts.Container).Error("cannot write tombstone", "error", err)
		return
	}
	p.wakeWaiters(pd, m)
}

// persist writes m's tombstone, and the whole pod's again if the store was removed under the daemon.
func (p *Plugin) persist(pd *pod, m *member) error {
	err := p.store.Write(pd.uid, m.ts)
	if errors.Is(err, fs.ErrNotExist) {
		err = p.restore(pd)
	}
	return err
}

// restore rewrites a pod's directory and every tombstone of it from memory, after someone removed
// the store under the daemon. Containers created from now on see it again; a container held since
// before the removal has the old, deleted directory mounted and ends its hold at its timeout.
func (p *Plugin) restore(pd *pod) error {
	if _, err := p.store.EnsurePod(pd.uid); err != nil {
		return err
	}
	for _, m := range pd.members {
		if err := p.store.Write(pd.uid, m.ts); err != nil {
			return err
		}
		if m.ts.Held() && m.ts.ReleasedAt == nil && m.ts.ExitedAt == nil {
			p.markBlind(pd, m)
		}
	}
	p.log.Warn("the tombstone store was removed under podorder; rewrote the pod's tombstones", "pod", pd.ref)
	return nil
}

// markBlind stops releasing m, whose hook reads a store directory that no longer exists. The hook
// then ends the hold at its timeout, the container exits and kubelet starts a new attempt, which
// sees the new directory. A container still running well past its hold's end must have been let go
// by its hook (else the runtime would have ended it): only then does it count as released.
func (p *Plugin) markBlind(pd *pod, m *member) {
	if m.blind {
		return
	}
	m.blind = true
	name := m.ts.Container
	end := m.ts.CreatedAt.Add(time.Duration(m.ts.HoldTimeout) + hookGrace + time.Second)
	p.logger(pd, name).Warn("held since before the store was removed: its hook cannot see a release; it ends at its timeout",
		"container_id", m.ts.ID, "counted_running_after", end.Format(time.RFC3339))
	time.AfterFunc(time.Until(end), func() {
		defer p.recoverCallback("blind hold end")
		p.mu.Lock()
		defer p.mu.Unlock()
		if p.pods[pd.uid] != pd || pd.members[name] != m || m.ts.ExitedAt != nil || m.ts.ReleasedAt != nil {
			return
		}
		now := p.now()
		p.markReleased(pd, m, now)
		p.logger(pd, name).Info("released", "container_id", m.ts.ID, "reason", "still running past its hold's end, so its hook let it go")
		p.write(pd, m)
		p.release(pd)
	})
}

// wakeWaiters makes the hooks of the pod's held containers re-read the tombstones after changed's
// was written. changed's own hook is woken too: its release is written into its own tombstone. While
// the pod is being deleted, the preStop hooks of running containers wait for their dependents' exits.
func (p *Plugin) wakeWaiters(pd *pod, changed *member) {
	for name, m := range pd.members {
		if !m.wakes || m.ts.ExitedAt != nil || (m != changed && m.ts.ReleasedAt != nil && !pd.terminating) {
			continue
		}
		if err := p.store.Wake(pd.uid, name); err != nil {
			p.logger(pd, name).Warn("cannot wake the hook; it wakes at its timeout at the latest", "error", err)
		}
	}
}

func waitsFor(deps []condition.Dependency) []string {
	out := make([]string, len(deps))
	for i, d := range deps {
		out[i] = d.String()
	}
	return out
}

func sortedNames(m map[string]*member) []string {
	names := make([]string, 0, len(m))
	for n := range m {
		names = append(names, n)
	}
	sort.Strings(names)
	return names
}

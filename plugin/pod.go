package plugin

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"slices"
	"syscall"
	"time"

	"github.com/containerd/nri/pkg/api"

	"github.com/podorder/podorder/plugin/decl"
	"github.com/podorder/podorder/plugin/kubeapi"
	"github.com/podorder/podorder/plugin/podstate"
	"github.com/podorder/podorder/plugin/stopper"
)

// pod is one pod that uses podorder: its state machine, and what the shell holds for it (watches,
// probes, process handles, timers), which the state machine only names.
type pod struct {
	*podstate.Pod
	// sandbox is the ID of the pod sandbox its containers are created in now: kubelet replaces a
	// pod's sandbox when it dies, keeping the pod's UID.
	sandbox string
	// netns is that sandbox's network namespace ("" for the node's); netnsErr says why it is
	// unknown, and then no probe runs.
	netns    string
	netnsErr error
	// watches maps the synthetic name of a dependency on other pods to the end of its watch.
	watches map[string]func()
	// probes, procs and kills hold each attempt's running probe, process handle and pending SIGKILL.
	probes map[*podstate.Attempt]func()
	procs  map[*podstate.Attempt]Process
	kills  map[*podstate.Attempt]*time.Timer
	// signals holds each attempt's notify socket or path watch.
	signals map[*podstate.Attempt]*signalWatch
	// containers holds the IDs of the pod's containers that the runtime has not removed.
	containers map[string]bool
	// stepStart is when the event being handled arrived, for the release latency.
	stepStart time.Time
	// adopted marks a pod found at a Synchronize: after a runtime restart, containerd 2.4 sends no
	// RemovePodSandbox for it, so its tombstones go when its last container is removed.
	adopted bool
}

func (p *Plugin) podFor(sb *api.PodSandbox) (*pod, error) {
	if pd := p.pods[sb.Uid]; pd != nil {
		// The store may have been removed under the daemon: a new container must get a directory
		// that exists to be bind-mounted, holding every tombstone of its pod.
		if err := p.ensureDir(pd); err != nil {
			return nil, err
		}
		return pd, nil
	}
	if _, err := p.store.EnsurePod(sb.Uid); err != nil {
		return nil, err
	}
	_, host, _ := netnsOf(sb, p.cfg.NodeNetwork)
	k := p.cfg.Kube
	node := podstate.Node{
		Probes:           p.prober != nil,
		HostNetwork:      host,
		ProbeHostNetwork: p.cfg.ProbeHostNetwork,
		API:              k != nil,
		PodWatches:       k != nil && k.Pods != nil,
		CrossNamespace:   p.cfg.CrossNamespace,
		StopWith:         p.cfg.Processes != nil,
	}
	var spec, lastApplied []decl.Container
	if k != nil && k.Specs != nil {
		spec, _ = k.Specs.Containers(sb.Uid)
	}
	if spec == nil {
		lastApplied, _ = decl.ContainersFromLastApplied(sb.Annotations)
	}
	pd := &pod{
		Pod:        podstate.New(sb.Uid, sb.Namespace, sb.Name, decl.Parse(sb.Labels, sb.Annotations), node, spec, lastApplied),
		watches:    map[string]func(){},
		probes:     map[*podstate.Attempt]func(){},
		procs:      map[*podstate.Attempt]Process{},
		kills:      map[*podstate.Attempt]*time.Timer{},
		signals:    map[*podstate.Attempt]*signalWatch{},
		containers: map[string]bool{},
	}
	p.pods[sb.Uid] = pd
	p.follow(pd, sb)
	return pd, nil
}

func (p *Plugin) logger(pd *pod, container string) *slog.Logger {
	if container == "" {
		return p.log.With("pod", pd.Ref)
	}
	return p.log.With("pod", pd.Ref, "container", container)
}

// createContainer asks the pod's state whether and how the container is held, prepares what it
// needs (its wake FIFO, watches of other pods, its tombstone) and returns its adjustment.
func (p *Plugin) createContainer(sb *api.PodSandbox, c *api.Container) (*api.ContainerAdjustment, error) {
	ref := sb.Namespace + "/" + sb.Name
	pd, err := p.podFor(sb)
	if err != nil {
		p.log.Error("cannot prepare tombstones; rejecting container", "pod", ref, "container", c.Name, "error", err)
		return nil, rejection(ref, c.Name, err)
	}
	p.follow(pd, sb)
	log := p.logger(pd, c.Name)
	adm, err := pd.Admit(created(c, p.now()))
	if err != nil {
		err = rejection(ref, c.Name, err)
		p.apply(pd, podstate.Refused(c.Name, err))
		return nil, err
	}
	a := adm.A
	var wakeDir string
	if adm.Mounts {
		if wakeDir, err = p.store.EnsureWake(pd.UID, c.Name); err != nil {
			log.Error("cannot create the wake FIFO; rejecting container", "error", err)
			return nil, rejection(ref, c.Name, err)
		}
	}
	if err := p.watchPodDependencies(pd, adm.Watch); err != nil {
		log.Error("cannot record pod dependencies; rejecting container", "error", err)
		return nil, rejection(ref, c.Name, err)
	}
	var notify *signalWatch
	var notifyErr error
	if adm.Notify {
		notify, notifyErr = p.openNotify(pd, c.Id)
	}
	if err := p.add(pd, a); err != nil {
		log.Error("cannot record container; rejecting it", "error", err)
		p.endSignal(pd, a, notify)
		return nil, rejection(ref, c.Name, err)
	}
	pd.containers[c.Id] = true
	if notifyErr != nil {
		p.apply(pd, pd.SignalRefused(a, notifyErr, p.now()))
	} else if notify != nil {
		pd.signals[a] = notify
	}
	target := HoldTarget{Pod: ref, Container: c.Name, ID: c.Id, PodDir: p.store.PodDir(pd.UID), WakeDir: wakeDir}
	var adj *api.ContainerAdjustment
	switch {
	case a.TS.Held():
		adj = Adjustment(p.cfg.HookBinary, target, a.Declared)
	case adm.Mounts:
		// Only for its preStop hook, which waits for its dependents when the pod is deleted.
		adj = Mounts(p.cfg.HookBinary, target)
	}
	if notify != nil {
		adj = addNotify(adj, notify.dir)
	}
	return adj, nil
}

// signalWatch is what the shell holds for an attempt's readiness signal: its notify socket and
// directory, or the stop of its path watch.
type signalWatch struct {
	socket NotifySocket
	dir    string
	id     string
	stop   func()
}

// openNotify makes a container attempt's notify socket, in a directory of its own.
func (p *Plugin) openNotify(pd *pod, id string) (*signalWatch, error) {
	if p.cfg.Signals == nil {
		return nil, errors.New("this podorder runs without readiness signals")
	}
	dir, err := p.store.EnsureNotify(pd.UID, id)
	if err != nil {
		return nil, err
	}
	s, err := p.cfg.Signals.OpenNotify(pd.UID, dir)
	if err != nil {
		p.store.RemoveNotify(pd.UID, id) //nolint:errcheck // best effort; the pod's removal takes it anyway
		return nil, err
	}
	return &signalWatch{socket: s, dir: dir, id: id}, nil
}

// reopenNotify binds an attempt's notify socket again after a restart of the daemon, whose socket
// went with it: at the same path, in the directory the container has mounted since its creation.
// The directory must still be there — one made anew would not be the one mounted.
func (p *Plugin) reopenNotify(pd *pod, id string) (*signalWatch, error) {
	if p.cfg.Signals == nil {
		return nil, errors.New("this podorder runs without readiness signals")
	}
	fi, err := os.Stat(p.store.NotifyDir(pd.UID, id))
	if err == nil && !fi.IsDir() {
		err = errors.New("not a directory")
	}
	if err != nil {
		return nil, fmt.Errorf("bind its notify socket again: the directory mounted into it at its creation is gone: %w", err)
	}
	dir, err := p.store.EnsureNotify(pd.UID, id) // validates the ID read from the tombstone
	if err != nil {
		return nil, err
	}
	s, err := p.cfg.Signals.OpenNotify(pd.UID, dir)
	if err != nil {
		return nil, err
	}
	return &signalWatch{socket: s, dir: dir, id: id}, nil
}

// watchSignal starts watching for a's readiness signal from its process pid on.
func (p *Plugin) watchSignal(pd *pod, a *podstate.Attempt, pid uint32) error {
	seen := func() {
		p.podEvent("readiness signal", pd.UID, pd, func(pd *pod, now time.Time) []podstate.Effect { return pd.SignalSeen(a, now) })
	}
	switch {
	case a.Signal.Kind == decl.ReadinessNotify:
		w := pd.signals[a]
		if w == nil {
			var err error
			if w, err = p.reopenNotify(pd, a.TS.ID); err != nil {
				return err
			}
			pd.signals[a] = w
		}
		return w.socket.Arm(pid, seen)
	case p.cfg.Signals == nil:
		return errors.New("this podorder runs without readiness signals")
	}
	stop, err := p.cfg.Signals.WatchFile(pd.UID, pid, a.Signal.Path, seen)
	if err != nil {
		return err
	}
	pd.signals[a] = &signalWatch{stop: stop}
	return nil
}

// endSignal ends w, a's readiness signal watch, and removes its notify directory.
func (p *Plugin) endSignal(pd *pod, a *podstate.Attempt, w *signalWatch) {
	if w == nil {
		return
	}
	delete(pd.signals, a)
	if w.stop != nil {
		w.stop()
	}
	if w.socket != nil {
		w.socket.Close()
		if err := p.store.RemoveNotify(pd.UID, w.id); err != nil {
			p.logger(pd, a.Name()).Warn("cannot remove the notify socket's directory; it goes with the pod", "error", err)
		}
	}
}

// created is the runtime's container attempt as podstate takes it.
func created(c *api.Container, at time.Time) podstate.Created {
	return podstate.Created{Name: c.Name, ID: c.Id, Attempt: attemptOf(c), At: at, Grace: podGrace(c.Annotations)}
}

// add writes a's tombstone and then makes it the newest attempt of its container; on an error
// nothing changes.
func (p *Plugin) add(pd *pod, a *podstate.Attempt) error {
	if err := p.persist(pd, a); err != nil {
		return err
	}
	p.apply(pd, pd.Added(a))
	p.apply(pd, pd.ConditionUpdate(p.now()))
	return nil
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
			"pod", pd.Ref)
		p.removePod(pd.UID)
	}
}

func (p *Plugin) removePod(uid string) {
	if pd := p.pods[uid]; pd != nil {
		for _, stop := range pd.watches {
			stop()
		}
		for a := range pd.probes {
			p.endProbe(pd, a)
		}
		for a := range pd.procs {
			p.untrack(pd, a)
		}
		for a := range pd.kills {
			p.untrack(pd, a)
		}
		for a, w := range pd.signals {
			p.endSignal(pd, a, w)
		}
		p.keepTimeline(pd)
		delete(p.pods, uid)
	}
	if k := p.cfg.Kube; k != nil && k.Conditions != nil {
		k.Conditions.Forget(uid)
	}
	if err := p.store.RemovePod(uid); err != nil {
		p.log.Error("cannot remove tombstones", "pod_uid", uid, "error", err)
	}
}

// step runs one event of pd's state machine and carries out its effects. The store is checked
// first: a release decided for a directory that was removed and made again would never reach a
// hook that has the old one mounted, so such holds are marked blind before anything is decided.
func (p *Plugin) step(pd *pod, event func(now time.Time) []podstate.Effect) {
	if err := p.ensureDir(pd); err != nil {
		p.log.Error("cannot restore the pod's tombstones", "pod", pd.Ref, "error", err)
	}
	pd.stepStart = time.Now()
	p.apply(pd, event(p.now()))
	p.apply(pd, pd.ConditionUpdate(p.now()))
}

// apply carries out effects in order; effects that fail may add events, whose effects follow. The
// hooks' wake-ups and the log lines come last, once each: they are on the path from a release to
// the container's process, where a hook woken before its own release is written reads the old
// tombstone and sleeps again, and a line written to a slow stderr would delay the release behind it.
func (p *Plugin) apply(pd *pod, effects []podstate.Effect) {
	var wakes []string
	var logs []podstate.Log
	// Deferred, so that a panic in a later effect (recovered by the caller) does not leave the
	// tombstones written and the hooks asleep until their own re-read.
	defer func() {
		for _, c := range wakes {
			if err := p.store.Wake(pd.UID, c); err != nil {
				p.logger(pd, c).Warn("cannot wake the hook; it wakes at its timeout at the latest", "error", err)
			}
		}
		for _, e := range logs {
			p.logger(pd, e.Container).Log(context.Background(), e.Level, e.Msg, e.Args...)
		}
	}()
	for i := 0; i < len(effects); i++ {
		switch e := effects[i].(type) {
		case podstate.Write:
			if err := p.persist(pd, e.A); err != nil {
				// Waiters keep waiting on the previous state; the next write retries with the full state.
				p.logger(pd, e.A.Name()).Error("cannot write tombstone", "error", err)
				if p.cfg.Metrics != nil {
					p.cfg.Metrics.StoreWriteFailed()
				}
			}
		case podstate.Remove:
			if err := p.store.Remove(pd.UID, e.Container); err != nil {
				p.logger(pd, e.Container).Error("cannot remove tombstone", "error", err)
			}
		case podstate.Wake:
			if !slices.Contains(wakes, e.Container) {
				wakes = append(wakes, e.Container)
			}
		case podstate.Record:
			p.event(pd, e.Warning, e.Reason, "%s", e.Message)
		case podstate.Log:
			logs = append(logs, e)
		case podstate.StartProbe:
			if err := p.startProbe(pd, e.A); err != nil {
				effects = append(effects, pd.ProbeRefused(e.A, err, p.now())...)
			}
		case podstate.EndProbe:
			p.endProbe(pd, e.A)
		case podstate.WatchSignal:
			if err := p.watchSignal(pd, e.A, e.PID); err != nil {
				effects = append(effects, pd.SignalRefused(e.A, err, p.now())...)
			}
		case podstate.EndSignal:
			p.endSignal(pd, e.A, pd.signals[e.A])
		case podstate.Signal:
			if err := p.signal(pd, e.A, e.Signal); err != nil {
				effects = append(effects, pd.SignalFailed(e.A, err, errors.Is(err, stopper.ErrExited))...)
			}
		case podstate.ArmKill:
			a, st := e.A, e.Stop
			pd.kills[a] = time.AfterFunc(e.After, func() {
				p.podEvent("stop grace", pd.UID, pd, func(pd *pod, _ time.Time) []podstate.Effect { return pd.GraceEnded(a, st) })
			})
		case podstate.ArmBlindEnd:
			a := e.A
			time.AfterFunc(time.Until(e.At), func() {
				p.podEvent("blind hold end", pd.UID, pd, func(pd *pod, now time.Time) []podstate.Effect { return pd.HoldOutlived(a, now) })
			})
		case podstate.ArmRuntimeCheck:
			a := e.A
			time.AfterFunc(p.cfg.BlockingStartAfter, func() {
				p.podEvent("blocking-start check", pd.UID, pd, func(pd *pod, _ time.Time) []podstate.Effect { return pd.RuntimeCheckDue(a) })
			})
		case podstate.RuntimeFinding:
			p.reportRuntime(pd, e)
		case podstate.Track:
			p.track(pd, e.A, e.PID)
		case podstate.SetCondition:
			if k := p.cfg.Kube; k != nil && k.Conditions != nil {
				k.Conditions.Set(kubeapi.PodRef{Namespace: pd.Namespace, Name: pd.Name, UID: pd.UID}, e.Condition)
			}
		case podstate.HoldEnded:
			if m := p.cfg.Metrics; m != nil {
				m.HoldEnded(e.Outcome, e.Held)
				if e.Outcome == podstate.OutcomeReleased {
					m.Released(time.Since(pd.stepStart))
				}
			}
		case podstate.Forget:
			p.untrack(pd, e.A)
		case podstate.MarkTerminating:
			if err := p.store.MarkTerminating(pd.UID); err != nil {
				p.log.Error("cannot mark the pod terminating: its containers stop without waiting for their dependents", "pod", pd.Ref, "error", err)
			}
		default:
			panic(fmt.Sprintf("podorder: unknown effect %T", e))
		}
	}
}

// follow makes sb the pod's sandbox, where its new containers run and its probes look.
func (p *Plugin) follow(pd *pod, sb *api.PodSandbox) {
	if pd.sandbox == sb.Id {
		return
	}
	if pd.sandbox != "" {
		p.log.Info("the pod has a new sandbox; probing in its network namespace", "pod", pd.Ref, "sandbox", sb.Id, "previous_sandbox", pd.sandbox)
	}
	pd.sandbox = sb.Id
	pd.netns, _, pd.netnsErr = netnsOf(sb, p.cfg.NodeNetwork)
}

func (p *Plugin) startProbe(pd *pod, a *podstate.Attempt) error {
	if pd.probes[a] != nil || p.prober == nil {
		return nil
	}
	if pd.netnsErr != nil {
		// Never from the node's network instead: a port open there would release the dependents.
		return fmt.Errorf("cannot probe: %w", pd.netnsErr)
	}
	stop, err := p.prober.StartPod(pd.Namespace, pd.UID, pd.netns, a.Probe, func() {
		p.podEvent("probe", pd.UID, pd, func(pd *pod, now time.Time) []podstate.Effect {
			delete(pd.probes, a)
			return pd.ProbePassed(a, now)
		})
	})
	if err != nil {
		return err
	}
	pd.probes[a] = stop
	return nil
}

func (p *Plugin) endProbe(pd *pod, a *podstate.Attempt) {
	if stop := pd.probes[a]; stop != nil {
		stop()
		delete(pd.probes, a)
	}
}

// persist writes a's tombstone, and the whole pod's again if the store was removed under the daemon.
func (p *Plugin) persist(pd *pod, a *podstate.Attempt) error {
	err := p.store.Write(pd.UID, a.TS)
	if errors.Is(err, fs.ErrNotExist) {
		err = p.restore(pd)
		if err == nil {
			err = p.store.Write(pd.UID, a.TS)
		}
	}
	return err
}

// ensureDir restores the pod's directory if someone removed the store under the daemon.
func (p *Plugin) ensureDir(pd *pod) error {
	if _, err := os.Stat(p.store.PodDir(pd.UID)); errors.Is(err, fs.ErrNotExist) {
		return p.restore(pd)
	}
	return nil
}

// restore rewrites a pod's directory and every tombstone of it from memory, after someone removed
// the store under the daemon. Containers created from now on see it again; a container held since
// before the removal has the old, deleted directory mounted and is never released (podstate.StoreRecreated).
func (p *Plugin) restore(pd *pod) error {
	if _, err := p.store.EnsurePod(pd.UID); err != nil {
		return err
	}
	for _, a := range pd.Attempts {
		if err := p.store.Write(pd.UID, a.TS); err != nil {
			return err
		}
	}
	p.log.Warn("the tombstone store was removed under podorder; rewrote the pod's tombstones", "pod", pd.Ref)
	p.apply(pd, pd.StoreRecreated())
	return nil
}

// signal sends sig to a's process through the handle taken at its start.
func (p *Plugin) signal(pd *pod, a *podstate.Attempt, sig syscall.Signal) error {
	proc := pd.procs[a]
	if proc == nil {
		return errors.New("no handle on its process; see podorder's log")
	}
	return proc.Signal(sig)
}

// reportRuntime logs, once for the node, how the container runtime treats a held container's start.
func (p *Plugin) reportRuntime(pd *pod, f podstate.RuntimeFinding) {
	if p.runtimeReported {
		return
	}
	p.runtimeReported = true
	if p.cfg.RuntimeJudged != nil {
		p.cfg.RuntimeJudged(f.Blocking, p.cfg.BlockingStartAfter, fmt.Sprintf("pod %s, container %s", pd.Ref, f.Container))
		return
	}
	if !f.Blocking {
		p.logger(pd, f.Container).Info("the container runtime returns from start while a container is held: holds do not stall kubelet")
		return
	}
	p.logger(pd, f.Container).Error("the container runtime blocks StartContainer while a container is held: "+
		"kubelet stalls the whole pod (and the probes of its other containers) until the hold ends. "+
		"This runc runs startContainer hooks before `runc start` returns; upgrade to runc >= 1.2.8, >= 1.3.3 or 1.4+, or use crun",
		"blocked_ms", p.cfg.BlockingStartAfter.Milliseconds())
}

// keepTimeline keeps a removed pod's timeline, and the last podstate.KeptTimelines only.
func (p *Plugin) keepTimeline(pd *pod) {
	r := pd.TimelineAt(p.now())
	r.Removed = true
	if len(p.finished) >= podstate.KeptTimelines {
		p.finished = append(p.finished[:0], p.finished[1:]...)
	}
	p.finished = append(p.finished, r)
}

package plugin

import (
	"time"

	"github.com/containerd/nri/pkg/api"

	"github.com/podorder/podorder/hooks/tombstone"
	"github.com/podorder/podorder/plugin/decl"
	"github.com/podorder/podorder/plugin/podstate"
)

// synchronize rebuilds the plugin's view after a restart of the daemon or of the runtime: tombstones
// on disk keep what podorder decided (who is held, for what); the runtime's containers say what
// happened while podorder was away (starts and exits). Holds are then re-evaluated, so a held
// container is released when — and not before — its dependencies are met.
func (p *Plugin) synchronize(pods []*api.PodSandbox, containers []*api.Container) {
	began := time.Now()
	live := map[string]*api.PodSandbox{}
	byID := map[string]*api.PodSandbox{}
	latest := map[string]int64{} // sandbox ID → its newest container's creation
	for _, c := range containers {
		latest[c.PodSandboxId] = max(latest[c.PodSandboxId], c.CreatedAt)
	}
	for _, sb := range pods {
		byID[sb.Id] = sb
		if usesPodorder(sb) && current(sb, live[sb.Uid], latest) {
			live[sb.Uid] = sb
		}
	}
	uids, err := p.store.Pods()
	if err != nil {
		p.log.Error("cannot list tombstones", "error", err)
	}
	for _, uid := range uids {
		if live[uid] == nil {
			p.removePod(uid)
		}
	}
	for uid := range p.pods {
		if live[uid] == nil {
			p.removePod(uid)
		}
	}

	newest := map[string]map[string]*api.Container{} // pod UID → name → newest attempt
	ids := map[string][]string{}                     // pod UID → every container ID
	for _, c := range containers {
		sb := byID[c.PodSandboxId]
		if sb == nil || live[sb.Uid] == nil {
			continue
		}
		ids[sb.Uid] = append(ids[sb.Uid], c.Id)
		if newest[sb.Uid] == nil {
			newest[sb.Uid] = map[string]*api.Container{}
		}
		if prev := newest[sb.Uid][c.Name]; prev == nil || c.CreatedAt > prev.CreatedAt {
			newest[sb.Uid][c.Name] = c
		}
	}

	held := 0
	for uid, sb := range live {
		pd, err := p.podFor(sb)
		if err != nil {
			p.log.Error("cannot prepare tombstones", "pod", sb.Namespace+"/"+sb.Name, "error", err)
			continue
		}
		p.follow(pd, sb)
		pd.adopted = true
		for _, id := range ids[uid] {
			pd.containers[id] = true
		}
		p.loadTombstones(pd)
		for _, c := range newest[uid] {
			p.syncContainer(pd, c)
		}
		// containerd 2.4 lists no exited container to NRI: an attempt that exited while podorder
		// was away (a daemon restart, a DaemonSet rollout) is known only by its absence.
		p.apply(pd, pd.Listed(ids[uid], p.now()))
		// The API's view of the pod catches up on what the runtime forgot: the exit codes of
		// attempts gone, and attempts that ran and exited while podorder was away.
		if k := p.cfg.Kube; k != nil && k.Specs != nil {
			if obs, ok := k.Specs.Status(uid); ok {
				p.apply(pd, pd.Observed(obs, p.now()))
			}
		}
		for _, a := range pd.Attempts {
			if a.Holding() {
				held++
			}
		}
		if err := p.watchPodDependencies(pd, pd.PodWatches()); err != nil {
			p.logger(pd, "").Error("cannot watch pod dependencies", "error", err)
		}
		p.step(pd, pd.Resumed)
	}
	p.log.Info("synchronized with the runtime", "pods", len(live), "containers", len(containers), "held_containers", held,
		"elapsed_ms", time.Since(began).Milliseconds())
}

// current says whether sb, rather than other (nil or another sandbox of the same pod), is where the
// pod runs now: the sandbox with the newest container, else one whose namespaces the runtime knows.
// kubelet keeps an old sandbox of a pod until it collects it.
func current(sb, other *api.PodSandbox, latest map[string]int64) bool {
	if other == nil {
		return true
	}
	if latest[sb.Id] != latest[other.Id] {
		return latest[sb.Id] > latest[other.Id]
	}
	known := func(sb *api.PodSandbox) bool { return sb.Linux != nil && len(sb.Linux.Namespaces) > 0 }
	return known(sb) && !known(other)
}

// loadTombstones adopts what is on disk for containers the plugin does not know yet.
func (p *Plugin) loadTombstones(pd *pod) {
	all, err := tombstone.ReadDir(p.store.PodDir(pd.UID))
	if err != nil {
		p.log.Error("cannot read tombstones", "pod", pd.Ref, "error", err)
		return
	}
	for _, ts := range all {
		pd.Loaded(ts)
	}
}

// syncContainer brings the tombstone of the runtime's newest attempt of c up to date.
func (p *Plugin) syncContainer(pd *pod, c *api.Container) {
	a := pd.Current(c.Name, c.Id)
	if a == nil {
		// Created while podorder was away: it carries podorder's hook only if an earlier podorder
		// injected it.
		var effects []podstate.Effect
		a, effects = pd.Adopt(created(c, time.Unix(0, c.CreatedAt)), hasPodorderHook(c), c.State != api.ContainerState_CONTAINER_CREATED)
		if err := p.add(pd, a); err != nil {
			p.logger(pd, c.Name).Error("cannot record container", "error", err)
			return
		}
		p.apply(pd, effects)
	}
	f := podstate.Found{
		Started:   c.State == api.ContainerState_CONTAINER_RUNNING || c.State == api.ContainerState_CONTAINER_STOPPED,
		Running:   c.State == api.ContainerState_CONTAINER_RUNNING,
		PID:       c.Pid,
		Stopped:   c.State == api.ContainerState_CONTAINER_STOPPED,
		CreatedAt: time.Unix(0, c.CreatedAt),
		ExitCode:  c.ExitCode,
		Grace:     podGrace(c.Annotations),
		// The runtime reports the mounts it made, whoever asked for them.
		NotifyMounted: hasNotifyMount(c),
	}
	if c.StartedAt != 0 {
		f.StartedAt = time.Unix(0, c.StartedAt)
	}
	if c.FinishedAt != 0 {
		f.FinishedAt = time.Unix(0, c.FinishedAt)
	}
	p.apply(pd, pd.Resynced(a, f, p.now()))
}

func hasPodorderHook(c *api.Container) bool {
	if c.Hooks == nil {
		return false
	}
	for _, h := range c.Hooks.StartContainer {
		if h.Path == HookPath {
			return true
		}
	}
	return false
}

// hasNotifyMount reports whether c has a notify directory mounted where podorder mounts it.
func hasNotifyMount(c *api.Container) bool {
	for _, m := range c.Mounts {
		if m.Destination == NotifyPath {
			return true
		}
	}
	return false
}

func usesPodorder(sb *api.PodSandbox) bool {
	return decl.Uses(sb.Labels, sb.Annotations)
}

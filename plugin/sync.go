package plugin

import (
	"time"

	"github.com/containerd/nri/pkg/api"

	"github.com/podorder/podorder/decl"
	"github.com/podorder/podorder/tombstone"
)

// synchronize rebuilds the plugin's view after a restart of the daemon or of the runtime: tombstones
// on disk keep what podorder decided (who is held, for what); the runtime's containers say what
// happened while podorder was away (starts and exits). Holds are then re-evaluated, so a held
// container is released when — and not before — its dependencies are met.
func (p *Plugin) synchronize(pods []*api.PodSandbox, containers []*api.Container) {
	live := map[string]*api.PodSandbox{}
	byID := map[string]*api.PodSandbox{}
	for _, sb := range pods {
		byID[sb.Id] = sb
		if usesPodorder(sb) {
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
		pd.adopted = true
		for _, id := range ids[uid] {
			pd.containers[id] = true
		}
		p.loadTombstones(pd)
		for _, c := range newest[uid] {
			p.syncContainer(pd, c)
		}
		for _, m := range pd.members {
			ts := m.ts
			if ts.ReleasedAt != nil && ts.ProbeReadyAt == nil && ts.ExitedAt == nil && p.probed(pd, m) {
				p.startProbe(pd, m)
			}
			if ts.Held() && ts.ReleasedAt == nil && ts.ExitedAt == nil {
				held++
				if m.hold != nil && len(m.hold.Pods) > 0 && p.checkPodDependencies(pd.namespace, m.hold) == nil {
					if err := p.watchPodDependencies(pd, m.hold); err != nil {
						p.logger(pd, ts.Container).Error("cannot watch pod dependencies", "error", err)
					}
				}
			}
		}
		p.release(pd)
	}
	p.log.Info("synchronized with the runtime", "pods", len(live), "held_containers", held)
}

// loadTombstones adopts what is on disk for containers the plugin does not know yet.
func (p *Plugin) loadTombstones(pd *pod) {
	all, err := tombstone.ReadDir(p.store.PodDir(pd.uid))
	if err != nil {
		p.log.Error("cannot read tombstones", "pod", pd.ref, "error", err)
		return
	}
	for name, ts := range all {
		if pd.members[name] == nil {
			hold, _ := pd.decl.For(name)
			pd.members[name] = &member{ts: ts, hold: hold}
		}
	}
}

// syncContainer brings the tombstone of the runtime's newest attempt of c up to date.
func (p *Plugin) syncContainer(pd *pod, c *api.Container) {
	m := pd.members[c.Name]
	if m == nil || m.ts.ID != c.Id {
		// Created while podorder was away: it carries podorder's hook only if an earlier podorder
		// injected it, so judge the hold from the container itself.
		hold, _ := pd.decl.For(c.Name)
		hooked := hasPodorderHook(c)
		if hold != nil && len(hold.After) > 0 && !hooked {
			// NRI creates a container without a plugin that was not registered, or that died
			// during its CreateContainer (even with the fail-closed validator, which already
			// counted it present): this one runs without waiting for its dependencies.
			p.logger(pd, c.Name).Warn("created without podorder's hold while podorder was down or restarting: it started without waiting",
				"container_id", c.Id, "waits_for", waitsFor(hold.After))
			p.event(pd, true, ReasonUnheld, "container %s was created while podorder was not running and started without waiting for %s", c.Name, describe(hold))
		}
		m = &member{ts: newTombstone(c, hold, hooked && hold != nil, time.Unix(0, c.CreatedAt)), hold: hold}
		if err := p.replace(pd, m); err != nil {
			p.logger(pd, c.Name).Error("cannot record container", "error", err)
			return
		}
		if m.ts.Held() && c.State != api.ContainerState_CONTAINER_CREATED {
			// podorder wrote this attempt's tombstone before the runtime created it, so the store
			// was removed since: the hook, started already, has the old directory mounted.
			p.markBlind(pd, m)
		}
	}
	m.grace = podGrace(c.Annotations)
	m.wakes = m.ts.Held() || pd.decl.DependedOn(c.Name)
	if c.State == api.ContainerState_CONTAINER_RUNNING {
		p.track(pd, m, c.Pid)
	}
	ts := m.ts
	changed := false
	if ts.Held() && ts.HoldDeadline == nil && ts.ReleasedAt == nil && c.State != api.ContainerState_CONTAINER_CREATED && c.State != api.ContainerState_CONTAINER_UNKNOWN {
		// Started while podorder was away: the container's creation is surely before its hook's
		// start, so a deadline from there is never later than the hook's.
		deadline := holdDeadline(time.Unix(0, c.CreatedAt), time.Duration(ts.HoldTimeout))
		ts.HoldDeadline = &deadline
		changed = true
	}
	if c.State == api.ContainerState_CONTAINER_RUNNING || c.State == api.ContainerState_CONTAINER_STOPPED {
		if ts.StartedAt == nil && c.StartedAt != 0 {
			started := time.Unix(0, c.StartedAt)
			ts.StartedAt = &started
			if !ts.Held() {
				p.markReleased(pd, m, started)
			}
			changed = true
		}
	}
	if c.State == api.ContainerState_CONTAINER_STOPPED && ts.ExitedAt == nil {
		exited := time.Unix(0, c.FinishedAt)
		if c.FinishedAt == 0 {
			exited = p.now()
		}
		m.markExited(exited, c.ExitCode)
		changed = true
	}
	if changed {
		p.write(pd, m)
	}
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

func usesPodorder(sb *api.PodSandbox) bool {
	return decl.Uses(sb.Labels, sb.Annotations)
}

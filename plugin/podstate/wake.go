//go:build !mutant_nowake

package podstate

// wakeFor adds the wake-ups that a write of changed's tombstone calls for: every held hook still
// waiting, changed's own (its release is written into its own tombstone), and, while the pod is
// deleted, the preStop hooks of running containers, which wait for their dependents' exits.
func (o *out) wakeFor(p *Pod, changed *Attempt) {
	for _, name := range p.names() {
		a := p.Attempts[name]
		if !a.Wakes || a.TS.ExitedAt != nil || (a != changed && a.TS.ReleasedAt != nil && !p.Terminating) {
			continue
		}
		o.add(Wake{name})
	}
}

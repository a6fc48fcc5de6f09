//go:build !mutant_startedcounts

package tombstone

// released reports whether the attempt's own process runs or ran: the runtime started it and, when
// it is held, the daemon let it go. A held attempt the runtime started is still only its hook.
func (t *Tombstone) released() bool { return t.StartedAt != nil && t.ReleasedAt != nil }

//go:build !mutant_latereleased

package podstate

import (
	"time"

	"github.com/podorder/podorder/hooks/tombstone"
)

// releasable reports whether a hold may still be released at now: only before its deadline, so
// that the hook, which reads its tombstone once more at its own later deadline, always obeys.
func releasable(ts *tombstone.Tombstone, now time.Time) bool { return now.Before(*ts.HoldDeadline) }

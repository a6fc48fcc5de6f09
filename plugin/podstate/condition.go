package podstate

import (
	"fmt"
	"strings"
	"time"
	"unicode/utf8"
)

// ConditionType is the pod condition podorder owns. Pods that use podorder carry it as a
// readinessGate, so that a pod whose container podorder still holds is not Ready: kubelet alone
// would call a held container running, and ready without a readinessProbe.
const ConditionType = "podorder.dev/released"

// Reasons of the condition.
const (
	ConditionHeld     = "Held"
	ConditionReleased = "Released"
)

// PodCondition is what the pod's podorder condition should say.
type PodCondition struct {
	// Released is the condition's status: true once every attempt podorder holds has been released.
	Released bool
	Reason   string
	Message  string
	// Since is when Released last changed: the condition's lastTransitionTime.
	Since time.Time
}

// SetCondition asks the shell to write the pod's condition through the API; the newest one wins.
type SetCondition struct{ Condition PodCondition }

func (SetCondition) effect() {}

// MaxConditionMessage bounds the condition's message, which echoes what a pod declares: it is
// rebuilt under the plugin's lock at every event of the pod and patched to the API, so a pod that
// declares many long dependencies must not make either cost more than this. It is the API server's
// limit on an events.k8s.io Event's note, which kubectl users are used to.
const MaxConditionMessage = 1024

// Condition computes the pod's condition from its attempts: false while a container's newest attempt
// is held (not released, not exited), naming what each one waits for and since when. Past
// MaxConditionMessage bytes, the held containers not described are counted instead.
func (p *Pod) Condition() PodCondition {
	var msg strings.Builder
	held, described := 0, 0
	for _, name := range p.names() {
		a := p.Attempts[name]
		if !a.Holding() {
			continue
		}
		held++
		if msg.Len() >= MaxConditionMessage {
			continue
		}
		if described > 0 {
			msg.WriteString("; ")
		}
		fmt.Fprintf(&msg, "%s waits for %s since %s", name, Describe(a.Declared), a.TS.CreatedAt.UTC().Format(time.TimeOnly))
		if missing := p.missing(a); missing != "" {
			msg.WriteString(" (" + missing + ")")
		}
		described++
	}
	if held > 0 {
		return PodCondition{Reason: ConditionHeld, Message: capMessage(msg.String(), held-described)}
	}
	return PodCondition{Released: true, Reason: ConditionReleased, Message: "no container is held by podorder"}
}

// ConditionUpdate returns the effect that writes the pod's condition when it differs from the one
// written last, at now.
func (p *Pod) ConditionUpdate(now time.Time) []Effect {
	c := p.Condition()
	last := p.condition
	if last != nil && last.Released == c.Released && last.Reason == c.Reason && last.Message == c.Message {
		return nil
	}
	c.Since = now
	if last != nil && last.Released == c.Released {
		c.Since = last.Since
	}
	if c.Released && (last == nil || !last.Released) && len(p.Attempts) > 0 {
		p.note(nil, now, TimelinePodReleased, "no container held: its condition "+ConditionType+" is True")
	}
	p.condition = &c
	return []Effect{SetCondition{c}}
}

// capMessage cuts m to MaxConditionMessage bytes on a rune boundary, saying how many more held
// containers there are when some were not described.
func capMessage(m string, more int) string {
	suffix := ""
	if more > 0 {
		suffix = fmt.Sprintf("; and %d more held containers", more)
	}
	if len(m)+len(suffix) <= MaxConditionMessage {
		return m + suffix
	}
	const ellipsis = "…"
	cut := MaxConditionMessage - len(suffix) - len(ellipsis)
	for cut > 0 && !utf8.RuneStart(m[cut]) {
		cut--
	}
	return m[:cut] + ellipsis + suffix
}

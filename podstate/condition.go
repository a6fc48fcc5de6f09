package podstate

import (
	"fmt"
	"strings"
	"time"
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

// Condition computes the pod's condition from its attempts: false while a container's newest attempt
// is held (not released, not exited), naming what each one waits for and since when.
func (p *Pod) Condition() PodCondition {
	var held []string
	for _, name := range p.names() {
		a := p.Attempts[name]
		ts := a.TS
		if !a.Holding() {
			continue
		}
		msg := fmt.Sprintf("%s waits for %s since %s", name, Describe(a.Hold), ts.CreatedAt.UTC().Format(time.TimeOnly))
		if missing := p.missing(a); missing != "" {
			msg += " (" + missing + ")"
		}
		held = append(held, msg)
	}
	if len(held) > 0 {
		return PodCondition{Reason: ConditionHeld, Message: strings.Join(held, "; ")}
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
	p.condition = &c
	return []Effect{SetCondition{c}}
}

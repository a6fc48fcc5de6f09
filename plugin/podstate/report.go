package podstate

import (
	"time"

	"github.com/podorder/podorder/hooks/dependency"
)

// PodReport is what `podorder status` shows of one pod (named apart from the API's PodStatus, which it is not).
type PodReport struct {
	Pod         string            `json:"pod"`
	UID         string            `json:"uid"`
	Terminating bool              `json:"terminating,omitempty"`
	Released    bool              `json:"released"`
	Containers  []ContainerReport `json:"containers"`
}

// ContainerReport is one container's newest attempt.
type ContainerReport struct {
	Name string `json:"name"`
	ID   string `json:"id"`
	// State is held, failing (held, but a dependency can no longer be met), released, ready or exited.
	State string `json:"state"`
	// Since is when the attempt was created.
	Since time.Time `json:"since"`
	// TimeoutLeft is how long the daemon may still release a held attempt.
	TimeoutLeft time.Duration `json:"timeout_left,omitempty"`
	// WaitsFor lists a held attempt's dependencies and how each stands.
	WaitsFor []DependencyReport `json:"waits_for,omitempty"`
	// ExitCode is set once exited.
	ExitCode *int32 `json:"exit_code,omitempty"`
}

// DependencyReport is one dependency of a held attempt.
type DependencyReport struct {
	Dependency string `json:"dependency"`
	Met        bool   `json:"met"`
	// State says why it is not met yet, as the hook would.
	State string `json:"state,omitempty"`
}

// Snapshot reports the pod's containers at now; synthetic stand-ins of pod dependencies appear only
// inside WaitsFor.
func (p *Pod) Snapshot(now time.Time) PodReport {
	s := PodReport{Pod: p.Ref, UID: p.UID, Terminating: p.Terminating, Released: p.Condition().Released}
	for _, name := range p.names() {
		a := p.Attempts[name]
		ts := a.TS
		if ts.PodSelector != "" {
			continue
		}
		c := ContainerReport{Name: name, ID: ts.ID}
		if ts.CreatedAt != nil {
			c.Since = *ts.CreatedAt
		}
		switch {
		case ts.ExitedAt != nil:
			c.State = "exited"
			code := ts.ExitCode
			c.ExitCode = &code
		case ts.ReadyAt != nil:
			c.State = "ready"
		case ts.ReleasedAt != nil:
			c.State = "released"
		case ts.HoldFailed != "":
			c.State = "failing"
		case ts.Held():
			c.State = "held"
		default:
			c.State = "created"
		}
		if a.Holding() {
			if ts.HoldDeadline != nil {
				c.TimeoutLeft = max(0, ts.HoldDeadline.Sub(now)).Round(time.Second)
			}
			for _, d := range ts.WaitsFor {
				st := p.state(d.Container)
				ds := DependencyReport{Dependency: d.Container + " (" + string(d.Condition) + ")"}
				if da := p.Attempts[d.Container]; da != nil && da.TS.PodSelector != "" {
					ds.Dependency = da.TS.PodSelector
				}
				if dependency.Evaluate(d.Condition, st) == dependency.Met {
					ds.Met = true
				} else {
					ds.State = dependency.Describe(d, st)
				}
				c.WaitsFor = append(c.WaitsFor, ds)
			}
		}
		s.Containers = append(s.Containers, c)
	}
	return s
}

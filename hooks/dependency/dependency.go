// Package dependency is podorder's vocabulary: the conditions a container can wait for, a dependency
// on one container of the same pod, and the single rule deciding whether a dependency is met. The
// daemon decides releases with Evaluate; the in-container hook uses it only to explain what is
// missing when a hold ends (and, for hooks injected before podorder 0.2, to decide by itself).
//
// This package uses the standard library only: it is linked into the static in-container hook.
package dependency

import (
	"fmt"
	"strings"
)

// Condition is a state of a dependency that a dependent container waits for.
type Condition string

const (
	// Started: the dependency's own process runs (a held dependency counts once it is released).
	Started Condition = "started"
	// Ready: the dependency is started and its readiness check passed.
	Ready Condition = "ready"
	// Completed: the dependency exited with code 0.
	Completed Condition = "completed"
)

// Default is the condition of a dependency named without one.
const Default = Ready

// Conditions lists every valid condition, for messages.
var Conditions = []Condition{Started, Ready, Completed}

// Parse reads a condition name.
func Parse(s string) (Condition, error) {
	switch c := Condition(s); c {
	case Started, Ready, Completed:
		return c, nil
	}
	return "", fmt.Errorf("unknown condition %q: use one of started, ready, completed", s)
}

// Dependency is one condition on one container of the same pod.
type Dependency struct {
	Container string    `json:"container"`
	Condition Condition `json:"condition"`
}

// String formats the dependency as the hook's argument, "db=ready".
func (d Dependency) String() string { return d.Container + "=" + string(d.Condition) }

// ParseDependency reads the hook's argument form, "db=ready".
func ParseDependency(s string) (Dependency, error) {
	name, cond, ok := strings.Cut(s, "=")
	if !ok || name == "" {
		return Dependency{}, fmt.Errorf("dependency %q: want <container>=<condition>", s)
	}
	c, err := Parse(cond)
	if err != nil {
		return Dependency{}, fmt.Errorf("dependency %q: %w", s, err)
	}
	return Dependency{Container: name, Condition: c}, nil
}

// State is what a waiter knows of the newest attempt of a dependency.
type State struct {
	// Exists is false while the dependency has no attempt yet.
	Exists   bool
	Released bool // its own process runs or ran (started, and not held any more)
	Ready    bool
	Exited   bool
	ExitCode int32
	// ExitUnknown: it exited, but with a code nobody has told podorder yet.
	ExitUnknown bool
}

// Verdict is the outcome of evaluating one dependency.
type Verdict int

const (
	// Waiting: not met yet; it may be met later.
	Waiting Verdict = iota
	// Met: the dependent may start as far as this dependency goes.
	Met
	// Failed: cannot be met by this attempt of the dependency (a "completed" dependency exited
	// non-zero); the waiter should give up with an error rather than wait out its timeout.
	Failed
)

// Evaluate decides one dependency against the newest attempt of the container it names. An exited
// attempt no longer counts as started or ready unless it exited 0, so a crashed dependency holds its
// dependents until its next attempt is running.
func Evaluate(c Condition, s State) Verdict {
	if !s.Exists {
		return Waiting
	}
	switch c {
	case Started:
		if s.Released && (!s.Exited || s.ExitCode == 0 && !s.ExitUnknown) {
			return Met
		}
	case Ready:
		if s.Released && s.Ready && !s.Exited {
			return Met
		}
	case Completed:
		// An attempt whose process never ran did not complete, whatever exit code it reports.
		if s.Exited && s.Released && !s.ExitUnknown {
			if s.ExitCode == 0 {
				return Met
			}
			return Failed
		}
	}
	return Waiting
}

// Describe explains in words why a dependency is not met, for timeout and failure messages.
func Describe(d Dependency, s State) string {
	switch {
	case !s.Exists:
		return fmt.Sprintf("%s has not been created yet", d.Container)
	case s.Exited && s.ExitUnknown:
		return fmt.Sprintf("%s exited while podorder was away, with an exit code podorder does not know (the Kubernetes API tells it, when podorder uses the API)", d.Container)
	case s.Exited && s.ExitCode != 0 && d.Condition == Completed:
		return fmt.Sprintf("%s exited with code %d (waiting for %s needs exit code 0)", d.Container, s.ExitCode, d.Condition)
	case s.Exited && s.ExitCode != 0:
		return fmt.Sprintf("%s exited with code %d and has not been restarted", d.Container, s.ExitCode)
	case s.Exited:
		return fmt.Sprintf("%s exited", d.Container)
	case !s.Released:
		return fmt.Sprintf("%s has not started (it may itself be held)", d.Container)
	case !s.Ready:
		return fmt.Sprintf("%s is running but not ready", d.Container)
	default:
		return fmt.Sprintf("%s is running", d.Container)
	}
}

package podstate

import (
	"fmt"
	"log/slog"
	"syscall"
	"time"
)

// Effect is something the shell must do. The concrete types below are all there are.
type Effect interface{ effect() }

// Write persists A's tombstone, then wakes the hooks that Wakes names.
type Write struct{ A *Attempt }

// Remove deletes a container's tombstone.
type Remove struct{ Container string }

// Wake nudges one container's hook to re-read the tombstones.
type Wake struct{ Container string }

// Record records a Kubernetes Event on the pod.
type Record struct {
	Warning         bool
	Reason, Message string
}

// Log is one structured log line about a container of the pod ("" for the pod).
type Log struct {
	Level     slog.Level
	Container string
	Msg       string
	Args      []any
}

// StartProbe starts podorder's readiness probe of A; ProbePassed or ProbeRefused follows.
type StartProbe struct{ A *Attempt }

// EndProbe ends A's probe, if one runs.
type EndProbe struct{ A *Attempt }

// WatchSignal makes the shell watch for A's readiness signal (A.Signal) from its process PID on:
// a READY=1 datagram on its notify socket sent by a process of A, or A.Signal.Path existing in
// PID's mount namespace. SignalSeen or SignalRefused follows.
type WatchSignal struct {
	A   *Attempt
	PID uint32
}

// EndSignal ends the watch of A's readiness signal, and closes and removes its notify socket.
type EndSignal struct{ A *Attempt }

// Signal sends Signal to A's process through the handle the shell holds; if that fails, the shell
// reports it with SignalFailed.
type Signal struct {
	A      *Attempt
	Signal syscall.Signal
}

// ArmKill asks for GraceEnded(A, Stop) after After.
type ArmKill struct {
	A     *Attempt
	Stop  *Stop
	After time.Duration
}

// ArmBlindEnd asks for HoldOutlived(A) at At.
type ArmBlindEnd struct {
	A  *Attempt
	At time.Time
}

// MarkTerminating marks the pod's store as being deleted, for the preStop hooks.
type MarkTerminating struct{}

// HoldEnded reports the end of A's hold, for metrics: Outcome is released, timeout,
// dependency_failed or stopped; Held is how long it lasted from the attempt's creation.
type HoldEnded struct {
	A       *Attempt
	Outcome string
	Held    time.Duration
}

// Hold outcomes.
const (
	OutcomeReleased         = "released"
	OutcomeTimeout          = "timeout"
	OutcomeDependencyFailed = "dependency_failed"
	OutcomeStopped          = "stopped"
)

// Forget drops what the shell holds for A's process: its handle and a pending SIGKILL. A's process
// exited.
type Forget struct{ A *Attempt }

func (Write) effect()           {}
func (Remove) effect()          {}
func (Wake) effect()            {}
func (Record) effect()          {}
func (Log) effect()             {}
func (StartProbe) effect()      {}
func (WatchSignal) effect()     {}
func (EndSignal) effect()       {}
func (EndProbe) effect()        {}
func (Signal) effect()          {}
func (ArmKill) effect()         {}
func (ArmBlindEnd) effect()     {}
func (MarkTerminating) effect() {}
func (Forget) effect()          {}
func (HoldEnded) effect()       {}

// out collects effects with small helpers, so that the rules read as rules.
type out []Effect

func (o *out) add(e ...Effect) { *o = append(*o, e...) }

func (o *out) log(level slog.Level, container, msg string, args ...any) {
	o.add(Log{Level: level, Container: container, Msg: msg, Args: args})
}

func (o *out) record(warning bool, reason, format string, args ...any) {
	o.add(Record{Warning: warning, Reason: reason, Message: fmt.Sprintf(format, args...)})
}

// Track asks the shell to take a handle on A's process, PID, so that a stop-with can stop it later;
// the shell checks that the process is still A's container before it keeps the handle.
type Track struct {
	A   *Attempt
	PID uint32
}

// ArmRuntimeCheck asks for RuntimeCheckDue(A) once the runtime has had time to return from A's
// start, so that a runtime that blocks its start while A is held is found and named.
type ArmRuntimeCheck struct{ A *Attempt }

// RuntimeFinding is what podorder learned of the container runtime from a held attempt's start:
// Blocking says its start does not return until the hold ends (runc < 1.2.8 / 1.3.3), which stalls
// kubelet. The shell reports the first finding of the node, once.
type RuntimeFinding struct {
	Container string
	Blocking  bool
}

func (Track) effect()           {}
func (ArmRuntimeCheck) effect() {}
func (RuntimeFinding) effect()  {}

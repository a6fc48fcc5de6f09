// Package preflight judges, at the daemon's start and whenever a fact changes, whether this node can
// run podorder: is containerd's NRI socket reachable, is containerd recent enough, does the runtime
// (runc) return from start while a container is held. The verdicts are pure functions of facts
// gathered at the edge (socket.go, runtime.go); Node reports them once per change to the log, the
// metrics, the Node's Events and `podorder status`.
package preflight

import (
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"
)

// Check names one preflight check; it is the metric's label.
type Check string

// The checks, in the order the status header shows them.
const (
	NRISocket         Check = "nri_socket"
	ContainerdVersion Check = "containerd_version"
	RuntimeVersion    Check = "runtime_version"
)

// Checks lists every check in order.
var Checks = []Check{NRISocket, ContainerdVersion, RuntimeVersion}

// Result is a check's outcome.
type Result string

// Results: a check passes, fails (podorder cannot work, or works badly, and the message says how
// to fix it), or cannot tell yet.
const (
	Pass    Result = "pass"
	Fail    Result = "fail"
	Unknown Result = "unknown"
)

// Event reasons of failed checks, and of a node where none fails.
const (
	ReasonNRIUnreachable    = "PodorderNRIUnreachable"
	ReasonContainerdTooOld  = "PodorderContainerdTooOld"
	ReasonRuntimeTooOld     = "PodorderRuntimeTooOld"
	ReasonRuntimeBlocks     = "PodorderRuntimeBlocksStart"
	ReasonReady             = "PodorderReady"
	nriConfig               = "daemonset/containerd-nri.toml"
	fixedRunc               = ">= 1.2.8, >= 1.3.3 or 1.4+"
	containerdWithValidator = "2.2"
)

// Verdict is the outcome of one check.
type Verdict struct {
	Check  Check  `json:"check"`
	Result Result `json:"result"`
	// Summary is a few words for the status header: "NRI connected", "containerd 2.4.2".
	Summary string `json:"summary"`
	// Message says what was found and, for a failure, what to do.
	Message string `json:"message"`
	// Reason is the Event reason of a failure; empty otherwise.
	Reason string `json:"reason,omitempty"`
}

// Initial is what a check says before its fact is known.
func Initial(c Check) Verdict {
	switch c {
	case NRISocket:
		return Verdict{Check: c, Result: Unknown, Summary: "NRI not connected yet", Message: "podorder has not tried containerd's NRI socket yet"}
	case ContainerdVersion:
		return Verdict{Check: c, Result: Unknown, Summary: "containerd unknown", Message: "containerd's version is known once podorder is connected to its NRI socket"}
	}
	return Verdict{Check: c, Result: Unknown, Summary: "runtime unknown", Message: "the runtime's version is unknown"}
}

// Problem is what stood between podorder and the NRI socket.
type Problem string

// Problems of a connection to the NRI socket.
const (
	// Reachable: the socket accepted the connection.
	Reachable Problem = ""
	// Missing: no file at the path: NRI is off, or serves another path.
	Missing Problem = "missing"
	// Refused: a socket file nobody listens on: left behind by a containerd that stopped or now runs
	// with NRI off.
	Refused Problem = "refused"
	// Denied: podorder may not connect (not root, or a read-only/foreign mount).
	Denied Problem = "permission denied"
	// NotSocket: something other than a socket is at the path.
	NotSocket Problem = "not a socket"
	// Other: any other error; Reachability.Err says which.
	Other Problem = "error"
)

// Reachability is what one connection attempt to the NRI socket found.
type Reachability struct {
	Path    string
	Problem Problem
	// Err is the connection's error, when there was one.
	Err error
}

// JudgeSocket says whether podorder reaches the NRI socket and, if not, what to do.
func JudgeSocket(r Reachability) Verdict {
	v := Verdict{Check: NRISocket, Result: Fail, Reason: ReasonNRIUnreachable, Summary: "NRI unreachable (" + string(r.Problem) + ")"}
	enable := fmt.Sprintf(`enable NRI in containerd's config: the [plugins."io.containerd.nri.v1.nri"] block of podorder's %s `+
		`(disable = false, socket_path = "%s"), in /etc/containerd/config.toml, or for k3s/rke2 in config-v3.toml.tmpl next to the generated config `+
		`(docs/install.md, "containerd settings by distribution"), or let podorder's opt-in init container do it (chart nri.patchConfig.enabled, podorder enable-nri); then restart containerd`, nriConfig, r.Path)
	const retrying = " Until then podorder holds no container; it keeps retrying."
	switch r.Problem {
	case Reachable:
		return Verdict{Check: NRISocket, Result: Pass, Summary: "NRI connected", Message: "connected to containerd's NRI socket " + r.Path}
	case Missing:
		v.Message = fmt.Sprintf("containerd's NRI socket %s does not exist: NRI is off in containerd, or its socket_path is another one. "+
			"To fix: %s; or, if NRI serves another path, set --nri-socket (PODORDER_NRI_SOCKET) and the DaemonSet's nri-socket hostPath to it.", r.Path, enable) + retrying
	case Refused:
		v.Message = fmt.Sprintf("nothing listens on containerd's NRI socket %s (a socket file left behind): containerd is not running, or runs with NRI off. "+
			"To fix: %s.", r.Path, enable) + retrying
	case Denied:
		v.Message = fmt.Sprintf("podorder may not connect to containerd's NRI socket %s (permission denied): run the daemon as root (the DaemonSet's runAsUser: 0) "+
			"with the socket's directory mounted from the host (hostPath /var/run/nri).", r.Path) + retrying
	case NotSocket:
		v.Message = fmt.Sprintf("%s is not a socket, so containerd does not serve NRI there: check containerd's socket_path and --nri-socket; to fix: %s.", r.Path, enable) + retrying
	default:
		v.Message = fmt.Sprintf("cannot connect to containerd's NRI socket %s: %v.", r.Path, r.Err) + retrying
	}
	return v
}

// Settled says whether a failed connection is reported: at once while podorder has never been
// connected (containerd runs podorder's own pod, so it is up: its NRI is what is missing), but once
// it was, only after grace, so that a routine containerd restart is not reported as NRI being off.
func Settled(everConnected bool, downFor, grace time.Duration) bool {
	return !everConnected || downFor >= grace
}

// JudgeContainerd judges the runtime NRI's Configure names: containerd >= 2.0 is needed, >= 2.2
// has the fail-closed validator.
func JudgeContainerd(runtime, version string) Verdict {
	v := Verdict{Check: ContainerdVersion, Summary: strings.TrimSpace(runtime + " " + version)}
	if runtime != "containerd" {
		v.Result = Unknown
		v.Message = fmt.Sprintf("the NRI runtime is %q %s, not containerd: podorder is tested on containerd only (verify holds before relying on them)", runtime, version)
		return v
	}
	ver, ok := ParseVersion(version)
	if !ok {
		v.Result = Unknown
		v.Message = fmt.Sprintf("containerd's version %q is not understood; podorder needs containerd >= 2.0", version)
		return v
	}
	v.Summary = "containerd " + ver.String()
	switch {
	case ver.Less(Version{2, 0, 0}):
		v.Result, v.Reason = Fail, ReasonContainerdTooOld
		v.Message = fmt.Sprintf("containerd %s is too old: podorder needs containerd >= 2.0 (tested on 2.4.2); upgrade containerd on this node", ver)
	case ver.Less(Version{2, 2, 0}):
		v.Result = Pass
		v.Message = fmt.Sprintf("containerd %s is supported; its NRI lacks the fail-closed validator (required_plugins, containerd >= %s), "+
			"so a container created while podorder is down starts unheld", ver, containerdWithValidator)
	default:
		v.Result = Pass
		v.Message = fmt.Sprintf("containerd %s is supported, with the fail-closed validator available (docs/install.md, \"Fail closed\")", ver)
	}
	return v
}

// RuntimeFact is what was found of the runtime binary containerd runs.
type RuntimeFact struct {
	// Binary is where podorder looked; empty when it was not told (--runtime-binary).
	Binary string
	// Name is "runc", "crun" or what the binary said; Version its version as printed.
	Name, Version string
	// Err is why the version could not be read.
	Err error
}

// ErrNoBinary says podorder was not told where the runtime binary is.
var ErrNoBinary = errors.New("no --runtime-binary given")

// JudgeRuntime judges the runtime's version: runc before 1.2.8, and 1.3.0 to 1.3.2, run
// startContainer hooks before `runc start` returns, so a held container blocks kubelet.
func JudgeRuntime(f RuntimeFact) Verdict {
	v := Verdict{Check: RuntimeVersion, Result: Unknown, Summary: "runtime unknown"}
	const later = "podorder judges the runtime at the first held container instead, and says so if its start blocks"
	if f.Err != nil || f.Name == "" {
		err := f.Err
		if err == nil {
			err = errors.New("no version found")
		}
		if f.Binary == "" {
			v.Message = fmt.Sprintf("the runtime's version is unknown (%v): %s", err, later)
		} else {
			v.Message = fmt.Sprintf("the runtime's version is unknown (%s: %v): %s", f.Binary, err, later)
		}
		return v
	}
	ver, ok := ParseVersion(f.Version)
	v.Summary = strings.TrimSpace(f.Name + " " + f.Version)
	if !ok {
		v.Message = fmt.Sprintf("%s's version %q is not understood: %s", f.Name, f.Version, later)
		return v
	}
	v.Summary = f.Name + " " + ver.String()
	switch f.Name {
	case "runc":
		if RuncBlocks(ver) {
			v.Result, v.Reason = Fail, ReasonRuntimeTooOld
			v.Message = fmt.Sprintf("runc %s (%s) runs startContainer hooks before `runc start` returns: every held container blocks kubelet's "+
				"StartContainer, stalling its whole pod (and the probes of its other containers) until the hold ends. Upgrade runc on this node to %s, or use crun",
				ver, f.Binary, fixedRunc)
			return v
		}
		v.Result = Pass
		v.Message = fmt.Sprintf("runc %s returns from start while a container is held", ver)
	case "crun":
		v.Result = Pass
		v.Message = fmt.Sprintf("crun %s closes its exec fifo before running hooks, as podorder needs (crun is not tested here: verify holds)", ver)
	default:
		v.Message = fmt.Sprintf("runtime %s %s is not runc or crun: %s", f.Name, ver, later)
	}
	return v
}

// RuncBlocks says whether a runc version blocks `runc start` for a startContainer hook's whole run:
// before 1.2.8, and 1.3.0 to 1.3.2 (FACTS.md; fixed in 1.2.8, 1.3.3 and every 1.4 and later).
func RuncBlocks(v Version) bool {
	switch {
	case v.Less(Version{1, 2, 8}):
		return true
	case v.Major == 1 && v.Minor == 3:
		return v.Patch < 3
	}
	return false
}

// JudgeRuntimeFinding turns what a held container's start showed (podstate.RuntimeFinding) into the
// runtime check's verdict; prev is the check's verdict so far, whose summary names the version when
// it is known, and seenAt names the container whose start showed it.
func JudgeRuntimeFinding(prev Verdict, blocking bool, after time.Duration, seenAt string) Verdict {
	v := Verdict{Check: RuntimeVersion, Summary: prev.Summary}
	if !blocking {
		v.Result = Pass
		if prev.Result == Unknown {
			v.Summary = "runtime returns from start while held"
		}
		v.Message = fmt.Sprintf("the container runtime returned from start while a container was held (%s): holds do not stall kubelet", seenAt)
		return v
	}
	if prev.Result == Unknown {
		v.Summary = "runtime blocks start while held"
	}
	v.Result, v.Reason = Fail, ReasonRuntimeBlocks
	v.Message = fmt.Sprintf("the container runtime's start of a held container (%s) did not return within %s: it runs startContainer hooks before start returns "+
		"(runc < 1.2.8, or 1.3.0 to 1.3.2), so kubelet stalls the whole pod until the hold ends. Upgrade runc on this node to %s, or use crun", seenAt, after, fixedRunc)
	return v
}

// Version is a release's major, minor and patch numbers.
type Version struct{ Major, Minor, Patch int }

// ParseVersion reads "v2.4.2", "2.1", "1.1.5+ds1", "2.0.0-rc.3": an optional v, then two or three
// numbers; whatever follows the numbers (a pre-release, a distribution's suffix) is ignored.
func ParseVersion(s string) (Version, bool) {
	s = strings.TrimPrefix(strings.TrimSpace(s), "v")
	end := strings.IndexFunc(s, func(r rune) bool { return (r < '0' || r > '9') && r != '.' })
	if end >= 0 {
		s = s[:end]
	}
	parts := strings.Split(strings.TrimSuffix(s, "."), ".")
	if len(parts) < 2 || len(parts) > 3 {
		return Version{}, false
	}
	var n [3]int
	for i, p := range parts {
		v, err := strconv.Atoi(p)
		if err != nil {
			return Version{}, false
		}
		n[i] = v
	}
	return Version{n[0], n[1], n[2]}, true
}

// Less orders versions.
func (v Version) Less(w Version) bool {
	if v.Major != w.Major {
		return v.Major < w.Major
	}
	if v.Minor != w.Minor {
		return v.Minor < w.Minor
	}
	return v.Patch < w.Patch
}

func (v Version) String() string { return fmt.Sprintf("%d.%d.%d", v.Major, v.Minor, v.Patch) }

// Ready says whether the node is ready for podorder, with the Normal Event's message when it is:
// connected to NRI and no check failing.
func Ready(vs []Verdict) (string, bool) {
	var summaries []string
	for _, v := range vs {
		if v.Result == Fail || v.Check == NRISocket && v.Result != Pass {
			return "", false
		}
		summaries = append(summaries, v.Summary)
	}
	return "podorder is ready on this node: " + strings.Join(summaries, ", "), true
}

// Header is the status header's line: "node: NRI connected, containerd 2.4.2, runc 1.3.6". It
// names the checks of Checks only: other facts the daemon serves with them have lines of their own.
func Header(vs []Verdict) string {
	var summaries []string
	for _, v := range vs {
		if slices.Contains(Checks, v.Check) {
			summaries = append(summaries, v.Summary)
		}
	}
	return "node: " + strings.Join(summaries, ", ")
}

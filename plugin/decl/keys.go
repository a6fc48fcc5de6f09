package decl

import (
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/podorder/podorder/hooks/dependency"
)

// Key kinds after the domain: "<kind>.<container>". Each is one entry of the key table, kinds.
const (
	// KindAfter lists what a container waits for before it starts.
	KindAfter = "after"
	// KindTimeout bounds how long a container is held.
	KindTimeout = "timeout"
	// KindProbe is a node-local readiness check of a container others wait for.
	KindProbe = "probe"
	// KindStopWith binds a container's life to others': it is stopped when one of them exits.
	KindStopWith = "stop-with"
	// KindStopGrace overrides the pod's terminationGracePeriodSeconds for podorder's stops.
	KindStopGrace = "stop-grace"
	// KindStopSignal overrides SIGTERM as the first signal of podorder's stops.
	KindStopSignal = "stop-signal"
	// KindReadiness says who judges a container's readiness for the containers that wait for it:
	// ReadinessKubelet opts out of podorder evaluating the container's readinessProbe itself.
	KindReadiness = "readiness"
)

// Values of podorder.dev/readiness.<c>.
const (
	// ReadinessPodorder, the default, lets podorder evaluate a tcp, http or grpc readinessProbe
	// itself, from inside the pod, at a fast period while a container waits for it.
	ReadinessPodorder = "podorder"
	// ReadinessKubelet waits for kubelet's own verdict, as reported through the API.
	ReadinessKubelet = "kubelet"
	// ReadinessNotify gives the container a NOTIFY_SOCKET of its own: it is ready when one of its
	// own processes sends READY=1 there (systemd's sd_notify protocol).
	ReadinessNotify = "notify"
	// ReadinessFile, followed by an absolute path ("file:/run/ready"), makes the container ready
	// when that path exists inside its own mount namespace. Annotation only: a label value cannot
	// hold '/'.
	ReadinessFile = "file"
)

// kind is one kind of podorder.dev/ key, "podorder.dev/<name>.<container>": how the daemon reads
// its value, and how the API server checks the value's syntax at admission (policy.go). Every kind
// takes a container suffix: the container the key is about.
type kind struct {
	name string
	// read parses one value into the pod's declarations. Its error says what is wrong with the
	// value; the caller names the key.
	read func(r *reader, k key) error
	// labelSyntax and annotationSyntax are the RE2 patterns the admission policy matches a label's
	// or an annotation's value against; "" leaves that form to the daemon alone. Every value read
	// accepts must match, or the policy would refuse pods the daemon runs; a pattern may accept
	// more (a timeout over the cap, port 0), which the daemon refuses at CreateContainer.
	labelSyntax, annotationSyntax string
	// check is the admission rule that reports a value its pattern refuses.
	check *check
}

// check is one rule of the admission policy over values, shared by the kinds whose values read
// alike: the CEL variable listing the values that do not match, and what its message says of them.
type check struct {
	variable string
	message  string
}

// kinds is the key table: every key podorder reads, in the order messages list them.
var kinds = []kind{
	{name: KindAfter, read: (*reader).readAfter, labelSyntax: afterLabelSyntax, check: &labelListCheck},
	{name: KindTimeout, read: (*reader).readTimeout, labelSyntax: durationSyntax, annotationSyntax: durationSyntax, check: &timeoutCheck},
	{name: KindProbe, read: (*reader).readProbe, annotationSyntax: probeSyntax, check: &probeCheck},
	{name: KindStopWith, read: (*reader).readStopWith, labelSyntax: stopWithLabelSyntax, check: &labelListCheck},
	{name: KindStopGrace, read: (*reader).readStopGrace, labelSyntax: durationSyntax, annotationSyntax: durationSyntax, check: &stopGraceCheck},
	{name: KindStopSignal, read: (*reader).readStopSignal, labelSyntax: stopSignalSyntax, annotationSyntax: stopSignalSyntax, check: &stopSignalCheck},
	{name: KindReadiness, read: (*reader).readReadiness, labelSyntax: readinessLabelSyntax, annotationSyntax: readinessSyntax, check: &readinessCheck},
}

// The admission policy's rules over values.
var (
	labelListCheck = check{"badLabelValues", "want container names joined by '.', each with an optional _started, _ready or _completed suffix " +
		"(stop-with: _exited, _succeeded or _failed); the annotation takes the long form"}
	timeoutCheck    = check{"badTimeouts", timeoutGrammar}
	probeCheck      = check{"badProbes", probeGrammar}
	stopGraceCheck  = check{"badStopGraces", stopGraceGrammar}
	stopSignalCheck = check{"badStopSignals", stopSignalGrammar}
	readinessCheck  = check{"badReadiness", readinessGrammar}
)

// The syntax of values, as RE2 patterns; a label value cannot hold ':', ',' or spaces, so the label
// forms of after and stop-with join with '.' and '_'.
const (
	containerNameSyntax  = `[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?`
	durationSyntax       = `^ *([0-9]+([.][0-9]+)?(ns|us|µs|ms|s|m|h))+ *$`
	probeSyntax          = `^ *(tcp:[0-9]{1,5}|http:[0-9]{1,5}(/[!-~]*)?) *$`
	readinessLabelSyntax = `^ *(` + ReadinessPodorder + `|` + ReadinessKubelet + `|` + ReadinessNotify + `) *$`
	// readinessSyntax accepts any printable path after file:; the daemon refuses one that is not
	// clean or too long (readinessPath).
	readinessSyntax = `^ *(` + ReadinessPodorder + `|` + ReadinessKubelet + `|` + ReadinessNotify + `|` + ReadinessFile + `:/[!-~]*) *$`
)

var (
	afterLabelSyntax    = labelListSyntax(string(dependency.Started), string(dependency.Ready), string(dependency.Completed))
	stopWithLabelSyntax = labelListSyntax(string(Exited), string(Succeeded), string(Failed))
	stopSignalSyntax    = stopSignalNameSyntax()
)

// labelListSyntax matches container names joined by '.', each with an optional _<suffix>.
func labelListSyntax(suffixes ...string) string {
	item := containerNameSyntax + "(_(" + strings.Join(suffixes, "|") + "))?"
	return "^" + item + "([.]" + item + ")*$"
}

// stopSignalNameSyntax matches a stop signal's name, with or without SIG, in any case.
func stopSignalNameSyntax() string {
	var names []string
	for _, n := range stopSignalNames() {
		names = append(names, strings.TrimPrefix(n, "SIG"))
	}
	return "(?i)^ *(SIG)?(" + strings.Join(names, "|") + ") *$"
}

// What a value must be, said the same way by the daemon and by the admission policy.
var (
	timeoutGrammar    = fmt.Sprintf("timeout must be a positive Go duration of at most %s, such as 90s or 5m", MaxTimeout)
	stopGraceGrammar  = fmt.Sprintf("stop grace must be a Go duration from 1s to %s, such as 30s", MaxTimeout)
	stopSignalGrammar = "stop signal must be one of " + strings.Join(stopSignalNames(), ", ")
)

const (
	probeGrammar     = "want tcp:<port> or http:<port>/<path>, port 1-65535, the path printable ASCII"
	readinessGrammar = "want " + ReadinessPodorder + " (podorder evaluates the readinessProbe itself, the default), " +
		ReadinessKubelet + " (wait for kubelet's verdict), " + ReadinessNotify + " (the container sends READY=1 to its $NOTIFY_SOCKET) or " +
		ReadinessFile + ":<absolute path> (ready once that path exists in the container; annotation only)"
)

// kindNamed returns the kind of a key, "after" for podorder.dev/after.<c>.
func kindNamed(name string) (kind, bool) {
	for _, k := range kinds {
		if k.name == name {
			return k, true
		}
	}
	return kind{}, false
}

// kindNames lists every kind, in table order.
func kindNames() []string {
	names := make([]string, len(kinds))
	for i, k := range kinds {
		names[i] = k.name
	}
	return names
}

// keyForm is what every key looks like: podorder.dev/<after|timeout|...>.<container name>.
func keyForm() string {
	return Domain + "<" + strings.Join(kindNames(), "|") + ">.<container name>"
}

// keysFor lists every key of one container, as a message offers them: "podorder.dev/after.app,
// timeout.app, … or readiness.app".
func keysFor(container string) string {
	keys := kindNames()
	for i := range keys {
		keys[i] += "." + container
	}
	keys[0] = Domain + keys[0]
	return orList(keys)
}

// orList joins "a, b or c".
func orList(items []string) string {
	if len(items) < 2 {
		return strings.Join(items, "")
	}
	return strings.Join(items[:len(items)-1], ", ") + " or " + items[len(items)-1]
}

// readTimeout reads podorder.dev/timeout.<c>; a label and an annotation may both say it, alike.
func (r *reader) readTimeout(k key) error {
	d, err := time.ParseDuration(strings.TrimSpace(k.value))
	if err != nil || d <= 0 || d > MaxTimeout {
		return errors.New(timeoutGrammar)
	}
	if prev, dup := r.timeouts[k.container]; dup && prev != k.value {
		return fmt.Errorf("conflicts with the other timeout %s for %s: keep one", Quote(prev), k.container)
	}
	r.timeouts[k.container] = k.value
	r.pod.hold(k.container).Timeout = d
	return nil
}

// readReadiness reads podorder.dev/readiness.<c>; a label and an annotation may both say it, alike.
func (r *reader) readReadiness(k key) error {
	v := strings.TrimSpace(k.value)
	if prev, dup := r.readiness[k.container]; dup && prev != v {
		return fmt.Errorf("conflicts with the other readiness %s for %s: keep one", Quote(prev), k.container)
	}
	r.readiness[k.container] = v
	h := r.pod.hold(k.container)
	switch {
	case v == ReadinessKubelet:
		h.KubeletReadiness = true
	case v == ReadinessPodorder:
	case v == ReadinessNotify:
		h.Signal = &Signal{Kind: ReadinessNotify}
	case strings.HasPrefix(v, ReadinessFile+":"):
		if k.source != "annotation" {
			return fmt.Errorf("%s:<path> is only read from an annotation (a label value cannot hold '/'): move it to the annotation %s%s.%s",
				ReadinessFile, Domain, KindReadiness, k.container)
		}
		path, err := ReadinessPath(strings.TrimPrefix(v, ReadinessFile+":"))
		if err != nil {
			return err
		}
		h.Signal = &Signal{Kind: ReadinessFile, Path: path}
	default:
		return errors.New(readinessGrammar)
	}
	return nil
}

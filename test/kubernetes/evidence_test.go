package kubernetes

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/podorder/podorder/plugin/podstate"
	"github.com/podorder/podorder/plugin/probe"
	"github.com/podorder/podorder/test/checker"
	"github.com/podorder/podorder/test/harness"
)

// exitTolerance is this bed's NRI lag: how long after a workload's EXIT line podorder may learn of
// it. Here containerd also serves kubelet, and the campaign rolls pods while podorder
// resynchronizes: measured over a short run, 55 exits, p50 78 ms, p99 491 ms, max 644 ms (the CRI
// bed's is under 150 ms: checker.DefaultExitTolerance). A dependency that exited within it before
// its dependent started is suspect, and a violation all the same when podorder had recorded the
// exit before the release. The other tolerances are the checker's defaults.
const exitTolerance = time.Second

// kubeletCheckerConfig is the checker's configuration for a kubelet run that ended at end.
func kubeletCheckerConfig(end time.Time) checker.Config {
	return checker.Config{
		ExitTolerance:  exitTolerance,
		StartRace:      checker.DefaultStartRace,
		Liveness:       2*time.Second + probe.DefaultMaxInterval,
		WakeBound:      checker.DefaultWakeBound,
		DeadlineMargin: podstate.DeadlineMargin,
		End:            end,
		// The shipped DaemonSet has the API: kubelet's status tells the codes of exits podorder missed.
		ExitCodesFromAPI: true,
	}
}

// seenAttempt is what the node's runtime showed of one container attempt kubelet made.
type seenAttempt struct {
	ID                           string
	Namespace, Pod, PodUID, Name string
	Attempt                      uint32
	Created, Started, Finished   time.Time
	ExitCode                     int
	// Hooked says that the runtime's spec of the attempt carries podorder's hook.
	Hooked bool
	// LogPath is the runtime's log file; Kept a hard link to it that outlives the pod (kubelet
	// removes a deleted pod's logs, and with them the evidence).
	LogPath, Kept string
	// Removed says the attempt left the runtime before it was seen exited: Finished is then the
	// first look that missed it, an upper bound, and ExitCode is unknown (-1).
	Removed bool
}

// recorder watches the node's runtime through CRI while the campaign runs: every container attempt
// kubelet creates, when the runtime created, started and ended it, whether podorder hooked it, and
// a hard link to its log file. kubelet deletes the containers and logs of deleted pods (a rolled
// Deployment, a deleted pod, podorder's own pods): the recorder keeps what they showed.
type recorder struct {
	rt   runtimeapi.RuntimeServiceClient
	keep string // the directory of the hard links, on the pod logs' file system

	mu   sync.Mutex
	seen map[string]*seenAttempt
	errs []string

	stop, done chan struct{}
}

// recordEvery is how often the recorder looks: the error of a Finished it has to infer.
const recordEvery = 100 * time.Millisecond

func startRecorder(t *testing.T, rt runtimeapi.RuntimeServiceClient, keep string) *recorder {
	t.Helper()
	require.NoError(t, os.MkdirAll(keep, 0o755))
	r := &recorder{rt: rt, keep: keep, seen: map[string]*seenAttempt{}, stop: make(chan struct{}), done: make(chan struct{})}
	go func() {
		defer close(r.done)
		tick := time.NewTicker(recordEvery)
		defer tick.Stop()
		for {
			r.look(t.Context())
			select {
			case <-r.stop:
				r.look(t.Context())
				return
			case <-tick.C:
			}
		}
	}()
	t.Cleanup(r.close)
	return r
}

// close stops the recorder after one last look; it may be called more than once.
func (r *recorder) close() {
	select {
	case <-r.stop:
	default:
		close(r.stop)
	}
	<-r.done
}

// look lists the runtime's containers once and records what is new.
func (r *recorder) look(ctx context.Context) {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	list, err := r.rt.ListContainers(ctx, &runtimeapi.ListContainersRequest{})
	now := time.Now()
	if err != nil {
		r.fail("list containers: %v", err)
		return
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	listed := map[string]bool{}
	for _, c := range list.Containers {
		listed[c.Id] = true
		a := r.seen[c.Id]
		if a == nil {
			a = &seenAttempt{ID: c.Id, Namespace: c.Labels[harness.LabelPodNamespace], Pod: c.Labels[harness.LabelPodName],
				PodUID: c.Labels[harness.LabelPodUID], Name: c.Labels[harness.LabelContainerName],
				Attempt: c.GetMetadata().GetAttempt(), Created: time.Unix(0, c.CreatedAt)}
			r.seen[c.Id] = a
		}
		if a.LogPath == "" || (a.Started.IsZero() && c.State != runtimeapi.ContainerState_CONTAINER_CREATED) ||
			(a.Finished.IsZero() && c.State == runtimeapi.ContainerState_CONTAINER_EXITED) {
			r.status(ctx, a)
		}
		if a.Kept == "" && a.LogPath != "" {
			kept := filepath.Join(r.keep, a.ID+".log")
			switch err := os.Link(a.LogPath, kept); {
			case err == nil:
				a.Kept = kept
			case !errors.Is(err, os.ErrNotExist): // not written yet: the next look links it
				r.fail("keep the log of %s/%s: %v", a.Pod, a.Name, err)
			}
		}
	}
	for id, a := range r.seen {
		if !listed[id] && a.Finished.IsZero() && !a.Removed {
			a.Finished, a.ExitCode, a.Removed = now, -1, true
		}
	}
}

// status fills in what the runtime's status of a says; a container removed meanwhile is left to
// the next look.
func (r *recorder) status(ctx context.Context, a *seenAttempt) {
	res, err := r.rt.ContainerStatus(ctx, &runtimeapi.ContainerStatusRequest{ContainerId: a.ID, Verbose: a.LogPath == ""})
	if err != nil {
		return
	}
	st := res.Status
	if a.LogPath == "" {
		a.LogPath = st.LogPath
		var info struct {
			RuntimeSpec json.RawMessage `json:"runtimeSpec"`
		}
		if err := json.Unmarshal([]byte(res.Info["info"]), &info); err != nil {
			r.fail("runtime spec of %s/%s: %v", a.Pod, a.Name, err)
		}
		a.Hooked = strings.Contains(string(info.RuntimeSpec), "/.podorder/hook")
	}
	if st.StartedAt != 0 {
		a.Started = time.Unix(0, st.StartedAt)
	}
	if st.State == runtimeapi.ContainerState_CONTAINER_EXITED && st.FinishedAt != 0 {
		a.Finished, a.ExitCode = time.Unix(0, st.FinishedAt), int(st.ExitCode)
	}
}

func (r *recorder) fail(format string, args ...any) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if len(r.errs) < 20 {
		r.errs = append(r.errs, fmt.Sprintf(format, args...))
	}
}

// attempts returns a copy of what was recorded, in creation order.
func (r *recorder) attempts() []seenAttempt {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := make([]seenAttempt, 0, len(r.seen))
	for _, a := range r.seen {
		out = append(out, *a)
	}
	slices.SortFunc(out, func(a, b seenAttempt) int { return a.Created.Compare(b.Created) })
	return out
}

// lines returns the workload lines (or podorder's JSON records) an attempt wrote, from the kept
// copy of its log.
func (a seenAttempt) lines() []string {
	path := a.Kept
	if path == "" {
		path = a.LogPath
	}
	lines, _ := harness.ReadLog(path)
	return lines
}

// podorderAttempts are the attempts of podorder's own daemon container, oldest first.
func (r *recorder) podorderAttempts() []seenAttempt {
	var out []seenAttempt
	for _, a := range r.attempts() {
		if a.Namespace == "podorder-system" && a.Name == "podorder" {
			out = append(out, a)
		}
	}
	return out
}

// logRecord is one JSON line of podorder's log.
type logRecord struct {
	Msg         string    `json:"msg"`
	Time        time.Time `json:"time"`
	ContainerID string    `json:"container_id"`
	Reason      string    `json:"reason"`
}

// daemonRecords returns the records of every podorder daemon the node ran, daemon by daemon.
func (r *recorder) daemonRecords() [][]logRecord {
	var out [][]logRecord
	for _, a := range r.podorderAttempts() {
		out = append(out, parseRecords(a.lines()))
	}
	return out
}

func parseRecords(lines []string) []logRecord {
	var out []logRecord
	for _, l := range lines {
		var rec logRecord
		if json.Unmarshal([]byte(l), &rec) == nil && rec.Msg != "" {
			out = append(out, rec)
		}
	}
	return out
}

// count is how many records of msg every daemon wrote, together.
func (r *recorder) count(msg string) int {
	n := 0
	for _, recs := range r.daemonRecords() {
		for _, rec := range recs {
			if rec.Msg == msg {
				n++
			}
		}
	}
	return n
}

// waitCount waits until the daemons have written more than n records of msg. The daemon's log
// file is the event; the recorder links it within recordEvery, and it is read as often.
func (r *recorder) waitCount(t *testing.T, msg string, n int, timeout time.Duration) {
	t.Helper()
	for deadline := time.Now().Add(timeout); time.Now().Before(deadline); time.Sleep(recordEvery) {
		if r.count(msg) > n {
			return
		}
	}
	t.Fatalf("podorder logged no new %q within %s (%d before)", msg, timeout, n)
}

// waitSynchronized waits for a podorder daemon whose container the runtime created after since to
// log that it synchronized with the runtime (registered with NRI and read the node's containers),
// and returns when it did.
func (r *recorder) waitSynchronized(t *testing.T, since time.Time, timeout time.Duration) time.Time {
	t.Helper()
	for deadline := time.Now().Add(timeout); time.Now().Before(deadline); time.Sleep(recordEvery) {
		for _, a := range r.podorderAttempts() {
			if !a.Created.After(since) {
				continue
			}
			for _, rec := range parseRecords(a.lines()) {
				if rec.Msg == "synchronized with the runtime" {
					return rec.Time
				}
			}
		}
	}
	t.Fatalf("no podorder daemon created after %s synchronized with the runtime within %s", since.Format(time.StampMilli), timeout)
	return time.Time{}
}

// podorderRecords are podorder's own records of each container attempt, by container ID.
type podorderRecords struct {
	released, exited map[string]time.Time
}

// recordsOf collects podorder's release and exit records over every daemon the node ran, up to
// end: the daemons log on while the evidence is read, about attempts the recorder no longer sees.
func recordsOf(daemons [][]logRecord, end time.Time) podorderRecords {
	recs := podorderRecords{released: map[string]time.Time{}, exited: map[string]time.Time{}}
	for _, d := range daemons {
		for _, rec := range d {
			if rec.Time.After(end) {
				continue
			}
			into := map[string]map[string]time.Time{"released": recs.released, "exited": recs.exited}[rec.Msg]
			// A "released" with a reason is podorder inferring, after a hold's end, that a hook it
			// lost track of let its container go: not a decision to hold it to.
			if into == nil || rec.Reason != "" || rec.ContainerID == "" {
				continue
			}
			if _, seen := into[rec.ContainerID]; !seen {
				into[rec.ContainerID] = rec.Time
			}
		}
	}
	return recs
}

// kubeletEvidence turns what the recorder saw until end into the checker's input: one checker.Pod
// per pod (by UID) of the campaign's workloads, each container's attempts in creation order. lines
// are the workload lines of each attempt, by container ID; those after end are left out, as the
// recorder stopped looking then (a restart kubelet made later would be missing beside them).
func kubeletEvidence(workloads map[string]*workload, attempts []seenAttempt, lines map[string][]string, recs podorderRecords, end time.Time) []checker.Pod {
	byPod := map[string][]seenAttempt{}
	var uids []string
	for _, a := range attempts {
		if a.Namespace != "default" || workloads[workloadOf(a.Pod)] == nil {
			continue
		}
		if byPod[a.PodUID] == nil {
			uids = append(uids, a.PodUID)
		}
		byPod[a.PodUID] = append(byPod[a.PodUID], a)
	}
	var out []checker.Pod
	for _, uid := range uids {
		as := byPod[uid]
		slices.SortStableFunc(as, func(a, b seenAttempt) int { return a.Created.Compare(b.Created) })
		w := workloads[workloadOf(as[0].Pod)]
		p := checker.Pod{Name: as[0].Pod}
		for _, c := range w.containers {
			cc := checker.Container{Name: c.name, Deps: c.deps, Timeout: c.timeout}
			for _, a := range as {
				if a.Name == c.name {
					cc.Attempts = append(cc.Attempts, attemptOf(a, lines[a.ID], recs, end))
				}
			}
			p.Containers = append(p.Containers, cc)
		}
		out = append(out, p)
	}
	return out
}

// workloadOf is the workload a pod belongs to: the campaign names its Deployments and Jobs without
// a dash, and their pods' names begin with it.
func workloadOf(pod string) string {
	name, _, _ := strings.Cut(pod, "-")
	return name
}

func attemptOf(a seenAttempt, lines []string, recs podorderRecords, end time.Time) checker.Attempt {
	ca := checker.Attempt{ID: a.ID, CreateAt: a.Created, CreateEnd: a.Created}
	if a.Started.IsZero() {
		ca.Failed = "start: kubelet never started it (its pod went first)"
		return ca
	}
	// kubelet's CreateContainer call ended before its StartContainer call, whose end the runtime's
	// StartedAt marks (the hook holds the process, not the call).
	ca.CreateEnd, ca.StartAt, ca.StartEnd = a.Started, a.Started, a.Started
	ca.Hooked = a.Hooked
	ca.Released, ca.ExitRecorded = recs.released[a.ID], recs.exited[a.ID]
	if !a.Finished.IsZero() {
		ca.Finished, ca.FinishedCode = a.Finished, a.ExitCode
	}
	for _, l := range lines {
		ev, err := harness.ParseWorkloadEvent(l)
		if err != nil || ev.At.After(end) {
			continue
		}
		switch ev.Kind {
		case "START":
			ca.Start = ev.At
		case "LISTEN":
			ca.Listen = ev.At
		case "EXIT":
			ca.Exit, ca.ExitCode = ev.At, ev.Code
		}
	}
	return ca
}

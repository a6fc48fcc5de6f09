package kubernetes

import (
	"fmt"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/podorder/podorder/test/checker"
)

// The campaign's evidence path, from what the recorder saw and the daemons logged to the checker's
// verdict, fed planted runs: it must be able to report a violation, not only pass.
func TestKubeletEvidenceReportsAPlantedEarlyStart(t *testing.T) {
	t0 := time.Date(2026, 12, 4, 12, 0, 0, 0, time.UTC)
	at := func(ms int) time.Time { return t0.Add(time.Duration(ms) * time.Millisecond) }
	line := func(kind, name string, ms int) string {
		return fmt.Sprintf("%s %s %d", kind, name, at(ms).UnixNano())
	}
	daemonLog := func(msg, id string, ms int, extra string) string {
		return fmt.Sprintf(`{"time":%q,"level":"INFO","msg":%q,"container_id":%q%s}`, at(ms).Format(time.RFC3339Nano), msg, id, extra)
	}
	// kc0's pod: app waits for db to be ready; db is a server.
	workloads := map[string]*workload{"kc0": {name: "kc0", kind: "Deployment", containers: []*workloadContainer{
		{name: "app", role: kubePlain, deps: []checker.Dep{{Container: "db", Condition: checker.Ready}}, timeout: time.Minute},
		{name: "db", role: kubeServer, port: 8000, timeout: time.Minute},
	}}}
	db := seenAttempt{ID: "db-1", Namespace: "default", Pod: "kc0-6f7d9-x2x4q", PodUID: "u1", Name: "db",
		Created: at(0), Started: at(100), Hooked: false}
	app := seenAttempt{ID: "app-1", Namespace: "default", Pod: "kc0-6f7d9-x2x4q", PodUID: "u1", Name: "app",
		Created: at(50), Started: at(150), Hooked: true}
	dbLines := []string{line("START", "db", 110), line("LISTEN", "db", 2000)}

	tests := map[string]struct {
		app       func(a *seenAttempt)
		appLines  []string
		daemon    []string
		outage    *checker.Window
		want      checker.Verdict
		wantWhy   string
		wantPods  int
		extraPods []seenAttempt
		dbLines   []string
	}{
		"a dependent released after its dependency listened is checked": {
			appLines: []string{line("START", "app", 2050)},
			daemon:   []string{daemonLog("released", "app-1", 2030, "")},
			want:     checker.Checked,
		},
		"a planted early start, before its dependency listened, is a violation": {
			appLines: []string{line("START", "app", 1000)},
			daemon:   []string{daemonLog("released", "app-1", 990, "")},
			want:     checker.Violation,
			wantWhy:  "db (ready): its newest attempt db-1 listened 1s later",
		},
		"a start podorder never recorded a release of is a violation": {
			appLines: []string{line("START", "app", 2050)},
			daemon:   []string{daemonLog("released", "app-1", 2030, `,"reason":"still running past its hold's end, so its hook let it go"`)},
			want:     checker.Violation,
			wantWhy:  "its process started but podorder never recorded its release",
		},
		"a start long after podorder's release record is a liveness violation": {
			appLines: []string{line("START", "app", 3500)},
			daemon:   []string{daemonLog("released", "app-1", 2030, "")},
			want:     checker.Violation,
			wantWhy:  "the hook was not woken",
		},
		"an attempt created without the hook outside an outage is a violation": {
			app:      func(a *seenAttempt) { a.Hooked = false },
			appLines: []string{line("START", "app", 160)},
			want:     checker.Violation,
			wantWhy:  "created without podorder's hook",
		},
		"an attempt created without the hook while podorder was down is excused": {
			app:      func(a *seenAttempt) { a.Hooked = false },
			appLines: []string{line("START", "app", 160)},
			outage:   &checker.Window{From: at(-500), To: at(120), What: "podorder pod deleted"},
			want:     checker.Skipped,
			wantWhy:  "unheld",
		},
		"an attempt kubelet never started (its pod went first) is skipped": {
			app:     func(a *seenAttempt) { a.Started = time.Time{} },
			want:    checker.Skipped,
			wantWhy: "kubelet never started it",
		},
		"a dependency that exited just before the start, unknown to podorder yet, is suspect (the NRI lag)": {
			dbLines:  append(dbLines[:2:2], line("EXIT", "db", 2100)+" 1"),
			appLines: []string{line("START", "app", 2300)},
			daemon:   []string{daemonLog("released", "app-1", 2250, "")},
			want:     checker.Suspect,
			wantWhy:  "within the NRI lag",
		},
		"a release after podorder recorded its dependency's exit is a violation": {
			dbLines:  append(dbLines[:2:2], line("EXIT", "db", 2100)+" 1"),
			appLines: []string{line("START", "app", 2300)},
			daemon:   []string{daemonLog("exited", "db-1", 2150, `,"exit_code":1`), daemonLog("released", "app-1", 2250, "")},
			want:     checker.Violation,
			wantWhy:  "podorder recorded the exit (code 1)",
		},
		"a hold never released although its dependency was ready is a liveness violation": {
			app:     func(a *seenAttempt) { a.Finished, a.ExitCode = at(10_000), 2 },
			want:    checker.Violation,
			wantWhy: "never released",
		},
		"what happened after the recorder stopped is left out": {
			// db never listened by the end; app's start after it (beside a db attempt the recorder
			// never saw) would read as an early start.
			dbLines:  []string{line("START", "db", 110)},
			appLines: []string{line("START", "app", 70_000)},
			daemon:   []string{daemonLog("released", "app-1", 69_990, "")},
			want:     checker.TimedOut,
		},
		"pods outside the campaign are left out": {
			appLines: []string{line("START", "app", 2050)},
			daemon:   []string{daemonLog("released", "app-1", 2030, "")},
			extraPods: []seenAttempt{
				{ID: "po-1", Namespace: "podorder-system", Pod: "podorder-abcde", PodUID: "u9", Name: "podorder", Created: at(0), Started: at(1)},
				{ID: "other-1", Namespace: "default", Pod: "plain", PodUID: "u8", Name: "app", Created: at(0), Started: at(1)},
			},
			want: checker.Checked,
		},
	}
	for name, tt := range tests {
		t.Run(name, func(t *testing.T) {
			a := app
			if tt.app != nil {
				tt.app(&a)
			}
			attempts := append([]seenAttempt{a, db}, tt.extraPods...)
			lines := map[string][]string{"app-1": tt.appLines, "db-1": dbLines}
			if tt.dbLines != nil {
				lines["db-1"] = tt.dbLines
			}
			pods := kubeletEvidence(workloads, attempts, lines, recordsOf([][]logRecord{parseRecords(tt.daemon)}, at(60_000)), at(60_000))
			require.Len(t, pods, 1, "one pod of the campaign")
			require.Len(t, pods[0].Containers, 2)

			cfg := kubeletCheckerConfig(at(60_000))
			if tt.outage != nil {
				cfg.Kills, cfg.Outages = []checker.Window{*tt.outage}, []checker.Window{*tt.outage}
			}
			r := checker.Check(cfg, pods)
			require.Len(t, r.Findings, 1, "app's one attempt is judged; db is not held")
			f := r.Findings[0]
			assert.Equal(t, tt.want, f.Verdict, "%s: %v", f.Where, f.Why)
			if tt.wantWhy != "" {
				assert.Contains(t, fmt.Sprint(f.Why), tt.wantWhy)
			}
		})
	}
}

func TestAnAttemptRemovedBeforeItWasSeenExitedEndsAtTheLookThatMissedIt(t *testing.T) {
	// A dependency whose pod kubelet deleted: it ends (code unknown) no later than the recorder
	// noticed, so a hold on it is not owed a release until the end of the run.
	t0 := time.Date(2026, 12, 4, 12, 0, 0, 0, time.UTC)
	a := seenAttempt{ID: "x", Started: t0, Finished: t0.Add(time.Second), ExitCode: -1, Removed: true}
	ca := attemptOf(a, nil, podorderRecords{}, t0.Add(time.Minute))
	assert.Equal(t, t0.Add(time.Second), ca.Finished)
	assert.Equal(t, -1, ca.FinishedCode)
}

func TestWorkloadNamesArePodNamePrefixes(t *testing.T) {
	tests := map[string]string{
		"kc3-6d5f8b7c9-x2x4q": "kc3", // a Deployment's pod
		"kc7-vq2lm":           "kc7", // a Job's pod
		"kc12":                "kc12",
	}
	for pod, want := range tests {
		assert.Equal(t, want, workloadOf(pod), pod)
	}
}

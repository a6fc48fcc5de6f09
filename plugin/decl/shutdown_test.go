package decl

import (
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
)

func TestShutdownStopsDependentsBeforeTheirDependencies(t *testing.T) {
	regular := func(names ...string) []Container {
		var cs []Container
		for _, n := range names {
			cs = append(cs, Container{Name: n})
		}
		return cs
	}
	tests := map[string]struct {
		labels     map[string]string
		annots     map[string]string
		cs         []Container
		ownPreStop map[string]bool
		want       Shutdown
	}{
		"a chain stops from its end": {
			labels: map[string]string{"podorder.dev/after.web": "api", "podorder.dev/after.api": "db"},
			cs:     regular("db", "api", "web"),
			want: Shutdown{Stages: [][]string{{"web"}, {"api"}, {"db"}},
				AfterExitOf: map[string][]string{"api": {"web"}, "db": {"api"}}},
		},
		"a dependency waits for the last of its dependents, whatever the condition": {
			labels: map[string]string{"podorder.dev/after.web": "api", "podorder.dev/after.api": "db_started",
				"podorder.dev/after.report": "db_completed"},
			cs: regular("web", "api", "db", "report"),
			want: Shutdown{Stages: [][]string{{"web", "report"}, {"api"}, {"db"}},
				AfterExitOf: map[string][]string{"api": {"web"}, "db": {"api", "report"}}},
		},
		"a container with a preStop of its own is not ordered, but still counts as a dependent": {
			labels:     map[string]string{"podorder.dev/after.web": "api", "podorder.dev/after.api": "db"},
			cs:         regular("web", "api", "db"),
			ownPreStop: map[string]bool{"api": true},
			want: Shutdown{Stages: [][]string{{"web", "api"}, {"db"}},
				AfterExitOf: map[string][]string{"db": {"api"}}, OwnPreStop: []string{"api"}},
		},
		"stop-with alone orders nothing": {
			labels: map[string]string{"podorder.dev/stop-with.proxy": "main"},
			cs:     regular("main", "proxy"),
			want:   Shutdown{Stages: [][]string{{"main", "proxy"}}, AfterExitOf: map[string][]string{}},
		},
		"containers on a cycle never run and are left out": {
			labels: map[string]string{"podorder.dev/after.a": "b", "podorder.dev/after.b": "a", "podorder.dev/after.web": "db"},
			cs:     regular("a", "b", "web", "db"),
			want: Shutdown{Stages: [][]string{{"web"}, {"db"}},
				AfterExitOf: map[string][]string{"db": {"web"}}},
		},
		"init containers and native sidecars are kubelet's to stop": {
			labels: map[string]string{"podorder.dev/after.app": "proxy.setup_completed"},
			cs:     []Container{{Name: "setup", Role: Init}, {Name: "proxy", Role: Sidecar}, {Name: "app"}},
			want:   Shutdown{Stages: [][]string{{"app"}}, AfterExitOf: map[string][]string{}},
		},
		"a preStop that waits for a native sidecar stalls until the grace period ends": {
			labels: map[string]string{"podorder.dev/after.logs": "app_started", "podorder.dev/after.web": "app"},
			cs:     []Container{{Name: "logs", Role: Sidecar}, {Name: "app"}, {Name: "web"}},
			want: Shutdown{Stages: [][]string{{"web"}, {"app"}}, AfterExitOf: map[string][]string{"app": {"logs", "web"}},
				Stalled: map[string][]string{"app": {"logs"}}},
		},
		"dependencies on other pods order nothing": {
			annots: map[string]string{"podorder.dev/after.app": "pod(app=db)"},
			cs:     regular("app"),
			want:   Shutdown{Stages: [][]string{{"app"}}, AfterExitOf: map[string][]string{}},
		},
	}
	for name, tt := range tests {
		t.Run(name, func(t *testing.T) {
			d := Parse(tt.labels, tt.annots)
			d.CheckContainers(tt.cs)
			got := d.ShutdownOrder(tt.cs, tt.ownPreStop)
			if tt.want.Stalled == nil {
				tt.want.Stalled = map[string][]string{}
			}
			assert.Equal(t, tt.want, got)
			assert.Equal(t, len(tt.want.AfterExitOf) > 0, got.Ordered())
		})
	}
}

func TestAStopSignalsAndWaitsAsDeclaredElseAsKubeletWould(t *testing.T) {
	tests := map[string]struct {
		hold      Declared
		wantSig   syscall.Signal
		wantGrace time.Duration
	}{
		"nothing declared: SIGTERM and the pod's grace period": {Declared{}, syscall.SIGTERM, 30 * time.Second},
		"a signal and a grace of its own":                      {Declared{StopSignal: syscall.SIGINT, StopGrace: 5 * time.Second}, syscall.SIGINT, 5 * time.Second},
	}
	for name, tt := range tests {
		t.Run(name, func(t *testing.T) {
			sig, grace := tt.hold.StopSignalAndGrace(30 * time.Second)
			assert.Equal(t, tt.wantSig, sig)
			assert.Equal(t, tt.wantGrace, grace)
		})
	}
}

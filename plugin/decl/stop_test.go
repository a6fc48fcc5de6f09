package decl

import (
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestStopWithIsReadFromLabelsAndAnnotations(t *testing.T) {
	tests := map[string]struct {
		labels, annotations map[string]string
		want                *Declared
	}{
		"label, default condition": {
			labels: map[string]string{"podorder.dev/stop-with.proxy": "main"},
			want:   &Declared{Timeout: DefaultTimeout, StopWith: []Trigger{{"main", Exited}}},
		},
		"label with conditions": {
			labels: map[string]string{"podorder.dev/stop-with.proxy": "main_succeeded.worker_failed"},
			want:   &Declared{Timeout: DefaultTimeout, StopWith: []Trigger{{"main", Succeeded}, {"worker", Failed}}},
		},
		"annotation long form, grace and signal": {
			annotations: map[string]string{"podorder.dev/stop-with.proxy": "main, worker:failed", "podorder.dev/stop-grace.proxy": "20s",
				"podorder.dev/stop-signal.proxy": "int"},
			want: &Declared{Timeout: DefaultTimeout, StopWith: []Trigger{{"main", Exited}, {"worker", Failed}}, StopGrace: 20 * time.Second, StopSignal: syscall.SIGINT},
		},
		"label and annotation agree": {
			labels:      map[string]string{"podorder.dev/stop-with.proxy": "main"},
			annotations: map[string]string{"podorder.dev/stop-with.proxy": "main:exited"},
			want:        &Declared{Timeout: DefaultTimeout, StopWith: []Trigger{{"main", Exited}}},
		},
	}
	for name, tt := range tests {
		t.Run(name, func(t *testing.T) {
			h, err := Parse(tt.labels, tt.annotations).For("proxy")
			require.NoError(t, err)
			assert.Equal(t, tt.want, h)
		})
	}
}

func TestStopWithRejectsWhatCannotWork(t *testing.T) {
	tests := map[string]struct {
		labels, annotations map[string]string
		want                string
	}{
		"self": {
			labels: map[string]string{"podorder.dev/stop-with.proxy": "proxy"},
			want:   "container proxy stops with itself: remove proxy from podorder.dev/stop-with.proxy",
		},
		"unknown condition": {
			annotations: map[string]string{"podorder.dev/stop-with.proxy": "main:done"},
			want:        `main: unknown exit condition "done": use exited, succeeded or failed`,
		},
		"bad name": {
			labels: map[string]string{"podorder.dev/stop-with.proxy": "Main"},
			want:   `"Main" is not a container name`,
		},
		"empty": {
			annotations: map[string]string{"podorder.dev/stop-with.proxy": " "},
			want:        "empty stop-with list",
		},
		"conflicting conditions": {
			labels:      map[string]string{"podorder.dev/stop-with.proxy": "main_failed"},
			annotations: map[string]string{"podorder.dev/stop-with.proxy": "main:succeeded"},
			want:        "container proxy stops with main twice with different conditions (failed and succeeded): keep one",
		},
		"grace too short": {
			labels: map[string]string{"podorder.dev/stop-with.proxy": "main", "podorder.dev/stop-grace.proxy": "10ms"},
			want:   "stop grace must be a Go duration from 1s to 24h0m0s",
		},
		"signal not a stop signal": {
			labels: map[string]string{"podorder.dev/stop-with.proxy": "main", "podorder.dev/stop-signal.proxy": "SIGKILL"},
			want:   "stop signal must be one of SIGTERM, SIGINT, SIGQUIT, SIGHUP, SIGUSR1, SIGUSR2",
		},
	}
	for name, tt := range tests {
		t.Run(name, func(t *testing.T) {
			_, err := Parse(tt.labels, tt.annotations).For("proxy")
			require.Error(t, err)
			assert.Contains(t, err.Error(), tt.want)
		})
	}
}

func TestStopWithNamingNoContainerOfThePodIsRejected(t *testing.T) {
	p := Parse(map[string]string{"podorder.dev/stop-with.proxy": "mian"}, nil)
	p.CheckNames([]string{"main", "proxy"})
	_, err := p.For("proxy")
	require.Error(t, err)
	assert.Contains(t, err.Error(), "container proxy stops with mian, which is not in the pod; containers are: main, proxy")
}

func TestTriggerMatchesExitCodes(t *testing.T) {
	for _, tt := range []struct {
		on   ExitCondition
		code int32
		want bool
	}{
		{Exited, 0, true}, {Exited, 143, true},
		{Succeeded, 0, true}, {Succeeded, 1, false},
		{Failed, 0, false}, {Failed, 137, true},
	} {
		assert.Equal(t, tt.want, Trigger{"main", tt.on}.Matches(tt.code), "%s with %d", tt.on, tt.code)
	}
}

func TestCheckContainersRejectsHoldsKubeletsOrderCannotSatisfy(t *testing.T) {
	pod := []Container{
		{Name: "setup", Role: Init},
		{Name: "proxy", Role: Sidecar, StartupProbe: true},
		{Name: "log", Role: Sidecar},
		{Name: "migrate", Role: Init},
		{Name: "app"},
		{Name: "db"},
	}
	tests := map[string]struct {
		labels    map[string]string
		container string
		wantErr   string
	}{
		"init container waits for a regular container": {
			labels: map[string]string{"podorder.dev/after.setup": "db"}, container: "setup",
			wantErr: "deadlock setup → db → setup (→ means \"waits for\"): init container setup waits for container db, but kubelet starts regular containers only after every init container completed",
		},
		"init container waits for a later init container": {
			labels: map[string]string{"podorder.dev/after.setup": "migrate_completed"}, container: "setup",
			wantErr: "init container setup waits for init container migrate, but kubelet starts init containers one at a time, in order",
		},
		"native sidecar with a startupProbe waits for a regular container": {
			labels: map[string]string{"podorder.dev/after.proxy": "db"}, container: "proxy",
			wantErr: "native sidecar proxy (with a startupProbe) waits for container db",
		},
		"native sidecar without a startupProbe waits for a regular container": {
			labels: map[string]string{"podorder.dev/after.log": "db"}, container: "log",
		},
		"regular container waits for a native sidecar": {
			labels: map[string]string{"podorder.dev/after.app": "proxy"}, container: "app",
		},
		"init container waits for an earlier one": {
			labels: map[string]string{"podorder.dev/after.migrate": "setup_completed.proxy"}, container: "migrate",
		},
	}
	for name, tt := range tests {
		t.Run(name, func(t *testing.T) {
			p := Parse(tt.labels, nil)
			p.CheckContainers(pod)
			_, err := p.For(tt.container)
			if tt.wantErr == "" {
				assert.NoError(t, err)
				return
			}
			require.Error(t, err)
			assert.Contains(t, err.Error(), tt.wantErr)
		})
	}
}

func TestWaitingForTheCompletionOfAContainerKubeletRestartsIsWarnedOf(t *testing.T) {
	tests := map[string]struct {
		dep  Container
		warn string
	}{
		"a regular container of a pod that restarts it": {Container{Name: "migrate", Restarts: true}, "the pod's restartPolicy is Always"},
		"a native sidecar":                    {Container{Name: "migrate", Role: Sidecar, Restarts: true}, "it is a native sidecar"},
		"a regular container under OnFailure": {Container{Name: "migrate"}, ""},
		"an init container":                   {Container{Name: "migrate", Role: Init}, ""},
	}
	for name, tt := range tests {
		t.Run(name, func(t *testing.T) {
			p := Parse(map[string]string{"podorder.dev/after.api": "migrate_completed"}, nil)
			p.CheckContainers([]Container{tt.dep, {Name: "api", Restarts: true}})
			require.Empty(t, p.Errors(), "a warning, not an error: podorder obeys it")
			if tt.warn == "" {
				assert.Empty(t, p.Warnings("api"))
				return
			}
			require.Len(t, p.Warnings("api"), 1)
			assert.Contains(t, p.Warnings("api")[0], tt.warn)
			assert.Contains(t, p.Warnings("api")[0], "Make migrate an init container")
		})
	}
	p := Parse(map[string]string{"podorder.dev/after.api": "migrate"}, nil)
	p.CheckContainers([]Container{{Name: "migrate", Restarts: true}, {Name: "api", Restarts: true}})
	assert.Empty(t, p.Warnings("api"), "waiting for it to be ready is what a restarting container is for")
}

func TestTheLastAppliedPodSaysWhichContainersKubeletRestarts(t *testing.T) {
	for policy, restarts := range map[string]bool{"": true, "Always": true, "OnFailure": false, "Never": false} {
		cs, ok := ContainersFromLastApplied(map[string]string{LastAppliedAnnotation: `{"kind":"Pod","spec":{"restartPolicy":"` + policy +
			`","initContainers":[{"name":"db","restartPolicy":"Always"},{"name":"migrate"}],"containers":[{"name":"api"}]}}`})
		require.True(t, ok)
		assert.Equal(t, []bool{true, false, restarts}, []bool{cs[0].Restarts, cs[1].Restarts, cs[2].Restarts}, "restartPolicy %q", policy)
	}
}

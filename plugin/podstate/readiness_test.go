package podstate

import (
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/podorder/podorder/plugin/decl"
)

func TestReadinessOfSaysWhatDecidesAContainersReadiness(t *testing.T) {
	check := &decl.Probe{Kind: "tcp", Port: 5432, Readiness: true}
	withProbe := decl.Container{Name: "db", ReadinessProbe: true, ReadinessCheck: check}
	kubeletOnly := decl.Container{Name: "db", ReadinessProbe: true, KubeletOnly: "its readinessProbe is an exec probe: kubelet runs it"}
	waits := map[string]string{"podorder.dev/after.app": "db"}
	tests := map[string]struct {
		labels, annotations map[string]string
		node                Node
		spec                []decl.Container
		probe               string // the check podorder runs, "" for none
		kubelet             bool
		signal              string // the container's own signal, "" for none
	}{
		"readiness notify: its own READY=1 alone, not its readinessProbe nor kubelet": {
			labels: map[string]string{"podorder.dev/after.app": "db", "podorder.dev/readiness.db": "notify"},
			node:   shipped, spec: []decl.Container{withProbe}, signal: "notify",
		},
		"readiness file: the path appearing alone": {
			labels: waits, annotations: map[string]string{"podorder.dev/readiness.db": "file:/run/ready"},
			node: shipped, spec: []decl.Container{withProbe}, signal: "file:/run/ready",
		},
		"readiness notify, but nobody waits for it to be ready: nothing to watch": {
			labels: map[string]string{"podorder.dev/after.app": "db_started", "podorder.dev/readiness.db": "notify"},
			node:   shipped, spec: []decl.Container{withProbe}, kubelet: true,
		},
		"its readinessProbe, run by podorder; kubelet's verdict counts too": {
			labels: waits, node: shipped, spec: []decl.Container{withProbe}, probe: check.String(), kubelet: true,
		},
		"a readinessProbe only kubelet can run": {
			labels: waits, node: shipped, spec: []decl.Container{kubeletOnly}, kubelet: true,
		},
		"no readinessProbe: its release is its readiness": {
			labels: waits, node: shipped, spec: []decl.Container{{Name: "db"}},
		},
		"not shown by the API yet: kubelet judges, to be safe": {
			labels: waits, node: shipped, kubelet: true,
		},
		"opted out with readiness: kubelet": {
			labels: map[string]string{"podorder.dev/after.app": "db", "podorder.dev/readiness.db": "kubelet"},
			node:   shipped, spec: []decl.Container{withProbe}, kubelet: true,
		},
		"a podorder.dev/probe wins over the readinessProbe": {
			labels: waits, annotations: map[string]string{"podorder.dev/probe.db": "http:8080/ready"},
			node: shipped, spec: []decl.Container{withProbe}, probe: "http:8080/ready", kubelet: true,
		},
		"a hostNetwork pod, podorder in its own netns": {
			labels: waits, node: Node{Probes: true, API: true, HostNetwork: true}, spec: []decl.Container{withProbe}, kubelet: true,
		},
		"a hostNetwork pod, podorder in the node's netns": {
			labels: waits, node: Node{Probes: true, API: true, HostNetwork: true, ProbeHostNetwork: true},
			spec: []decl.Container{withProbe}, probe: check.String(), kubelet: true,
		},
		"nobody waits for it to be ready: no probe costs the node": {
			labels: map[string]string{"podorder.dev/after.app": "db_started"}, node: shipped, spec: []decl.Container{withProbe}, kubelet: true,
		},
		"without the API: only podorder's own knowledge": {
			labels: waits, node: Node{Probes: true}, spec: []decl.Container{withProbe},
		},
	}
	for name, tt := range tests {
		t.Run(name, func(t *testing.T) {
			spec := tt.spec
			if spec != nil {
				spec = append([]decl.Container{{Name: "app"}}, spec...)
			}
			p := New("uid", "ns", "web", decl.Parse(tt.labels, tt.annotations), tt.node, spec, nil)
			require.Empty(t, p.Decl.Errors())
			r := p.ReadinessOf("db")
			probe := ""
			if r.Probe != nil {
				probe = r.Probe.String()
			}
			assert.Equal(t, tt.probe, probe, "probe")
			assert.Equal(t, tt.kubelet, r.Kubelet, "kubelet")
			signal := ""
			if r.Signal != nil {
				signal = r.Signal.String()
			}
			assert.Equal(t, tt.signal, signal, "signal")
		})
	}
}

func TestObservedTakesTheSpecOnceAndKubeletsReadinessPerAttempt(t *testing.T) {
	f := newPod(t, map[string]string{"podorder.dev/after.app": "db"}, Node{API: true})
	app, _ := f.run("app", 0)
	db, _ := f.run("db", 0)
	require.NotNil(t, db.TS.ReleasedAt)
	assert.Nil(t, db.TS.ReadyAt, "the API has not shown the pod: kubelet judges db, to be safe")

	spec := []decl.Container{{Name: "app"}, {Name: "db", ReadinessProbe: true}}
	assert.Empty(t, summary(f.pod.Observed(Observation{Containers: spec}, at(1))), "the spec alone changes nothing yet")
	f.pod.Observed(Observation{Containers: []decl.Container{{Name: "db"}}}, at(1))
	assert.True(t, f.pod.Spec["db"].ReadinessProbe, "the first spec stays: a pod's containers never change")

	f.pod.Observed(Observation{Ready: []ReadyContainer{{Name: "db", ID: "db-stale"}}}, at(2))
	assert.Nil(t, db.TS.ReadyAt, "kubelet's readiness of another attempt is not db's")
	effects := summary(f.pod.Observed(Observation{Ready: []ReadyContainer{{Name: "db", ID: db.TS.ID}}}, at(3)))
	assert.Contains(t, effects, "write app")
	assert.Equal(t, at(3), *app.TS.ReleasedAt)
	assert.Empty(t, summary(f.pod.Observed(Observation{Ready: []ReadyContainer{{Name: "db", ID: db.TS.ID}}}, at(4))),
		"every status update repeats the ready containers: the second changes nothing")

	assert.Contains(t, summary(f.pod.Observed(Observation{Terminating: true}, at(5))), "terminating")
	assert.Empty(t, summary(f.pod.Observed(Observation{Terminating: true}, at(6))), "the deletion is taken once")
}

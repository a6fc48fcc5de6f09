package kube

import (
	"testing"

	"github.com/stretchr/testify/assert"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/tools/record"

	"github.com/podorder/podorder/hooks/dependency"
	"github.com/podorder/podorder/plugin/podstate"
)

func TestReadyContainersMatchesByContainerID(t *testing.T) {
	pod := &corev1.Pod{Status: corev1.PodStatus{ContainerStatuses: []corev1.ContainerStatus{
		{Name: "db", Ready: true, ContainerID: "containerd://abc"},
		{Name: "app", Ready: false, ContainerID: "containerd://def"},
		{Name: "waiting", Ready: true},
	}}}
	assert.Equal(t, []podstate.ReadyContainer{{Name: "db", ID: "abc"}}, ReadyContainers(pod))
}

func TestExitedContainersGivesEachTerminatedAttemptItsCode(t *testing.T) {
	pod := &corev1.Pod{Status: corev1.PodStatus{
		InitContainerStatuses: []corev1.ContainerStatus{
			{Name: "migrate", State: corev1.ContainerState{Terminated: &corev1.ContainerStateTerminated{ContainerID: "containerd://m1", ExitCode: 0}}},
		},
		ContainerStatuses: []corev1.ContainerStatus{
			{Name: "db", ContainerID: "containerd://d2", State: corev1.ContainerState{Running: &corev1.ContainerStateRunning{}},
				LastTerminationState: corev1.ContainerState{Terminated: &corev1.ContainerStateTerminated{ContainerID: "containerd://d1", ExitCode: 137}}},
			{Name: "app", State: corev1.ContainerState{Terminated: &corev1.ContainerStateTerminated{ExitCode: 1}}}, // no attempt: unmatchable
			// In a back-off before its restart: its last state is its newest attempt.
			{Name: "job", State: corev1.ContainerState{Waiting: &corev1.ContainerStateWaiting{Reason: "CrashLoopBackOff"}},
				LastTerminationState: corev1.ContainerState{Terminated: &corev1.ContainerStateTerminated{ContainerID: "containerd://j3", ExitCode: 0}}},
		},
	}}
	assert.Equal(t, []podstate.ExitedContainer{{Name: "migrate", ID: "m1", Code: 0, Current: true}, {Name: "db", ID: "d1", Code: 137},
		{Name: "job", ID: "j3", Code: 0, Current: true}}, ExitedContainers(pod))
}

func TestPodMeetsEachCondition(t *testing.T) {
	yes := true
	ready := corev1.PodStatus{Phase: corev1.PodRunning, Conditions: []corev1.PodCondition{{Type: corev1.PodReady, Status: corev1.ConditionTrue}},
		ContainerStatuses: []corev1.ContainerStatus{{Name: "a", Started: &yes, State: corev1.ContainerState{Running: &corev1.ContainerStateRunning{}}}}}
	notReady := corev1.PodStatus{Phase: corev1.PodRunning, Conditions: []corev1.PodCondition{{Type: corev1.PodReady, Status: corev1.ConditionFalse}},
		ContainerStatuses: []corev1.ContainerStatus{{Name: "a", State: corev1.ContainerState{Running: &corev1.ContainerStateRunning{}}}}}
	pending := corev1.PodStatus{Phase: corev1.PodPending}
	succeeded := corev1.PodStatus{Phase: corev1.PodSucceeded}
	spec := corev1.PodSpec{Containers: []corev1.Container{{Name: "a"}}}
	now := metav1.Now()
	tests := []struct {
		name     string
		pod      *corev1.Pod
		cond     dependency.Condition
		expected bool
	}{
		{"ready pod is ready", &corev1.Pod{Spec: spec, Status: ready}, dependency.Ready, true},
		{"running but not ready", &corev1.Pod{Spec: spec, Status: notReady}, dependency.Ready, false},
		{"running pod is started", &corev1.Pod{Spec: spec, Status: notReady}, dependency.Started, true},
		{"pending pod is not started", &corev1.Pod{Spec: spec, Status: pending}, dependency.Started, false},
		{"succeeded pod completed", &corev1.Pod{Spec: spec, Status: succeeded}, dependency.Completed, true},
		{"running pod has not completed", &corev1.Pod{Spec: spec, Status: ready}, dependency.Completed, false},
		{"terminating pod is not ready", &corev1.Pod{ObjectMeta: metav1.ObjectMeta{DeletionTimestamp: &now}, Spec: spec, Status: ready}, dependency.Ready, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			assert.Equal(t, tt.expected, PodMeets(tt.pod, tt.cond))
		})
	}
}

func TestNodeEventsAreRecordedOnTheNodeAsKubeletRecordsThem(t *testing.T) {
	rec := record.NewFakeRecorder(1)
	rec.IncludeObject = true
	s := &Source{nodeName: "node-1", recorder: rec}
	s.NodeEvent(true, "PodorderNRIUnreachable", "NRI is off")
	assert.Equal(t, "Warning PodorderNRIUnreachable NRI is off involvedObject{kind=Node,apiVersion=v1}", <-rec.Events)
	s.NodeEvent(false, "PodorderReady", "ready")
	assert.Equal(t, "Normal PodorderReady ready involvedObject{kind=Node,apiVersion=v1}", <-rec.Events)
}

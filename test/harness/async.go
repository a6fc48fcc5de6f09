package harness

import (
	"context"
	"fmt"
	"testing"
	"time"

	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// The Try and Await forms below are for goroutines other than the test's own: they return their
// error instead of failing the test, since FailNow must run on the test's goroutine. Tests that
// drive many pods at once (measurements, scale runs) collect the errors and assert on them there.

// TryRunPod is RunPod returning the sandbox's error instead of failing the test. Container errors
// are recorded in the pod, as RunPod does.
func (e *Env) TryRunPod(t testing.TB, spec PodSpec) (*Pod, error) {
	t.Helper()
	pod, err := e.runSandbox(spec)
	if err != nil {
		return nil, err
	}
	for _, c := range pod.Spec.Containers {
		e.CreateStartContainer(t, pod, c)
	}
	return pod, nil
}

// TryStopPod is StopPod returning the CRI error instead of failing the test.
func (e *Env) TryStopPod(pod *Pod) error {
	ctx, cancel := context.WithTimeout(context.Background(), criTimeout)
	defer cancel()
	if _, err := e.Runtime.StopPodSandbox(ctx, &runtimeapi.StopPodSandboxRequest{PodSandboxId: pod.ID}); err != nil {
		return fmt.Errorf("StopPodSandbox %s: %w", pod.Spec.Name, err)
	}
	if _, err := e.Runtime.RemovePodSandbox(ctx, &runtimeapi.RemovePodSandboxRequest{PodSandboxId: pod.ID}); err != nil {
		return fmt.Errorf("RemovePodSandbox %s: %w", pod.Spec.Name, err)
	}
	return nil
}

// AwaitWorkloadEvent is WaitWorkloadEvent returning its error instead of failing the test.
func AwaitWorkloadEvent(c *Container, kind string, timeout time.Duration) (WorkloadEvent, error) {
	if c.CreateErr != nil {
		return WorkloadEvent{}, c.CreateErr
	}
	if c.StartErr != nil {
		return WorkloadEvent{}, c.StartErr
	}
	line, err := waitLogLine(c.LogPath, kind+" ", timeout)
	if err != nil {
		return WorkloadEvent{}, err
	}
	return ParseWorkloadEvent(line)
}

package explain

import (
	"fmt"
	"time"

	corev1 "k8s.io/api/core/v1"

	"github.com/podorder/podorder/plugin/decl"
)

// livenessWarnings names held containers whose livenessProbe would kill them during a long hold: a
// held container is running to kubelet, and without a startupProbe whose budget exceeds the hold,
// kubelet probes its liveness from the start.
func livenessWarnings(pod *corev1.Pod, d *decl.Pod) []string {
	var out []string
	for _, c := range pod.Spec.Containers {
		h := d.Declared[c.Name]
		if h == nil || len(h.After) == 0 || c.LivenessProbe == nil {
			continue
		}
		budget := probeBudget(c.StartupProbe)
		if budget > h.Timeout {
			continue
		}
		live := probeBudget(c.LivenessProbe)
		msg := fmt.Sprintf("container %s: its livenessProbe kills it after about %s of a hold that may last %s", c.Name, live, h.Timeout)
		if c.StartupProbe != nil {
			msg = fmt.Sprintf("container %s: its startupProbe budget (%s) is shorter than its hold (%s), so its livenessProbe may kill it while held", c.Name, budget, h.Timeout)
		}
		out = append(out, msg+": give it a startupProbe with failureThreshold × periodSeconds above the hold, or a shorter podorder.dev/timeout")
	}
	return out
}

// probeBudget is how long kubelet lets a probe fail before acting: initialDelay + failureThreshold ×
// period, with kubelet's defaults.
func probeBudget(p *corev1.Probe) time.Duration {
	if p == nil {
		return 0
	}
	period, failures := p.PeriodSeconds, p.FailureThreshold
	if period == 0 {
		period = 10
	}
	if failures == 0 {
		failures = 3
	}
	return time.Duration(p.InitialDelaySeconds+period*failures) * time.Second
}

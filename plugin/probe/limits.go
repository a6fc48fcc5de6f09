package probe

import (
	"fmt"

	"github.com/podorder/podorder/plugin/decl"
)

// owner names the pod a probe is for. The zero owner stands for probes no pod caused (Start).
type owner struct{ namespace, podUID string }

// podShare is one pod's share of the runner: how many probes it has, how many of its attempts
// run, and its attempts waiting for a worker.
type podShare struct {
	owner
	ns     *nsShare
	probes int     // started, not yet stopped nor passed
	busy   int     // attempts running
	due    []*task // attempts due while no worker could take them, oldest first
}

// nsShare is one namespace's share of the runner.
type nsShare struct {
	name   string
	probes int
	busy   int
	pods   []*podShare // pods with attempts waiting for a worker, next turn first
}

// admitLocked refuses a probe beyond the node's, the namespace's or the pod's limit. The pod's
// limit counts every probe it causes, annotations and readinessProbes alike: the refused probe's
// readiness then comes from kubelet, so a pod asking for more only loses speed.
func (r *Runner) admitLocked(o owner, netns string, p *decl.Probe) error {
	if max := positive(r.MaxProbes, DefaultMaxProbes); r.active >= max {
		return fmt.Errorf("node probe limit of %d reached: not probing %s in %s; raise MaxProbes or reduce podorder.dev/probe annotations on this node",
			max, p, nsName(netns))
	}
	if o == (owner{}) {
		return nil
	}
	if ns, max := r.namespaces[o.namespace], positive(r.MaxProbesPerNamespace, DefaultMaxProbesPerNamespace); ns != nil && ns.probes >= max {
		return fmt.Errorf("namespace %s already has %d podorder probes on this node, its limit of %d: not probing %s; "+
			"spread the namespace's pods over more nodes, or let kubelet judge readiness with %s%s.<container>: kubelet",
			o.namespace, ns.probes, max, p, decl.Domain, decl.KindReadiness)
	}
	if pod, max := r.pods[o], positive(r.MaxProbesPerPod, DefaultMaxProbesPerPod); pod != nil && pod.probes >= max {
		return fmt.Errorf("pod %s in namespace %s already has %d podorder probes (podorder.dev/probe keys and the readinessProbes of containers others wait for), its limit of %d: not probing %s; "+
			"wait for fewer containers' readiness, or let kubelet judge it with %s%s.<container>: kubelet",
			o.podUID, o.namespace, pod.probes, max, p, decl.Domain, decl.KindReadiness)
	}
	return nil
}

// shareLocked returns o's share of the runner, making it for o's first probe.
func (r *Runner) shareLocked(o owner) *podShare {
	if pod := r.pods[o]; pod != nil {
		return pod
	}
	ns := r.namespaces[o.namespace]
	if ns == nil {
		ns = &nsShare{name: o.namespace}
		if r.namespaces == nil {
			r.namespaces = map[string]*nsShare{}
		}
		r.namespaces[o.namespace] = ns
	}
	pod := &podShare{owner: o, ns: ns}
	if r.pods == nil {
		r.pods = map[owner]*podShare{}
	}
	r.pods[o] = pod
	return pod
}

// endLocked counts t out of the active probes: it was stopped or it passed.
func (r *Runner) endLocked(t *task) {
	r.active--
	r.unindexLocked(t)
	t.pod.probes--
	t.pod.ns.probes--
	r.dropLocked(t.pod)
}

// dropLocked forgets pod's share, and its namespace's, once nothing of theirs remains.
func (r *Runner) dropLocked(pod *podShare) {
	if pod.probes > 0 || pod.busy > 0 || r.pods[pod.owner] != pod {
		return
	}
	delete(r.pods, pod.owner)
	if ns := pod.ns; ns.probes == 0 && ns.busy == 0 && r.namespaces[ns.name] == ns {
		delete(r.namespaces, ns.name)
	}
}

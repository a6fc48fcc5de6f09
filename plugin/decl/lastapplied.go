package decl

import (
	"encoding/json"
)

// LastAppliedAnnotation is where `kubectl apply` keeps the manifest it applied; kubelet passes pod
// annotations to the runtime, so for pods created this way the container names are known on the node
// without the Kubernetes API.
const LastAppliedAnnotation = "kubectl.kubernetes.io/last-applied-configuration"

// ContainersFromLastApplied returns the pod's containers (init containers first, in spec order) from
// the kubectl last-applied annotation, and false when the annotation is absent or does not describe
// a Pod.
func ContainersFromLastApplied(annotations map[string]string) ([]Container, bool) {
	raw, ok := annotations[LastAppliedAnnotation]
	if !ok {
		return nil, false
	}
	var obj struct {
		Kind string `json:"kind"`
		Spec struct {
			RestartPolicy  string `json:"restartPolicy"`
			InitContainers []struct {
				Name          string          `json:"name"`
				RestartPolicy string          `json:"restartPolicy"`
				StartupProbe  json.RawMessage `json:"startupProbe"`
			} `json:"initContainers"`
			Containers []struct {
				Name string `json:"name"`
			} `json:"containers"`
		} `json:"spec"`
	}
	if err := json.Unmarshal([]byte(raw), &obj); err != nil || obj.Kind != "Pod" || len(obj.Spec.Containers) == 0 {
		return nil, false
	}
	var out []Container
	for _, c := range obj.Spec.InitContainers {
		role := Init
		if c.RestartPolicy == "Always" {
			role = Sidecar
		}
		out = append(out, Container{Name: c.Name, Role: role, StartupProbe: len(c.StartupProbe) > 0 && string(c.StartupProbe) != "null", Restarts: role == Sidecar})
	}
	restarts := obj.Spec.RestartPolicy == "" || obj.Spec.RestartPolicy == "Always"
	for _, c := range obj.Spec.Containers {
		out = append(out, Container{Name: c.Name, Restarts: restarts})
	}
	return out, true
}

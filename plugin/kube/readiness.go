package kube

import (
	"fmt"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/util/intstr"

	"github.com/podorder/podorder/plugin/decl"
)

// maxProbeHeaders bounds the headers podorder copies from one readinessProbe: the API server limits
// them too, but the daemon holds every copy for as long as the probe runs.
const maxProbeHeaders = 16

// ReadinessProbe translates a container's readinessProbe into the check podorder runs itself from
// inside the pod: tcpSocket, httpGet and grpc, with their initialDelaySeconds, successThreshold and
// timeoutSeconds. It returns nil, with the reason, for what must stay on kubelet's path: no probe,
// an exec probe, a host other than the pod's own, a named port the container does not declare.
func ReadinessProbe(pod *corev1.Pod, container string) (*decl.Probe, string) {
	c := findContainer(pod, container)
	if c == nil {
		return nil, "not in the pod's spec"
	}
	rp := c.ReadinessProbe
	if rp == nil {
		return nil, "no readinessProbe"
	}
	p := &decl.Probe{
		Readiness:        true,
		InitialDelay:     time.Duration(rp.InitialDelaySeconds) * time.Second,
		SuccessThreshold: int(rp.SuccessThreshold),
		Timeout:          time.Duration(rp.TimeoutSeconds) * time.Second,
	}
	var err error
	switch h := rp.ProbeHandler; {
	case h.TCPSocket != nil:
		if h.TCPSocket.Host != "" {
			return nil, "its tcpSocket probe names a host: kubelet probes it"
		}
		p.Kind = "tcp"
		p.Port, err = resolvePort(h.TCPSocket.Port, c)
	case h.HTTPGet != nil:
		g := h.HTTPGet
		if g.Host != "" {
			return nil, "its httpGet probe names a host: kubelet probes it"
		}
		p.Kind = "http"
		if g.Scheme == corev1.URISchemeHTTPS {
			p.Kind = "https"
		}
		p.Path = g.Path
		if strings.ContainsFunc(p.Path, func(r rune) bool { return r <= ' ' || r >= 0x7f }) {
			return nil, "its httpGet path is not printable ASCII: kubelet probes it"
		}
		if !strings.HasPrefix(p.Path, "/") {
			p.Path = "/" + p.Path
		}
		if len(g.HTTPHeaders) > maxProbeHeaders {
			return nil, fmt.Sprintf("its httpGet probe sends more than the %d headers podorder copies", maxProbeHeaders)
		}
		for _, hd := range g.HTTPHeaders {
			p.Headers = append(p.Headers, decl.Header{Name: hd.Name, Value: hd.Value})
		}
		p.Port, err = resolvePort(g.Port, c)
	case h.GRPC != nil:
		p.Kind = "grpc"
		p.Port = int(h.GRPC.Port)
		if h.GRPC.Service != nil {
			p.Service = *h.GRPC.Service
		}
	default:
		return nil, "its readinessProbe is an exec probe: kubelet runs it"
	}
	if err != nil {
		return nil, err.Error()
	}
	if p.Port < 1 || p.Port > 65535 {
		return nil, fmt.Sprintf("its readinessProbe's port %d is outside 1-65535", p.Port)
	}
	return p, ""
}

// findContainer returns the named container, regular or init (a native sidecar may be waited on).
func findContainer(pod *corev1.Pod, name string) *corev1.Container {
	for _, list := range [][]corev1.Container{pod.Spec.Containers, pod.Spec.InitContainers} {
		for i := range list {
			if list[i].Name == name {
				return &list[i]
			}
		}
	}
	return nil
}

// resolvePort turns a probe's port, a number or the name of one of the container's ports, into a
// number, as kubelet does.
func resolvePort(port intstr.IntOrString, c *corev1.Container) (int, error) {
	if port.Type == intstr.Int {
		return port.IntValue(), nil
	}
	for _, cp := range c.Ports {
		if cp.Name == port.StrVal {
			return int(cp.ContainerPort), nil
		}
	}
	return 0, fmt.Errorf("its readinessProbe names port %q, which the container does not declare", port.StrVal)
}

package kube

import (
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/util/intstr"

	"github.com/podorder/podorder/plugin/decl"
)

func TestReadinessProbeTranslatesWhatPodorderCanRunItself(t *testing.T) {
	svc := "db"
	probe := func(h corev1.ProbeHandler) *corev1.Probe { return &corev1.Probe{ProbeHandler: h} }
	tests := []struct {
		name  string
		c     corev1.Container
		want  *decl.Probe
		whyNo string
	}{
		{"no probe", corev1.Container{Name: "db"}, nil, "no readinessProbe"},
		{"tcp with its thresholds",
			corev1.Container{Name: "db", ReadinessProbe: &corev1.Probe{
				ProbeHandler:        corev1.ProbeHandler{TCPSocket: &corev1.TCPSocketAction{Port: intstr.FromInt32(5432)}},
				InitialDelaySeconds: 2, SuccessThreshold: 3, TimeoutSeconds: 4, PeriodSeconds: 10}},
			&decl.Probe{Kind: "tcp", Port: 5432, Readiness: true, InitialDelay: 2 * time.Second, SuccessThreshold: 3, Timeout: 4 * time.Second}, ""},
		{"named port",
			corev1.Container{Name: "db", Ports: []corev1.ContainerPort{{Name: "pg", ContainerPort: 5432}},
				ReadinessProbe: probe(corev1.ProbeHandler{TCPSocket: &corev1.TCPSocketAction{Port: intstr.FromString("pg")}})},
			&decl.Probe{Kind: "tcp", Port: 5432, Readiness: true}, ""},
		{"unknown named port",
			corev1.Container{Name: "db", ReadinessProbe: probe(corev1.ProbeHandler{TCPSocket: &corev1.TCPSocketAction{Port: intstr.FromString("pg")}})},
			nil, `names port "pg", which the container does not declare`},
		{"https with headers and an empty path",
			corev1.Container{Name: "db", ReadinessProbe: probe(corev1.ProbeHandler{HTTPGet: &corev1.HTTPGetAction{
				Port: intstr.FromInt32(8443), Scheme: corev1.URISchemeHTTPS, HTTPHeaders: []corev1.HTTPHeader{{Name: "Host", Value: "db.local"}}}})},
			&decl.Probe{Kind: "https", Port: 8443, Path: "/", Readiness: true, Headers: []decl.Header{{Name: "Host", Value: "db.local"}}}, ""},
		{"http with a query",
			corev1.Container{Name: "db", ReadinessProbe: probe(corev1.ProbeHandler{HTTPGet: &corev1.HTTPGetAction{Port: intstr.FromInt32(80), Path: "/ready?deep=1"}})},
			&decl.Probe{Kind: "http", Port: 80, Path: "/ready?deep=1", Readiness: true}, ""},
		{"grpc with a service",
			corev1.Container{Name: "db", ReadinessProbe: probe(corev1.ProbeHandler{GRPC: &corev1.GRPCAction{Port: 9090, Service: &svc}})},
			&decl.Probe{Kind: "grpc", Port: 9090, Service: "db", Readiness: true}, ""},
		{"exec stays with kubelet",
			corev1.Container{Name: "db", ReadinessProbe: probe(corev1.ProbeHandler{Exec: &corev1.ExecAction{Command: []string{"true"}}})},
			nil, "exec probe"},
		{"another host stays with kubelet",
			corev1.Container{Name: "db", ReadinessProbe: probe(corev1.ProbeHandler{TCPSocket: &corev1.TCPSocketAction{Port: intstr.FromInt32(1), Host: "10.0.0.1"}})},
			nil, "names a host"},
		{"a path that is not printable",
			corev1.Container{Name: "db", ReadinessProbe: probe(corev1.ProbeHandler{HTTPGet: &corev1.HTTPGetAction{Port: intstr.FromInt32(80), Path: "/a b"}})},
			nil, "not printable ASCII"},
		{"port out of range",
			corev1.Container{Name: "db", ReadinessProbe: probe(corev1.ProbeHandler{GRPC: &corev1.GRPCAction{Port: 70000}})},
			nil, "outside 1-65535"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			pod := &corev1.Pod{Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "app"}, tt.c}}}
			got, why := ReadinessProbe(pod, "db")
			assert.Equal(t, tt.want, got)
			if tt.whyNo != "" {
				assert.Contains(t, why, tt.whyNo)
			}
		})
	}
}

func TestReadinessProbeOfANativeSidecar(t *testing.T) {
	pod := &corev1.Pod{Spec: corev1.PodSpec{InitContainers: []corev1.Container{{Name: "proxy",
		ReadinessProbe: &corev1.Probe{ProbeHandler: corev1.ProbeHandler{TCPSocket: &corev1.TCPSocketAction{Port: intstr.FromInt32(15000)}}}}}}}
	got, _ := ReadinessProbe(pod, "proxy")
	assert.Equal(t, &decl.Probe{Kind: "tcp", Port: 15000, Readiness: true}, got)
	got, why := ReadinessProbe(pod, "ghost")
	assert.Nil(t, got)
	assert.Equal(t, "not in the pod's spec", why)
}

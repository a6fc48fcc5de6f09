// Package chart checks podorder's Helm chart and kustomize manifests without a cluster: the chart
// lints, renders the objects of the kustomize install with the values applied, refuses misspelt
// values and impossible combinations, and carries the same admission policies; kustomize builds
// the base into any namespace. test/kubernetes installs both on the real cluster.
package chart

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/podorder/podorder/test/cluster"
)

// Helm returns the helm binary `make test-k8s` builds (PODORDER_HELM).
func Helm(t testing.TB) string {
	t.Helper()
	helm := os.Getenv("PODORDER_HELM")
	require.NotEmpty(t, helm, "PODORDER_HELM is not set: run the chart tests through `make test-k8s`, which builds helm")
	_, err := os.Stat(helm)
	require.NoError(t, err, "helm: run `make test-k8s`, which builds it into $PODORDER_CACHE/tools")
	return helm
}

// Kubectl returns the kubectl the cluster tests use (`make deps-k8s`), whose `kustomize` is the one
// `kubectl apply -k` runs.
func Kubectl(t testing.TB) string {
	t.Helper()
	kubectl := filepath.Join(cluster.BinDir(), "kubectl")
	_, err := os.Stat(kubectl)
	require.NoError(t, err, "kubectl: run `make deps-k8s`, which builds it into $PODORDER_CACHE")
	return kubectl
}

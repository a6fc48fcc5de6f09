// Package chart checks podorder's Helm chart without a cluster: it lints, it renders the objects of
// the kustomize base with the values applied, and it carries the same admission policies.
// test/kubernetes installs it on the real cluster.
package chart

import (
	"os"
	"testing"

	"github.com/stretchr/testify/require"
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

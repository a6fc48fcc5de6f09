package kubernetes

import (
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// examplesScenario applies examples/ exactly as a user would, and waits for each to work.
func examplesScenario(t *testing.T, b *bed) {
	t.Run("the examples work as applied", func(t *testing.T) {
		dir, err := filepath.Abs("../../examples")
		require.NoError(t, err)
		b.c.Kubectl(t, "apply", "-f", dir)
		b.c.WaitFor(t, "default", "deployment/shop", "condition=Available", 2*time.Minute)
		b.c.WaitFor(t, "default", "deployment/frontend", "condition=Available", 2*time.Minute)
		b.c.WaitFor(t, "default", "job/report", "condition=Complete", 2*time.Minute)

		shop := b.c.Kubectl(t, "get", "pods", "-n", "default", "-l", "app=shop", "-o", "jsonpath={.items[0].metadata.name}")
		web, api, db := b.event(t, shop, "web", "START").At, b.event(t, shop, "api", "START").At, b.event(t, shop, "db", "LISTEN").At
		assert.True(t, api.After(db) && web.After(b.event(t, shop, "api", "LISTEN").At), "shop started db → api → web")
		frontend := b.c.Kubectl(t, "get", "pods", "-n", "default", "-l", "app=frontend", "-o", "jsonpath={.items[0].metadata.name}")
		catalog := b.c.Kubectl(t, "get", "pods", "-n", "default", "-l", "app=catalog", "-o", "jsonpath={.items[0].metadata.name}")
		assert.True(t, b.event(t, frontend, "app", "START").At.After(b.event(t, catalog, "db", "LISTEN").At), "frontend waited for catalog")
		b.c.Kubectl(t, "delete", "-f", dir, "--wait=false")
	})
}

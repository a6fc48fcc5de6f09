package decl

import (
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestEveryKindHasAReaderAndAnAdmissionRule(t *testing.T) {
	seen := map[string]bool{}
	for _, k := range kinds {
		assert.NotNil(t, k.read, k.name)
		assert.NotNil(t, k.check, "%s has no admission rule", k.name)
		assert.True(t, k.labelSyntax != "" || k.annotationSyntax != "", "%s has no syntax for the admission policy", k.name)
		assert.False(t, seen[k.name], "%s is in the table twice", k.name)
		seen[k.name] = true
	}
}

func TestMessagesListEveryKey(t *testing.T) {
	every := "<after|timeout|probe|stop-with|stop-grace|stop-signal|readiness>"
	tests := []struct {
		name      string
		labels    map[string]string
		container string
		wantErr   string
	}{
		{"a key without a container names every kind", map[string]string{"podorder.dev/after": "db"}, "app",
			`label podorder.dev/after="db": key must be podorder.dev/` + every + `.<container name>`},
		{"an unknown kind offers every key of the container", map[string]string{"podorder.dev/ready.app": "db"}, "app",
			`label podorder.dev/ready.app="db": unknown key kind "ready": use podorder.dev/after.app, timeout.app, probe.app, ` +
				`stop-with.app, stop-grace.app, stop-signal.app or readiness.app`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Parse(tt.labels, nil).For(tt.container)
			require.Error(t, err)
			assert.Equal(t, tt.wantErr, err.Error())
		})
	}
}

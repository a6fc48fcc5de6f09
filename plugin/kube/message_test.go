package kube

import (
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/stretchr/testify/assert"
)

func TestCapMessageCutsOnARuneAndSaysHowMuch(t *testing.T) {
	tests := []struct {
		name, msg, want string
	}{
		{"short is kept", "web waits for db (ready)", "web waits for db (ready)"},
		{"exactly the cap is kept", strings.Repeat("a", MaxMessageBytes), strings.Repeat("a", MaxMessageBytes)},
		{"one byte over", strings.Repeat("a", MaxMessageBytes+1), strings.Repeat("a", 1003) + "… (22 more bytes)"},
		{"a hostile pod's 147 KB", strings.Repeat("b", 147_000), strings.Repeat("b", 1001) + "… (145999 more bytes)"},
		// "é" is two bytes: a cut inside one backs off to its start.
		{"multi-byte runes", strings.Repeat("é", 1000), strings.Repeat("é", 501) + "… (998 more bytes)"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := capMessage(tt.msg)
			assert.Equal(t, tt.want, got)
			assert.LessOrEqual(t, len(got), MaxMessageBytes)
			assert.True(t, utf8.ValidString(got))
		})
	}
}

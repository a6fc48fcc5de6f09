package kube

import (
	"fmt"
	"unicode/utf8"
)

// MaxMessageBytes bounds every message podorder hands to the API, an Event's or its pod condition's.
// It is the API server's limit on an events.k8s.io Event's note, which core Events do not enforce:
// without it a pod's declared names and selectors, echoed in its messages, would make each write as
// large as the pod itself (147 KB for a hostile pod), rebuilt and sent at every change.
const MaxMessageBytes = 1024

// capMessage returns msg cut to at most MaxMessageBytes, on a rune boundary, ending with how many
// bytes were cut so that a reader knows the message is incomplete.
func capMessage(msg string) string {
	if len(msg) <= MaxMessageBytes {
		return msg
	}
	// The marker is sized for the largest count it could show, so the cut never needs a second pass.
	room := MaxMessageBytes - len(marker(len(msg)))
	for room > 0 && !utf8.RuneStart(msg[room]) {
		room--
	}
	return msg[:room] + marker(len(msg)-room)
}

func marker(cut int) string { return fmt.Sprintf("… (%d more bytes)", cut) }

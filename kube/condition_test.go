package kube

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/kubernetes/fake"
	k8stesting "k8s.io/client-go/testing"

	"github.com/podorder/podorder/plugin"
	"github.com/podorder/podorder/podstate"
)

func TestConditionsPatchOnlyTheStatusWithTheNewestWishAndRetryFailures(t *testing.T) {
	pod := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "web", Namespace: "ns", UID: "uid-1"}}
	client := fake.NewClientset(pod)
	var mu sync.Mutex
	var patches []string
	failures := 1
	patched := make(chan struct{}, 8)
	client.PrependReactor("patch", "pods", func(a k8stesting.Action) (bool, runtime.Object, error) {
		p := a.(k8stesting.PatchAction)
		mu.Lock()
		defer mu.Unlock()
		if p.GetSubresource() != "status" {
			return true, nil, errors.New("not the status subresource")
		}
		if failures > 0 {
			failures--
			return true, nil, errors.New("API unavailable")
		}
		patches = append(patches, string(p.GetPatch()))
		patched <- struct{}{}
		return false, nil, nil
	})
	w := NewConditions(client, 100, slog.New(slog.NewTextHandler(io.Discard, nil)))
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	ref := plugin.PodRef{Namespace: "ns", Name: "web", UID: "uid-1"}
	since := time.Date(2026, 11, 26, 12, 0, 0, 0, time.UTC)
	w.Set(ref, podstate.PodCondition{Reason: podstate.ConditionHeld, Message: "web waits for api (ready)", Since: since})
	w.Set(ref, podstate.PodCondition{Released: true, Reason: podstate.ConditionReleased, Message: "no container is held by podorder", Since: since})
	go w.Run(ctx)
	select {
	case <-patched:
	case <-time.After(10 * time.Second):
		t.Fatal("the condition was never written after the API came back")
	}
	mu.Lock()
	defer mu.Unlock()
	require.Len(t, patches, 1, "the older wish is never written")
	var body struct {
		Metadata struct{ UID string }
		Status   struct{ Conditions []map[string]string }
	}
	require.NoError(t, json.Unmarshal([]byte(patches[0]), &body))
	assert.Equal(t, "uid-1", body.Metadata.UID, "a precondition: never another pod of the same name")
	assert.Equal(t, []map[string]string{{"type": "podorder.dev/released", "status": "True", "reason": "Released",
		"message": "no container is held by podorder", "lastTransitionTime": "2026-11-26T12:00:00Z"}}, body.Status.Conditions)
}

package kube

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"slices"
	"strings"
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
	"k8s.io/client-go/tools/record"

	"github.com/podorder/podorder/plugin/kubeapi"
	"github.com/podorder/podorder/plugin/podstate"
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
	ref := kubeapi.PodRef{Namespace: "ns", Name: "web", UID: "uid-1"}
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

// patchRecorder counts the condition patches that reach the API, in order, by pod name.
type patchRecorder struct {
	mu      sync.Mutex
	pods    []string
	bodies  []string
	patched chan string
}

func recordPatches(client *fake.Clientset) *patchRecorder {
	r := &patchRecorder{patched: make(chan string, 4096)}
	client.PrependReactor("patch", "pods", func(a k8stesting.Action) (bool, runtime.Object, error) {
		p := a.(k8stesting.PatchAction)
		r.mu.Lock()
		r.pods = append(r.pods, p.GetName())
		r.bodies = append(r.bodies, string(p.GetPatch()))
		r.mu.Unlock()
		r.patched <- p.GetName()
		return true, &corev1.Pod{}, nil
	})
	return r
}

// runRecorded runs a condition writer at 50 patches a second, until the test ends, against a fake
// API server whose patches are recorded.
func runRecorded(t *testing.T) (*Conditions, *patchRecorder) {
	client := fake.NewClientset()
	patches := recordPatches(client)
	w := NewConditions(client, 50, slog.New(slog.NewTextHandler(io.Discard, nil)))
	go w.Run(t.Context())
	return w, patches
}

func TestConditionsServeEveryPodWhileOneChurns(t *testing.T) {
	w, patches := runRecorded(t)

	churn := kubeapi.PodRef{Namespace: "ns", Name: "churn", UID: "uid-churn"}
	quiet := kubeapi.PodRef{Namespace: "ns", Name: "quiet", UID: "uid-quiet"}
	set := func(ref kubeapi.PodRef, i int) {
		w.Set(ref, podstate.PodCondition{Reason: podstate.ConditionHeld, Message: fmt.Sprintf("write %d", i)})
	}
	for i := range 10 {
		set(churn, i)
	}
	set(quiet, 0)
	for i := 10; i < 1000; i++ {
		set(churn, i)
	}
	deadline := time.After(failAfter)
	for quietSeen := false; !quietSeen; {
		select {
		case name := <-patches.patched:
			quietSeen = name == "quiet"
		case <-deadline:
			require.FailNow(t, "the quiet pod's condition was never written")
		}
	}
	patches.mu.Lock()
	defer patches.mu.Unlock()
	// Patches of the churning pod may follow the quiet pod's before this reads them: what counts is
	// the quiet pod's place.
	assert.LessOrEqual(t, slices.Index(patches.pods, "quiet"), 2, "the quiet pod waits for at most the churning pod's write in flight and one more: %v", patches.pods)
	assert.Less(t, len(patches.pods), 1000/10, "the churning pod's wishes coalesce")
}

func TestConditionsCapTheMessageOfAHostilePod(t *testing.T) {
	w, patches := runRecorded(t)

	ref := kubeapi.PodRef{Namespace: "ns", Name: "hostile", UID: "uid-1"}
	w.Set(ref, podstate.PodCondition{Reason: podstate.ConditionHeld, Message: strings.Repeat("app waits for pod(x=y) ", 147_000/23)})
	select {
	case <-patches.patched:
	case <-time.After(failAfter):
		require.FailNow(t, "no patch")
	}
	patches.mu.Lock()
	defer patches.mu.Unlock()
	var body struct {
		Status struct{ Conditions []map[string]string }
	}
	require.NoError(t, json.Unmarshal([]byte(patches.bodies[0]), &body))
	require.Len(t, body.Status.Conditions, 1)
	msg := body.Status.Conditions[0]["message"]
	assert.LessOrEqual(t, len(msg), MaxMessageBytes)
	assert.Contains(t, msg, "more bytes)")
}

func TestEventCapsTheMessageOfAHostilePod(t *testing.T) {
	s, _ := newWatchSource(t)
	events := record.NewFakeRecorder(1)
	s.recorder = events
	s.Event(kubeapi.PodRef{Namespace: "ns", Name: "hostile", UID: "uid-1"}, true, podstate.ReasonWaiting, strings.Repeat("w", 147_000))
	got := <-events.Events
	msg := strings.TrimPrefix(got, corev1.EventTypeWarning+" "+podstate.ReasonWaiting+" ")
	assert.LessOrEqual(t, len(msg), MaxMessageBytes)
	assert.True(t, strings.HasSuffix(msg, "more bytes)"), msg[len(msg)-40:])
}

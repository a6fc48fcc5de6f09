package kube

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"golang.org/x/time/rate"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/util/workqueue"

	"github.com/podorder/podorder/plugin/kubeapi"
	"github.com/podorder/podorder/plugin/podstate"
)

// Conditions writes podorder's pod condition through the pods/status subresource. Set only records
// the newest wish and queues the pod: it never waits, so an NRI handler can call it under its lock.
// One goroutine patches, at most qps a second overall; a pod whose patch fails is retried with
// exponential back-off, so that an unavailable API delays the condition but never a hold.
// The rate is shared fairly: a pod is in the queue at most once, with only its newest wish, and pods
// are served in turn, so a pod that changes its condition a thousand times a second still gets one
// patch per turn and the other pods theirs (TestConditionsServeEveryPodWhileOneChurns).
type Conditions struct {
	client  kubernetes.Interface
	log     *slog.Logger
	queue   workqueue.TypedRateLimitingInterface[string]
	limiter *rate.Limiter

	// Failed, when set, is told of every failed write, for metrics.
	Failed func()

	mu   sync.Mutex
	want map[string]wish // by pod UID
}

type wish struct {
	ref kubeapi.PodRef
	c   podstate.PodCondition
}

// NewConditions returns a writer; Run starts it.
func NewConditions(client kubernetes.Interface, qps float64, log *slog.Logger) *Conditions {
	// Only failures are delayed in the queue; the overall rate is kept by the worker, so that Set
	// never hands a delay to the queue's timer goroutine, whose channel can fill.
	retries := workqueue.NewTypedItemExponentialFailureRateLimiter[string](100*time.Millisecond, 30*time.Second)
	return &Conditions{
		client:  client,
		log:     log,
		queue:   workqueue.NewTypedRateLimitingQueueWithConfig(retries, workqueue.TypedRateLimitingQueueConfig[string]{Name: "podorder-conditions"}),
		limiter: rate.NewLimiter(rate.Limit(qps), max(1, int(qps))),
		want:    map[string]wish{},
	}
}

// Set records the condition pod should carry; the newest wins. Its message is capped to
// MaxMessageBytes here, so that neither the wishes held nor the patches sent grow with the pod.
func (w *Conditions) Set(pod kubeapi.PodRef, c podstate.PodCondition) {
	c.Message = capMessage(c.Message)
	w.mu.Lock()
	w.want[pod.UID] = wish{ref: pod, c: c}
	w.mu.Unlock()
	w.queue.Add(pod.UID)
}

// Forget drops a pod that is gone.
func (w *Conditions) Forget(podUID string) {
	w.mu.Lock()
	delete(w.want, podUID)
	w.mu.Unlock()
}

// Run patches until ctx ends.
func (w *Conditions) Run(ctx context.Context) {
	go func() {
		<-ctx.Done()
		w.queue.ShutDown()
	}()
	for {
		uid, quit := w.queue.Get()
		if quit {
			return
		}
		if w.limiter.Wait(ctx) == nil {
			w.process(ctx, uid)
		}
		w.queue.Done(uid)
	}
}

func (w *Conditions) process(ctx context.Context, uid string) {
	w.mu.Lock()
	wi, ok := w.want[uid]
	w.mu.Unlock()
	if !ok {
		w.queue.Forget(uid)
		return
	}
	err := w.patch(ctx, wi)
	switch {
	case err == nil, apierrors.IsNotFound(err):
		w.queue.Forget(uid)
		w.mu.Lock()
		if cur, ok := w.want[uid]; ok && cur == wi {
			delete(w.want, uid)
		}
		w.mu.Unlock()
	default:
		if w.Failed != nil {
			w.Failed()
		}
		w.log.Warn("cannot write the pod's podorder condition; retrying", "pod", wi.ref.Namespace+"/"+wi.ref.Name,
			"retries", w.queue.NumRequeues(uid), "error", err)
		w.queue.AddRateLimited(uid)
	}
}

// patch writes one condition with a strategic merge patch: conditions merge by type, so kubelet's
// own conditions are left alone, and the UID precondition keeps a patch off a new pod of the same name.
func (w *Conditions) patch(ctx context.Context, wi wish) error {
	status := "False"
	if wi.c.Released {
		status = "True"
	}
	body, err := json.Marshal(map[string]any{
		"metadata": map[string]any{"uid": wi.ref.UID},
		"status": map[string]any{"conditions": []map[string]any{{
			"type":               podstate.ConditionType,
			"status":             status,
			"reason":             wi.c.Reason,
			"message":            wi.c.Message,
			"lastTransitionTime": metav1.NewTime(wi.c.Since).Rfc3339Copy(),
		}}},
	})
	if err != nil {
		return fmt.Errorf("encode condition patch: %w", err)
	}
	pctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	_, err = w.client.CoreV1().Pods(wi.ref.Namespace).Patch(pctx, wi.ref.Name, types.StrategicMergePatchType, body, metav1.PatchOptions{FieldManager: "podorder"}, "status")
	return err
}

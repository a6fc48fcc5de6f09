package kubeauth

import (
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	authnv1 "k8s.io/api/authentication/v1"
	authzv1 "k8s.io/api/authorization/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/kubernetes/fake"
	k8stesting "k8s.io/client-go/testing"
)

// apiServer is a fake API server that knows the tokens "prometheus" (allowed) and "nobody" (not).
type apiServer struct {
	*fake.Clientset
	sars []authzv1.SubjectAccessReviewSpec
	down bool
}

func newAPIServer() *apiServer {
	a := &apiServer{Clientset: fake.NewClientset()}
	a.PrependReactor("create", "tokenreviews", func(action k8stesting.Action) (bool, runtime.Object, error) {
		if a.down {
			return true, nil, errors.New("connection refused")
		}
		tr := action.(k8stesting.CreateAction).GetObject().(*authnv1.TokenReview).DeepCopy()
		switch tr.Spec.Token {
		case "prometheus", "nobody":
			tr.Status = authnv1.TokenReviewStatus{Authenticated: true, User: authnv1.UserInfo{
				Username: "system:serviceaccount:monitoring:" + tr.Spec.Token, Groups: []string{"system:serviceaccounts"},
				Extra: map[string]authnv1.ExtraValue{"authentication.kubernetes.io/node-name": {"node-1"}},
			}}
		}
		return true, tr, nil
	})
	a.PrependReactor("create", "subjectaccessreviews", func(action k8stesting.Action) (bool, runtime.Object, error) {
		sar := action.(k8stesting.CreateAction).GetObject().(*authzv1.SubjectAccessReview).DeepCopy()
		a.sars = append(a.sars, sar.Spec)
		sar.Status.Allowed = sar.Spec.User == "system:serviceaccount:monitoring:prometheus"
		return true, sar, nil
	})
	return a
}

func (a *apiServer) reviews() int { return len(a.Actions()) }

var metrics = http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { fmt.Fprintln(w, "podorder_holds 0") })

func scrape(f *Filter, token string) *httptest.ResponseRecorder {
	r := httptest.NewRequest(http.MethodGet, "/metrics", nil)
	if token != "" {
		r.Header.Set("Authorization", "Bearer "+token)
	}
	w := httptest.NewRecorder()
	f.Wrap(metrics).ServeHTTP(w, r)
	return w
}

func TestTheFilterServesOnlyUsersTheAPIServerAllows(t *testing.T) {
	for _, tc := range []struct {
		name        string
		token       string
		wantStatus  int
		wantBody    string
		wantReviews int
	}{
		{"no token", "", http.StatusUnauthorized, "send a service account token", 0},
		{"a token the API server rejects", "forged", http.StatusUnauthorized, "did not authenticate", 1},
		{"a user not bound to the metrics reader role", "nobody", http.StatusForbidden, "system:serviceaccount:monitoring:nobody may not get /metrics", 2},
		{"a user bound to it", "prometheus", http.StatusOK, "podorder_holds 0", 2},
	} {
		t.Run(tc.name, func(t *testing.T) {
			api := newAPIServer()
			w := scrape(New(api, slog.New(slog.DiscardHandler)), tc.token)
			assert.Equal(t, tc.wantStatus, w.Code)
			assert.Contains(t, w.Body.String(), tc.wantBody)
			assert.Equal(t, tc.wantReviews, api.reviews())
		})
	}
}

func TestTheSubjectAccessReviewAsksForGetOnTheNonResourceURL(t *testing.T) {
	api := newAPIServer()
	require.Equal(t, http.StatusOK, scrape(New(api, slog.New(slog.DiscardHandler)), "prometheus").Code)
	require.Len(t, api.sars, 1)
	sar := api.sars[0]
	assert.Equal(t, &authzv1.NonResourceAttributes{Path: "/metrics", Verb: "get"}, sar.NonResourceAttributes)
	assert.Equal(t, "system:serviceaccount:monitoring:prometheus", sar.User)
	assert.Equal(t, []string{"system:serviceaccounts"}, sar.Groups)
	assert.Equal(t, map[string]authzv1.ExtraValue{"authentication.kubernetes.io/node-name": {"node-1"}}, sar.Extra)
}

// A flood of made-up tokens used to turn Prometheus away once its decision expired: the flood
// takes every review the rate limit allows.
func TestAnAllowedScraperIsServedThroughAFloodPastItsTTL(t *testing.T) {
	api := newAPIServer()
	f := New(api, slog.New(slog.DiscardHandler))
	now := time.Now()
	f.now = func() time.Time { return now }
	require.Equal(t, http.StatusOK, scrape(f, "prometheus").Code)
	flood := func(round int) {
		for i := range 2 * ReviewBurst {
			scrape(f, fmt.Sprintf("forged-%d-%d", round, i))
		}
		require.Equal(t, http.StatusTooManyRequests, scrape(f, fmt.Sprintf("forged-%d-more", round)).Code, "the flood took every review")
	}
	now = now.Add(TTL + time.Second)
	flood(1)
	assert.Equal(t, http.StatusOK, scrape(f, "prometheus").Code, "the expired decision is served within its grace")
	assert.Equal(t, http.StatusTooManyRequests, scrape(f, "nobody").Code, "only allowed decisions get a grace")
	now = now.Add(Grace)
	flood(2)
	assert.Equal(t, http.StatusTooManyRequests, scrape(f, "prometheus").Code, "not past its grace")
}

func TestADecisionIsRememberedForItsTTL(t *testing.T) {
	api := newAPIServer()
	f := New(api, slog.New(slog.DiscardHandler))
	now := time.Now()
	f.now = func() time.Time { return now }
	for _, token := range []string{"prometheus", "nobody", "forged"} {
		first := scrape(f, token).Code
		before := api.reviews()
		assert.Equal(t, first, scrape(f, token).Code)
		assert.Equal(t, before, api.reviews(), "%s: a second request within the TTL asks the API server nothing", token)
	}
	now = now.Add(TTL)
	before := api.reviews()
	assert.Equal(t, http.StatusOK, scrape(f, "prometheus").Code)
	assert.Equal(t, before+2, api.reviews(), "reviewed again once expired")
}

func TestAFloodOfUnknownTokensIsRateLimitedAndBounded(t *testing.T) {
	api := newAPIServer()
	f := New(api, slog.New(slog.DiscardHandler))
	now := time.Now()
	f.now = func() time.Time { return now } // the limiter refills by this clock: frozen, it does not
	codes := map[int]int{}
	for i := range 1000 {
		codes[scrape(f, fmt.Sprintf("forged-%d", i)).Code]++
	}
	assert.Equal(t, ReviewBurst, codes[http.StatusUnauthorized], "the burst is reviewed")
	assert.Greater(t, codes[http.StatusTooManyRequests], 900, "the rest is refused without asking")
	assert.LessOrEqual(t, api.reviews(), ReviewBurst+5)
	assert.LessOrEqual(t, len(f.decisions), ReviewBurst+5)
}

func TestTheCacheNeverGrowsPastItsCap(t *testing.T) {
	f := New(newAPIServer(), slog.New(slog.DiscardHandler))
	now := time.Now()
	for i := range MaxEntries + 10 {
		var key [32]byte
		key[0], key[1] = byte(i), byte(i>>8)
		f.remember(key, decision{status: http.StatusUnauthorized, expires: now.Add(TTL)}, now)
	}
	assert.Len(t, f.decisions, MaxEntries)
	var key [32]byte
	key[2] = 1
	f.remember(key, decision{status: http.StatusOK, expires: now.Add(2 * TTL)}, now.Add(TTL))
	assert.Len(t, f.decisions, 1, "expired decisions make room")
}

func TestAnUnreachableAPIServerIsAnErrorNotRemembered(t *testing.T) {
	api := newAPIServer()
	f := New(api, slog.New(slog.DiscardHandler))
	api.down = true
	assert.Equal(t, http.StatusInternalServerError, scrape(f, "prometheus").Code)
	api.down = false
	assert.Equal(t, http.StatusOK, scrape(f, "prometheus").Code)
}

func TestOnlyGetIsServed(t *testing.T) {
	api := newAPIServer()
	w := httptest.NewRecorder()
	New(api, slog.New(slog.DiscardHandler)).Wrap(metrics).ServeHTTP(w, httptest.NewRequest(http.MethodPost, "/metrics", nil))
	assert.Equal(t, http.StatusMethodNotAllowed, w.Code)
	assert.Zero(t, api.reviews())
}

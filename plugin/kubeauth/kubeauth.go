// Package kubeauth lets the Kubernetes API server decide who may read one of the daemon's HTTP
// paths, as kube-rbac-proxy and controller-runtime's metrics filters do: the request's bearer token
// is checked by a TokenReview, and the user it names by a SubjectAccessReview for the request's
// path as a nonResourceURL. A ClusterRole granting that URL is what a scraper is bound to.
package kubeauth

import (
	"context"
	"crypto/sha256"
	"fmt"
	"log/slog"
	"net/http"
	"strings"
	"sync"
	"time"

	"golang.org/x/time/rate"
	authnv1 "k8s.io/api/authentication/v1"
	authzv1 "k8s.io/api/authorization/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
)

// Decisions are remembered for TTL, up to MaxEntries tokens; reviews beyond ReviewsPerSecond
// (with a burst of ReviewBurst) are answered 429 without asking the API server. A scrape every
// 15 s then costs two reviews a minute, and a flood of made-up tokens neither grows memory nor
// reaches the API server faster than that rate.
const (
	TTL = time.Minute
	// Grace is how long past its TTL an allowed decision is still served while the rate limit
	// refuses new reviews: a flood of made-up tokens, which any pod can send, must not turn
	// Prometheus away when its decision expires. A revoked scraper keeps access that much longer.
	Grace            = time.Minute
	MaxEntries       = 1024
	ReviewsPerSecond = 5
	ReviewBurst      = 10
	// reviewTimeout leaves the metrics themselves time within the server's 5 s write timeout.
	reviewTimeout = 3 * time.Second
)

// Filter authenticates and authorizes requests through the API server.
type Filter struct {
	client  kubernetes.Interface
	log     *slog.Logger
	limiter *rate.Limiter
	now     func() time.Time

	mu sync.Mutex // guards decisions
	// decisions is keyed by the token's SHA-256, so the cache holds no credential.
	decisions map[[sha256.Size]byte]decision
}

// decision is a review's outcome: the HTTP status it answers, until it expires.
type decision struct {
	status  int
	user    string
	expires time.Time
}

// servedUntil is when d stops being served at all: at its expiry, or past its grace if it allows.
func (d decision) servedUntil() time.Time {
	if d.status == http.StatusOK {
		return d.expires.Add(Grace)
	}
	return d.expires
}

// New returns a Filter asking the API server through client.
func New(client kubernetes.Interface, log *slog.Logger) *Filter {
	return &Filter{
		client:    client,
		log:       log,
		limiter:   rate.NewLimiter(ReviewsPerSecond, ReviewBurst),
		now:       time.Now,
		decisions: map[[sha256.Size]byte]decision{},
	}
}

// Wrap serves next only to requests whose token names a user allowed to get the request's path.
func (f *Filter) Wrap(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodGet && r.Method != http.MethodHead {
			http.Error(w, "only GET", http.StatusMethodNotAllowed)
			return
		}
		token, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
		if !ok || token == "" {
			w.Header().Set("WWW-Authenticate", `Bearer realm="podorder"`)
			http.Error(w, "Unauthorized: send a service account token as Authorization: Bearer", http.StatusUnauthorized)
			return
		}
		d, err := f.decide(r.Context(), token, r.URL.Path)
		if err != nil {
			f.log.Warn("could not review a request to the metrics endpoint", "path", r.URL.Path, "remote", r.RemoteAddr, "error", err)
		}
		switch d.status {
		case http.StatusOK:
			next.ServeHTTP(w, r)
		case http.StatusUnauthorized:
			http.Error(w, "Unauthorized: the API server did not authenticate the token", http.StatusUnauthorized)
		case http.StatusForbidden:
			http.Error(w, fmt.Sprintf("Forbidden: %s may not get %s; bind it to a ClusterRole that allows it, such as podorder-metrics-reader", d.user, r.URL.Path), http.StatusForbidden)
		case http.StatusTooManyRequests:
			w.Header().Set("Retry-After", "1")
			http.Error(w, "Too many unknown tokens: retry later", http.StatusTooManyRequests)
		default:
			http.Error(w, "could not review the request with the API server", http.StatusInternalServerError)
		}
	})
}

// decide returns the cached decision for token and path, or asks the API server for one.
func (f *Filter) decide(ctx context.Context, token, path string) (decision, error) {
	key := sha256.Sum256([]byte(path + "\x00" + token))
	now := f.now()
	f.mu.Lock()
	d, ok := f.decisions[key]
	f.mu.Unlock()
	if ok && now.Before(d.expires) {
		return d, nil
	}
	if !f.limiter.AllowN(now, 1) {
		if ok && d.status == http.StatusOK && now.Before(d.servedUntil()) {
			return d, nil
		}
		return decision{status: http.StatusTooManyRequests}, nil
	}
	ctx, cancel := context.WithTimeout(ctx, reviewTimeout)
	defer cancel()
	d, err := f.review(ctx, token, path)
	if err != nil {
		// Not remembered: the API server may answer the next scrape.
		return decision{status: http.StatusInternalServerError}, err
	}
	d.expires = now.Add(TTL)
	f.remember(key, d, now)
	return d, nil
}

// review asks the API server who token is and whether they may get path.
func (f *Filter) review(ctx context.Context, token, path string) (decision, error) {
	tr, err := f.client.AuthenticationV1().TokenReviews().Create(ctx, &authnv1.TokenReview{Spec: authnv1.TokenReviewSpec{Token: token}}, metav1.CreateOptions{})
	if err != nil {
		return decision{}, fmt.Errorf("TokenReview (the daemon's ClusterRole needs create on tokenreviews): %w", err)
	}
	if !tr.Status.Authenticated {
		return decision{status: http.StatusUnauthorized}, nil
	}
	u := tr.Status.User
	extra := make(map[string]authzv1.ExtraValue, len(u.Extra))
	for k, v := range u.Extra {
		extra[k] = authzv1.ExtraValue(v)
	}
	sar, err := f.client.AuthorizationV1().SubjectAccessReviews().Create(ctx, &authzv1.SubjectAccessReview{Spec: authzv1.SubjectAccessReviewSpec{
		User: u.Username, UID: u.UID, Groups: u.Groups, Extra: extra,
		NonResourceAttributes: &authzv1.NonResourceAttributes{Path: path, Verb: "get"},
	}}, metav1.CreateOptions{})
	if err != nil {
		return decision{}, fmt.Errorf("SubjectAccessReview for %s (the daemon's ClusterRole needs create on subjectaccessreviews): %w", u.Username, err)
	}
	if !sar.Status.Allowed {
		return decision{status: http.StatusForbidden, user: u.Username}, nil
	}
	return decision{status: http.StatusOK, user: u.Username}, nil
}

// remember caches d, dropping expired decisions when the cache is full; if none has expired, d is
// not cached, which the rate limit then bounds.
func (f *Filter) remember(key [sha256.Size]byte, d decision, now time.Time) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if len(f.decisions) >= MaxEntries {
		for k, old := range f.decisions {
			if !now.Before(old.servedUntil()) {
				delete(f.decisions, k)
			}
		}
	}
	if len(f.decisions) < MaxEntries {
		f.decisions[key] = d
	}
}

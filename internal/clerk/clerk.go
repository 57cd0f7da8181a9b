// Package clerk is Gatehouse's client for Clerk's Backend API: the JSON Web
// Key Set that tokens are verified against (KeySet, or StaticKey for
// networkless verification), users fetched on first sight, and the
// verification of opaque credentials — machine (M2M) tokens, API keys and
// OAuth access tokens.
//
// It wraps clerk-sdk-go v2, built per Client from a clerk.BackendConfig (never
// the SDK's package-level backend), and reduces every failure to a few
// sentinel errors that the gRPC edge maps to status codes. Where the SDK has
// no client for an endpoint (API keys and OAuth tokens in v2.4.2), the
// request goes through the SDK's own request machinery on the same Backend,
// so every call shares one HTTP client.
package clerk

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"time"

	clerksdk "github.com/clerk/clerk-sdk-go/v2"
	"github.com/clerk/clerk-sdk-go/v2/jwks"
	"github.com/clerk/clerk-sdk-go/v2/m2m_token"
	"github.com/clerk/clerk-sdk-go/v2/user"
)

// Errors returned by Client and KeySet. Callers test them with errors.Is.
var (
	// ErrNotFound means Clerk does not know the user (HTTP 404), or the id
	// is not a Clerk user id at all.
	ErrNotFound = errors.New("clerk: not found")
	// ErrUnavailable means Clerk could not be reached or answered with a
	// transient failure (network error, timeout, 429, 5xx). Retrying later
	// may succeed.
	ErrUnavailable = errors.New("clerk: unavailable")
	// ErrInvalidToken means Clerk refused a credential (a machine token, an
	// API key or an OAuth token): a 4xx answer from verify other than 401
	// and 403, which are about the secret key, not the credential. Clerk's
	// 4xx does not say whether the credential is unknown, revoked or
	// expired.
	ErrInvalidToken = errors.New("clerk: credential refused")
	// ErrTokenRevoked is ErrInvalidToken for a credential Clerk says (200
	// with "revoked": true) has been revoked.
	ErrTokenRevoked = fmt.Errorf("%w: revoked", ErrInvalidToken)
	// ErrTokenExpired is ErrInvalidToken for a credential Clerk says (200
	// with "expired": true, or an expiration in the past) has expired.
	ErrTokenExpired = fmt.Errorf("%w: expired", ErrInvalidToken)
	// ErrUnknownKey means no signing key has the requested key id, even
	// after a JWKS refetch (or the refetch was skipped because one started
	// less than a refetch interval ago).
	ErrUnknownKey = errors.New("clerk: unknown key id")
)

// DefaultAPIURL is Clerk's production Backend API.
const DefaultAPIURL = clerksdk.APIURL

const defaultTimeout = 10 * time.Second

// Config configures a Client.
type Config struct {
	// APIURL is the Backend API base, e.g. https://api.clerk.com/v1 (the
	// default). Requests go to {APIURL}/users/{id} and so on.
	APIURL string
	// SecretKey is the instance's secret key (sk_live_… or sk_test_…).
	SecretKey string
	// HTTPClient makes the requests; the default has a 10 s timeout. Its
	// Transport is wrapped, not modified.
	HTTPClient *http.Client
}

// Client calls Clerk's Backend API. It is safe for concurrent use.
type Client struct {
	backend clerksdk.Backend
	users   *user.Client
	m2m     *m2m_token.Client
	jwks    *jwks.Client
}

// New returns a Client for cfg. It makes no request.
func New(cfg Config) *Client {
	if cfg.APIURL == "" {
		cfg.APIURL = DefaultAPIURL
	}
	hc := http.Client{Timeout: defaultTimeout}
	if cfg.HTTPClient != nil {
		hc = *cfg.HTTPClient
	}
	base := hc.Transport
	if base == nil {
		base = http.DefaultTransport
	}
	hc.Transport = statusRecorder{base: base}
	backend := clerksdk.NewBackend(&clerksdk.BackendConfig{
		URL:        &cfg.APIURL,
		Key:        &cfg.SecretKey,
		HTTPClient: &hc,
	})
	return &Client{
		backend: backend,
		users:   &user.Client{Backend: backend},
		m2m:     &m2m_token.Client{Backend: backend},
		jwks:    &jwks.Client{Backend: backend},
	}
}

// call runs one SDK request and reports the HTTP status of its response (0
// if none arrived). The SDK exposes the status only for Clerk-shaped error
// bodies; a proxy's HTML 502 would otherwise be an opaque error. For an error
// answer the returned error names the status and Clerk's error code, never
// the body, which might echo what was sent.
func call(ctx context.Context, do func(context.Context) error) (int, error) {
	var status int
	err := do(context.WithValue(ctx, statusKey{}, &status))
	if err == nil {
		return status, nil
	}
	if apiErr, ok := errors.AsType[*clerksdk.APIErrorResponse](err); ok {
		status = apiErr.HTTPStatusCode
	}
	if status >= 300 {
		if code := apiCode(err); code != "" {
			return status, fmt.Errorf("status %d (%s)", status, code)
		}
		return status, fmt.Errorf("status %d", status)
	}
	return status, err
}

// transient reports whether a failed call is worth retrying later: no
// response at all, 429, or 5xx.
func transient(status int) bool {
	return status == 0 || status == http.StatusTooManyRequests || status >= 500
}

// apiCode is the first Clerk error code in err, if any; safe to log.
func apiCode(err error) string {
	if apiErr, ok := errors.AsType[*clerksdk.APIErrorResponse](err); ok && len(apiErr.Errors) > 0 {
		return apiErr.Errors[0].Code
	}
	return ""
}

type statusKey struct{}

// statusRecorder stores each response's status code where call asked for it.
type statusRecorder struct{ base http.RoundTripper }

func (t statusRecorder) RoundTrip(r *http.Request) (*http.Response, error) {
	resp, err := t.base.RoundTrip(r)
	if p, ok := r.Context().Value(statusKey{}).(*int); ok && resp != nil {
		*p = resp.StatusCode
	}
	return resp, err
}

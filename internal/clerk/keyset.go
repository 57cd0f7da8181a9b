package clerk

import (
	"context"
	"crypto/rsa"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	clerksdk "github.com/clerk/clerk-sdk-go/v2"
	"github.com/clerk/clerk-sdk-go/v2/jwks"
	"golang.org/x/sync/singleflight"
)

const (
	defaultRefetchInterval = 5 * time.Second
	// fetchTimeout bounds one JWKS fetch by default. It is the fetch's own
	// deadline, independent of the callers waiting on it.
	fetchTimeout = 10 * time.Second
)

// errSkipped is returned inside the single flight when a fetch started less
// than a refetch interval ago; callers turn it into ErrUnknownKey.
var errSkipped = errors.New("clerk: JWKS refetch skipped: within refetch interval")

// KeySetOptions configures a KeySet.
type KeySetOptions struct {
	// RefetchInterval is the least time between the starts of two JWKS
	// fetches, for all callers together; default 5 s.
	RefetchInterval time.Duration
	// FetchTimeout bounds one fetch, whoever waits for it; default 10 s.
	// A fetch that runs out of it is ErrUnavailable.
	FetchTimeout time.Duration
	// OnFetch, if set, is called once per JWKS request with "ok" or
	// "error" (a metrics hook). It must not block.
	OnFetch func(result string)
	// Now replaces time.Now in tests.
	Now func() time.Time
}

// KeySet is a cache of the instance's session-token signing keys, fetched
// from {APIURL}/jwks. A lookup of a cached key id is lock-free and does not
// allocate. An unknown key id starts at most one fetch per RefetchInterval,
// shared by every caller (single flight), so forged key ids cannot flood
// Clerk while a rotated key is still picked up within one interval.
// It is safe for concurrent use.
type KeySet struct {
	jwks     *jwks.Client
	interval time.Duration
	timeout  time.Duration
	onFetch  func(string)
	now      func() time.Time

	// keys is replaced, never modified: readers need no lock.
	keys  atomic.Pointer[map[string]*clerksdk.JSONWebKey]
	ready atomic.Bool
	group singleflight.Group

	mu         sync.Mutex
	lastFetch  time.Time // when the latest fetch started
	hasFetched bool
	// lastErr is the latest fetch's failure, nil if it succeeded. Within
	// the refetch window it is every unknown key id's answer: while the
	// JWKS cannot be had, a key id not in the cache is unavailable, not
	// unknown.
	lastErr error
}

// NewKeySet returns an empty KeySet that fetches through c. It makes no
// request; call Refresh to load the keys eagerly.
func (c *Client) NewKeySet(opts KeySetOptions) *KeySet {
	if opts.RefetchInterval <= 0 {
		opts.RefetchInterval = defaultRefetchInterval
	}
	if opts.FetchTimeout <= 0 {
		opts.FetchTimeout = fetchTimeout
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	return &KeySet{
		jwks:     c.jwks,
		interval: opts.RefetchInterval,
		timeout:  opts.FetchTimeout,
		onFetch:  opts.OnFetch,
		now:      opts.Now,
	}
}

// Key returns the RS256 signing key with key id kid. An unknown kid waits
// for a refetch (a new one, or one already in flight) but no longer than
// ctx allows, returning ctx's error if it ends first; the fetch itself goes
// on for the other callers. A kid still unknown after a fetch that
// succeeded, or within RefetchInterval of one, is ErrUnknownKey. A failed
// fetch is ErrUnavailable when Clerk could not answer (including when the
// fetch ran out of its own time), and so is every unknown kid for the rest
// of that fetch's RefetchInterval: the keys are unavailable, and a token
// naming a key not yet cached may well be valid. Cached keys keep working
// throughout.
func (ks *KeySet) Key(ctx context.Context, kid string) (*clerksdk.JSONWebKey, error) {
	if k := ks.lookup(kid); k != nil {
		return k, nil
	}
	if kid == "" {
		return nil, ErrUnknownKey // no fetch can help
	}
	if err := ks.refetch(ctx); err != nil && !errors.Is(err, errSkipped) {
		return nil, err
	}
	if k := ks.lookup(kid); k != nil {
		return k, nil
	}
	return nil, ErrUnknownKey
}

// Ready reports whether a JWKS fetch has succeeded at least once.
func (ks *KeySet) Ready() bool { return ks.ready.Load() }

// Refresh fetches the JWKS now, for use at startup. Like a lookup of an
// unknown key, it joins a fetch already in flight, and makes no request
// within RefetchInterval of the last fetch: it then returns that fetch's
// error, or nil if it succeeded.
func (ks *KeySet) Refresh(ctx context.Context) error {
	if err := ks.refetch(ctx); err != nil && !errors.Is(err, errSkipped) {
		return err
	}
	return nil
}

func (ks *KeySet) lookup(kid string) *clerksdk.JSONWebKey {
	if m := ks.keys.Load(); m != nil {
		return (*m)[kid]
	}
	return nil
}

// refetch joins or starts the single flight and waits for it until ctx ends.
func (ks *KeySet) refetch(ctx context.Context) error {
	// The fetch keeps ctx's values (trace ids) but not its cancellation:
	// an impatient caller must not cancel the fetch for everyone else.
	fetchCtx := context.WithoutCancel(ctx)
	ch := ks.group.DoChan("jwks", func() (any, error) {
		return nil, ks.fetchIfDue(fetchCtx)
	})
	select {
	case <-ctx.Done():
		return fmt.Errorf("clerk: waiting for JWKS: %w", ctx.Err())
	case res := <-ch:
		return res.Err
	}
}

// fetchIfDue fetches the JWKS unless a fetch started within the interval,
// in which case it answers with that fetch's failure, or errSkipped. It runs
// only inside the single flight.
func (ks *KeySet) fetchIfDue(ctx context.Context) error {
	ks.mu.Lock()
	now := ks.now()
	if ks.hasFetched && now.Sub(ks.lastFetch) < ks.interval {
		err := ks.lastErr
		ks.mu.Unlock()
		if err != nil {
			return err
		}
		return errSkipped
	}
	ks.lastFetch, ks.hasFetched = now, true
	ks.mu.Unlock()

	ctx, cancel := context.WithTimeout(ctx, ks.timeout)
	defer cancel()
	keys, err := ks.fetch(ctx)
	ks.mu.Lock()
	ks.lastErr = err
	ks.mu.Unlock()
	if ks.onFetch != nil {
		result := "ok"
		if err != nil {
			result = "error"
		}
		ks.onFetch(result)
	}
	if err != nil {
		return err
	}
	ks.keys.Store(&keys)
	ks.ready.Store(true)
	return nil
}

func (ks *KeySet) fetch(ctx context.Context) (map[string]*clerksdk.JSONWebKey, error) {
	var set *clerksdk.JSONWebKeySet
	status, err := call(ctx, func(ctx context.Context) (err error) {
		set, err = ks.jwks.Get(ctx, &jwks.GetParams{})
		return err
	})
	switch {
	case err == nil:
	case transient(status):
		return nil, fmt.Errorf("clerk: fetch JWKS: %w: %w", ErrUnavailable, err)
	default:
		return nil, fmt.Errorf("clerk: fetch JWKS: %w", err)
	}
	keys := make(map[string]*clerksdk.JSONWebKey, len(set.Keys))
	for _, k := range set.Keys {
		if usable(k) {
			keys[k.KeyID] = k
		}
	}
	return keys, nil
}

// usable reports whether k can verify Clerk session tokens: an RSA
// signature key for RS256. Anything else in the set is ignored.
func usable(k *clerksdk.JSONWebKey) bool {
	if k == nil || k.KeyID == "" || k.Algorithm != "RS256" || (k.Use != "" && k.Use != "sig") {
		return false
	}
	_, ok := k.Key.(*rsa.PublicKey)
	return ok
}

// StaticKey is a single PEM public key configured out of band
// (CLERK_JWT_KEY): networkless verification, as Clerk's SDKs do it.
type StaticKey struct {
	key *clerksdk.JSONWebKey
}

// NewStaticKey parses a PKIX "PUBLIC KEY" PEM block holding an RSA key.
func NewStaticKey(pem string) (*StaticKey, error) {
	k, err := clerksdk.JSONWebKeyFromPEM(pem)
	if err != nil {
		return nil, fmt.Errorf("clerk: JWT key: %w", err)
	}
	if _, ok := k.Key.(*rsa.PublicKey); !ok {
		return nil, fmt.Errorf("clerk: JWT key: %T is not an RSA public key", k.Key)
	}
	return &StaticKey{key: k}, nil
}

// Key returns the configured key whatever kid is: in networkless mode a
// token's key id is not consulted, its signature is.
func (s *StaticKey) Key(context.Context, string) (*clerksdk.JSONWebKey, error) {
	return s.key, nil
}

// Ready is always true: the key needs no fetch.
func (s *StaticKey) Ready() bool { return true }

package auth

import (
	"context"
	"fmt"
	"net/netip"
	"strings"
	"sync"
	"time"

	"github.com/hashicorp/golang-lru/v2/expirable"
	"golang.org/x/time/rate"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/peer"
)

// Defaults of the verification budget beyond GATEHOUSE_VERIFY_RATE's (whose
// defaults are config.DefaultVerifyBurst and config.DefaultVerifyRate).
const (
	defaultMaxCallers  = 10_000
	defaultMaxInFlight = 16
	// busyRetryAfter is the RetryInfo of a verification refused because too
	// many are in flight: about the time one takes.
	busyRetryAfter = time.Second
)

// verifyBudget decides whether a caller may start a request to Clerk's
// verify endpoints now: a token bucket per caller address
// (golang.org/x/time/rate), and a bound on the requests in flight for all
// callers together. Only new requests spend it: a cached answer, a cached
// refusal, or joining a request already in flight for the same token costs
// nothing, so callers presenting known credentials keep working while a
// flood of invented ones is refused. Renewing a credential Clerk accepted
// before, once its cached answer has run out, takes a slot but nothing
// from the caller's bucket: a machine behind the same address (or proxy) as
// a flood must not lose its credential every 30 s, and only someone holding
// a genuine credential can renew one.
type verifyBudget struct {
	limit rate.Limit
	burst int

	mu sync.Mutex // makes a caller's get-or-create of its limiter atomic
	// callers holds a limiter per address, bounded: the least recently
	// seen address is forgotten first, and so is one idle for longer than
	// its bucket takes to refill (its bucket would be full again anyway).
	callers *expirable.LRU[string, *rate.Limiter]

	slots chan struct{} // one per request in flight
}

func newVerifyBudget(burst int, perSecond float64, maxCallers, maxInFlight int) *verifyBudget {
	idle := time.Minute
	if refill := time.Duration(float64(burst) / perSecond * float64(time.Second)); refill > idle {
		idle = refill
	}
	return &verifyBudget{
		limit:   rate.Limit(perSecond),
		burst:   burst,
		callers: expirable.NewLRU[string, *rate.Limiter](maxCallers, nil, idle),
		slots:   make(chan struct{}, maxInFlight),
	}
}

// admit takes one request from caller's bucket (unless renewal) and one
// slot, or neither: a caller over its rate gets ReasonRateLimited with the
// time until its next token, and one finding every slot taken ReasonBusy.
// release frees the slot when the request is done.
func (b *verifyBudget) admit(caller string, now time.Time, renewal bool) (release func(), err error) {
	if renewal {
		return b.slot(func() {})
	}
	b.mu.Lock()
	lim, ok := b.callers.Get(caller)
	if !ok {
		lim = rate.NewLimiter(b.limit, b.burst)
	}
	b.callers.Add(caller, lim) // renews the idle expiry
	b.mu.Unlock()

	r := lim.ReserveN(now, 1)
	if d := r.DelayFrom(now); !r.OK() || d > 0 {
		r.CancelAt(now)
		return nil, exhausted(ReasonRateLimited, max(d, time.Millisecond),
			fmt.Errorf("caller %s is over its budget of verify calls to Clerk", caller))
	}
	return b.slot(func() { r.CancelAt(now) }) // on refusal, nothing was spent
}

// slot takes a slot for a request in flight, or calls refund and refuses
// with ReasonBusy if every slot is taken.
func (b *verifyBudget) slot(refund func()) (release func(), err error) {
	select {
	case b.slots <- struct{}{}:
		return func() { <-b.slots }, nil
	default:
		refund()
		return nil, exhausted(ReasonBusy, busyRetryAfter,
			fmt.Errorf("%d verify calls to Clerk in flight already", cap(b.slots)))
	}
}

// ForwardedForKey is the metadata (HTTP header) in which a proxy names the
// addresses a call came through, the client's first: read only from the
// trusted proxies (OpaqueConfig.TrustedProxies).
const ForwardedForKey = "x-forwarded-for"

// callerAddress is the key of the caller's budget: the address a call came
// from, without its port, and for IPv6 its /64 (budgetKey). gRPC puts the
// remote address in the context's peer; the HTTP listener does the same for
// Connect, gRPC-Web and REST. A call whose peer is one of the trusted
// proxies is charged to the address the proxies forwarded it for: the
// rightmost address in x-forwarded-for that is not a trusted proxy itself —
// anything further left, the client may have written. A hop that is not an
// address stops the search, and the peer is charged. A call without an
// address shares the budget of the empty address.
func callerAddress(ctx context.Context, trusted []netip.Prefix) string {
	if a, ok := callerAddr(ctx, trusted); ok {
		return budgetKey(a)
	}
	if p, ok := peer.FromContext(ctx); ok && p.Addr != nil {
		return p.Addr.String() // not an IP address: as it is
	}
	return ""
}

// callerAddr is callerAddress's address, if the peer's is an IP address.
func callerAddr(ctx context.Context, trusted []netip.Prefix) (netip.Addr, bool) {
	p, ok := peer.FromContext(ctx)
	if !ok || p.Addr == nil {
		return netip.Addr{}, false
	}
	addr, ok := parseAddr(p.Addr.String())
	if !ok || !inAny(addr, trusted) {
		return addr, ok
	}
	values := metadata.ValueFromIncomingContext(ctx, ForwardedForKey)
	seen := 0
	for i := len(values) - 1; i >= 0; i-- {
		rest := values[i]
		for more := true; more; {
			item := rest
			if comma := strings.LastIndexByte(rest, ','); comma >= 0 {
				item, rest = rest[comma+1:], rest[:comma]
			} else {
				more = false // the value's first item
			}
			if seen++; seen > maxForwardedHops {
				return addr, true
			}
			hop, ok := parseAddr(strings.TrimSpace(item))
			if !ok {
				return addr, true
			}
			if !inAny(hop, trusted) {
				return hop, true
			}
		}
	}
	return addr, true
}

// budgetKey is the key of address a's budget: the address itself for IPv4,
// and for IPv6 its /64 — the block one subscriber or host is handed, whose
// 2^64 addresses one client could otherwise spread a flood over, one bucket
// each, pushing everyone else's out of the bounded set of buckets.
func budgetKey(a netip.Addr) string {
	if a.Is6() {
		return netip.PrefixFrom(a, 64).Masked().String()
	}
	return a.String()
}

// maxForwardedHops bounds the trusted proxies a call may have come
// through: past it, the proxy nearest Gatehouse is charged. It also keeps
// a long header's cost in check.
const maxForwardedHops = 16

// parseAddr reads an IP address, with a port or without ("192.0.2.1",
// "192.0.2.1:443", "[2001:db8::1]:443", "[2001:db8::1]"), IPv4-mapped IPv6
// as IPv4, without an IPv6 zone (which no prefix contains).
func parseAddr(s string) (netip.Addr, bool) {
	a, err := netip.ParseAddr(strings.TrimSuffix(strings.TrimPrefix(s, "["), "]"))
	if err != nil {
		ap, err := netip.ParseAddrPort(s)
		if err != nil {
			return netip.Addr{}, false
		}
		a = ap.Addr()
	}
	return a.Unmap().WithZone(""), true
}

func inAny(a netip.Addr, prefixes []netip.Prefix) bool {
	for _, p := range prefixes {
		if p.Contains(a) {
			return true
		}
	}
	return false
}

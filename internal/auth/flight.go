package auth

import (
	"context"
	"fmt"
	"sync"
)

// flight runs at most one call per key at a time, shared by every caller
// that asks for the key while it runs, and cancels a call as soon as no
// caller waits for it any more. golang.org/x/sync/singleflight shares calls
// too, but its calls run on whatever context the first caller gave them:
// one detached from the callers (as the KeySet's JWKS fetch is) outlives
// them all, one tied to the first caller dies with it. A verification that
// nobody waits for is a request to Clerk that only spends its rate limit.
type flight[V any] struct {
	mu    sync.Mutex
	calls map[string]*flightCall[V]
}

type flightCall[V any] struct {
	done    chan struct{} // closed when val and err are set
	val     V
	err     error
	waiters int // callers waiting; guarded by flight.mu
	cancel  context.CancelFunc
}

// do returns the result of fn for key: it joins the call already in flight
// for key; or else returns what cached holds for key, if it holds it by now
// (a call for key may have ended between the caller's own look and this
// one, and fn remembers its result before its call ends); or else asks
// admit whether a new call may start and, if it may, starts fn in its own
// goroutine with a context that keeps ctx's values and ends when fn's
// caller count drops to zero. admit's release is called when fn returns;
// admit's error is returned as it is, and no call starts.
//
// The caller waits until the call ends or ctx does; in the second case do
// returns an error wrapping errClerkWait and ctx's error.
func (f *flight[V]) do(ctx context.Context, key string, cached func() (V, error, bool), admit func() (release func(), err error), fn func(context.Context) (V, error)) (V, error) {
	f.mu.Lock()
	c, ok := f.calls[key]
	if ok {
		c.waiters++
	} else {
		if v, err, ok := cached(); ok {
			f.mu.Unlock()
			return v, err
		}
		release, err := admit()
		if err != nil {
			f.mu.Unlock()
			var zero V
			return zero, err
		}
		callCtx, cancel := context.WithCancel(context.WithoutCancel(ctx))
		c = &flightCall[V]{done: make(chan struct{}), waiters: 1, cancel: cancel}
		if f.calls == nil {
			f.calls = make(map[string]*flightCall[V])
		}
		f.calls[key] = c
		go func() {
			defer release()
			defer cancel()
			c.val, c.err = fn(callCtx)
			f.mu.Lock()
			if f.calls[key] == c {
				delete(f.calls, key)
			}
			f.mu.Unlock()
			close(c.done)
		}()
	}
	f.mu.Unlock()

	select {
	case <-c.done:
		return c.val, c.err
	case <-ctx.Done():
		f.leave(key, c)
		var zero V
		return zero, fmt.Errorf("%w: %w", errClerkWait, ctx.Err())
	}
}

// leave counts one caller of c out; the last one out cancels c, and a later
// caller for key starts afresh.
func (f *flight[V]) leave(key string, c *flightCall[V]) {
	f.mu.Lock()
	defer f.mu.Unlock()
	c.waiters--
	if c.waiters > 0 {
		return
	}
	select {
	case <-c.done: // finished meanwhile: nothing to cancel
	default:
		c.cancel()
		if f.calls[key] == c {
			delete(f.calls, key)
		}
	}
}

// inFlight counts the calls running (for tests).
func (f *flight[V]) inFlight() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return len(f.calls)
}

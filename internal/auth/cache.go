package auth

import (
	"hash/maphash"
	"sync"
	"time"
)

const cacheShards = 32

// tokenCache maps a token to a verified result until a deadline. It is
// bounded: a full shard first drops its expired entries and then, if still
// crowded, arbitrary ones, down to 7/8 of its share, so eviction work is
// amortized over the inserts that follow.
//
// A lookup takes a shard's read lock, hashes the token once for the shard and
// once in the map, and does not allocate. Entries are checked against the
// deadline on every lookup, so an expired token is never returned even before
// it is evicted.
type tokenCache[V any] struct {
	seed     maphash.Seed
	perShard int
	shards   [cacheShards]cacheShard[V]
}

type cacheShard[V any] struct {
	mu sync.RWMutex
	m  map[string]cacheEntry[V]
	_  [32]byte // pad to 64 bytes: neighbouring shards do not share a cache line
}

type cacheEntry[V any] struct {
	v     V
	until int64 // unix nanoseconds; the entry is valid while now < until
}

// newTokenCache returns a cache holding at most about size entries; nil if
// size <= 0 (no caching). A nil *tokenCache is valid and caches nothing.
func newTokenCache[V any](size int) *tokenCache[V] {
	if size <= 0 {
		return nil
	}
	c := &tokenCache[V]{seed: maphash.MakeSeed(), perShard: max(1, size/cacheShards)}
	for i := range c.shards {
		c.shards[i].m = make(map[string]cacheEntry[V])
	}
	return c
}

func (c *tokenCache[V]) shard(key string) *cacheShard[V] {
	return &c.shards[maphash.String(c.seed, key)%cacheShards]
}

// get returns the value cached for key if it is still valid at now.
func (c *tokenCache[V]) get(key string, now time.Time) (v V, ok bool) {
	v, ok, _ = c.lookup(key, now)
	return v, ok
}

// lookup is get, also reporting whether key is held but expired: a token
// verified before, whose entry no insert has evicted yet.
func (c *tokenCache[V]) lookup(key string, now time.Time) (v V, ok, expired bool) {
	if c == nil {
		return v, false, false
	}
	s := c.shard(key)
	s.mu.RLock()
	e, found := s.m[key]
	s.mu.RUnlock()
	switch {
	case !found:
		return v, false, false
	case now.UnixNano() >= e.until:
		return v, false, true
	}
	return e.v, true, false
}

// put caches v for key until until. It does nothing if until is not after
// now.
func (c *tokenCache[V]) put(key string, v V, until, now time.Time) {
	if c == nil || !until.After(now) {
		return
	}
	s := c.shard(key)
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, ok := s.m[key]; !ok && len(s.m) >= c.perShard {
		s.evict(now.UnixNano(), c.perShard-c.perShard/8)
	}
	s.m[key] = cacheEntry[V]{v: v, until: until.UnixNano()}
}

// delete drops key.
func (c *tokenCache[V]) delete(key string) {
	if c == nil {
		return
	}
	s := c.shard(key)
	s.mu.Lock()
	delete(s.m, key)
	s.mu.Unlock()
}

// len counts the entries, expired or not (for tests).
func (c *tokenCache[V]) len() int {
	if c == nil {
		return 0
	}
	n := 0
	for i := range c.shards {
		s := &c.shards[i]
		s.mu.RLock()
		n += len(s.m)
		s.mu.RUnlock()
	}
	return n
}

// evict drops expired entries, then arbitrary ones (map order is random)
// until at most target remain. The caller holds the write lock.
func (s *cacheShard[V]) evict(now int64, target int) {
	for k, e := range s.m {
		if now >= e.until {
			delete(s.m, k)
		}
	}
	for k := range s.m {
		if len(s.m) <= target {
			break
		}
		delete(s.m, k)
	}
}

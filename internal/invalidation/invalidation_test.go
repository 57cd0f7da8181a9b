package invalidation_test

import (
	"context"
	"fmt"
	"net"
	"net/url"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/gatehouse-dev/gatehouse/internal/invalidation"
	"github.com/gatehouse-dev/gatehouse/internal/store"
	"github.com/gatehouse-dev/gatehouse/internal/store/storetest"
)

// recorder is a Cache that records what it is told.
type recorder struct {
	mu     sync.Mutex
	keys   []invalidation.Key
	resets int
}

func (r *recorder) Invalidate(k invalidation.Key) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.keys = append(r.keys, k)
}

func (r *recorder) InvalidateAll() {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.resets++
}

func (r *recorder) has(k invalidation.Key) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Contains(r.keys, k)
}

func (r *recorder) resetCount() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.resets
}

// replica is one process's Bus on a store, listening until the test ends
// or stop.
type replica struct {
	store *store.Store
	bus   *invalidation.Bus
	cache *recorder
	reg   *prometheus.Registry

	cancel   context.CancelFunc
	done     chan error // Listen's result
	stopOnce sync.Once
	stopErr  error
}

// stop ends Listen and returns its error, or an error if it does not
// return within limit. Later calls return the first one's answer.
func (r *replica) stop(limit time.Duration) error {
	r.stopOnce.Do(func() {
		r.cancel()
		select {
		case err := <-r.done:
			if err != nil {
				r.stopErr = fmt.Errorf("Listen: %w", err)
			}
		case <-time.After(limit):
			r.stopErr = fmt.Errorf("Listen did not return within %v of being stopped", limit)
		}
	})
	return r.stopErr
}

func newReplica(t *testing.T, url string) *replica {
	t.Helper()
	return newReplicaWith(t, url, invalidation.Options{MinReconnect: 20 * time.Millisecond, MaxReconnect: 200 * time.Millisecond})
}

// newReplicaWith is newReplica with opts (a registry of its own added).
func newReplicaWith(t *testing.T, url string, opts invalidation.Options) *replica {
	t.Helper()
	ctx := context.Background()
	s, err := store.Open(ctx, url)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	reg := prometheus.NewRegistry()
	opts.Registerer = reg
	bus, err := invalidation.New(s, opts)
	if err != nil {
		t.Fatal(err)
	}
	lctx, cancel := context.WithCancel(ctx)
	r := &replica{store: s, bus: bus, cache: &recorder{}, reg: reg, cancel: cancel, done: make(chan error, 1)}
	bus.Subscribe(r.cache)
	go func() { r.done <- bus.Listen(lctx) }()
	t.Cleanup(func() {
		if err := r.stop(20 * time.Second); err != nil {
			t.Error(err)
		}
	})
	select {
	case <-bus.Subscribed():
	case <-time.After(10 * time.Second):
		t.Fatal("not subscribed within 10 s")
	}
	return r
}

// change runs a transaction on r's store that publishes keys, and commits it
// (then calls Committed) or rolls it back.
func (r *replica) change(t *testing.T, commit bool, keys ...invalidation.Key) {
	t.Helper()
	ctx := store.WithNotify(context.Background())
	tx, err := r.store.Client.Tx(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if err := r.bus.Publish(ctx, keys...); err != nil {
		tx.Rollback()
		t.Fatal(err)
	}
	if !commit {
		if err := tx.Rollback(); err != nil {
			t.Fatal(err)
		}
		return
	}
	if err := tx.Commit(); err != nil {
		t.Fatal(err)
	}
	r.bus.Committed(keys...)
}

func (r *replica) counted(direction string) float64 {
	return metricValue(r.reg, "gatehouse_cache_notifications_total", direction)
}

// metricValue reads a counter or gauge through the registry, as /metrics
// would: the series whose direction label is direction ("" for none).
func metricValue(reg *prometheus.Registry, name, direction string) float64 {
	mfs, _ := reg.Gather()
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
		for _, m := range mf.GetMetric() {
			got := ""
			for _, l := range m.GetLabel() {
				if l.GetName() == "direction" {
					got = l.GetValue()
				}
			}
			if got == direction {
				return m.GetCounter().GetValue() + m.GetGauge().GetValue()
			}
		}
	}
	return -1
}

func waitUntil(t *testing.T, limit time.Duration, what string, cond func() bool) time.Duration {
	t.Helper()
	began := time.Now()
	for !cond() {
		if time.Since(began) > limit {
			t.Fatalf("%s: not within %v", what, limit)
		}
		time.Sleep(5 * time.Millisecond)
	}
	return time.Since(began)
}

// TestChangesReachTheOtherReplicasOnCommitOnly: a key published in a
// transaction reaches the other replica's caches when it commits, never
// when it rolls back; the publishing replica's own caches hear of it
// through Committed, not through its listener.
func TestChangesReachTheOtherReplicasOnCommitOnly(t *testing.T) {
	url := storetest.URL(t, "postgres")
	if err := func() error { // the schema, so that transactions can begin
		s, err := store.Open(context.Background(), url)
		if err != nil {
			return err
		}
		defer s.Close()
		return s.Migrate(context.Background())
	}(); err != nil {
		t.Fatal(err)
	}
	a, b := newReplica(t, url), newReplica(t, url)

	a.change(t, false, invalidation.User("user_rolledback"))
	a.change(t, true, invalidation.User("user_committed"), invalidation.User("user_committed2"))
	took := waitUntil(t, time.Second, "B to hear of A's commit", func() bool {
		return b.cache.has(invalidation.User("user_committed2"))
	})
	t.Logf("notification latency: %v", took)
	// Postgres delivers notifications in commit order: had the rolled-back
	// one been sent, it would have arrived first.
	if b.cache.has(invalidation.User("user_rolledback")) {
		t.Error("B heard of a change whose transaction rolled back")
	}
	if !b.cache.has(invalidation.User("user_committed")) {
		t.Error("B missed a key of the committed transaction")
	}
	if !a.cache.has(invalidation.User("user_committed")) {
		t.Error("A's own cache was not told at commit")
	}
	if got := a.counted("sent"); got != 2 {
		t.Errorf("A counted %v sent, want 2", got)
	}
	if got := b.counted("received"); got != 2 {
		t.Errorf("B counted %v received, want 2", got)
	}
	if got := a.counted("received"); got != 0 {
		t.Errorf("A counted %v received, want 0 (its own notifications are skipped)", got)
	}
}

// TestListenerReconnects: when the listening connection is lost, the Bus
// reconnects, subscribes again and resets its caches (whatever was sent
// meanwhile is lost); changes then reach it again.
func TestListenerReconnects(t *testing.T) {
	url := storetest.URL(t, "postgres")
	s, err := store.Open(context.Background(), url)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if err := s.Migrate(context.Background()); err != nil {
		t.Fatal(err)
	}
	a, b := newReplica(t, url), newReplica(t, url)
	resets := b.cache.resetCount()

	// End every listening connection of this database: B's and A's.
	var killed int
	err = s.DB.QueryRow(`SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity
		WHERE datname = current_database() AND pid <> pg_backend_pid() AND query LIKE 'LISTEN %'`).Scan(&killed)
	if err != nil || killed != 2 {
		t.Fatalf("terminated %d listening backends (%v), want 2", killed, err)
	}
	waitUntil(t, 10*time.Second, "B to reconnect and reset its caches", func() bool { return b.cache.resetCount() > resets })
	if got := metricValue(b.reg, "gatehouse_cache_listener_connected", ""); got != 1 {
		t.Errorf("gatehouse_cache_listener_connected = %v after reconnecting, want 1", got)
	}
	a.change(t, true, invalidation.User("user_after"))
	waitUntil(t, time.Second, "B to hear of a change after reconnecting", func() bool { return b.cache.has(invalidation.User("user_after")) })
}

// TestListenerNoticesASilentNetwork: a listening connection that the network
// stops carrying, without a reset (a partition), is taken for lost within
// PingInterval + ReplyTimeout rather than TCP's quarter of an hour — the
// gauge says so — and replaced once the network is back, the caches reset.
// While it is silent, Listen still returns, within ReplyTimeout, when asked
// to stop.
func TestListenerNoticesASilentNetwork(t *testing.T) {
	url := storetest.URL(t, "postgres") // listening needs no schema
	proxy := newSilentProxy(t, url)
	opts := invalidation.Options{
		MinReconnect: 20 * time.Millisecond, MaxReconnect: 200 * time.Millisecond,
		PingInterval: 100 * time.Millisecond, ReplyTimeout: 300 * time.Millisecond,
	}
	r := newReplicaWith(t, proxy.url, opts)
	connected := func() float64 { return metricValue(r.reg, "gatehouse_cache_listener_connected", "") }
	// Subscribed comes before lib/pq reports the connection: wait for that.
	waitUntil(t, 10*time.Second, "the listener to report its connection", func() bool { return connected() == 1 })
	resets := r.cache.resetCount()

	proxy.silence(true)
	waitUntil(t, 5*time.Second, "the silent connection to be taken for lost", func() bool { return connected() == 0 })
	proxy.silence(false)
	waitUntil(t, 10*time.Second, "a new connection, and the caches reset", func() bool {
		return connected() == 1 && r.cache.resetCount() > resets
	})

	// Stopping while the network is silent.
	other := newSilentProxy(t, url)
	q := newReplicaWith(t, other.url, opts)
	other.silence(true)
	waitUntil(t, 5*time.Second, "a ping to be held by the silent network", func() bool { return other.heldCount() > 0 })
	if err := q.stop(2 * time.Second); err != nil {
		t.Fatalf("stopped while the network was silent: %v", err)
	}
}

// silentProxy carries TCP connections to a Postgres server until silenced:
// then it stops carrying bytes either way, closing nothing, as a network
// partition does.
type silentProxy struct {
	url string // the database URL through the proxy

	mu     sync.Mutex
	cond   *sync.Cond
	silent bool
	held   int // reads not carried because silent
}

func newSilentProxy(t *testing.T, dbURL string) *silentProxy {
	t.Helper()
	u, err := url.Parse(dbURL)
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &silentProxy{}
	p.cond = sync.NewCond(&p.mu)
	target := u.Host
	u.Host = ln.Addr().String()
	p.url = u.String()
	var conns []net.Conn
	var connsMu sync.Mutex
	t.Cleanup(func() {
		ln.Close()
		p.silence(false)
		connsMu.Lock()
		defer connsMu.Unlock()
		for _, c := range conns {
			c.Close()
		}
	})
	go func() {
		for {
			client, err := ln.Accept()
			if err != nil {
				return
			}
			server, err := net.Dial("tcp", target)
			if err != nil {
				client.Close()
				continue
			}
			connsMu.Lock()
			conns = append(conns, client, server)
			connsMu.Unlock()
			go p.pipe(server, client)
			go p.pipe(client, server)
		}
	}()
	return p
}

func (p *silentProxy) heldCount() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.held
}

func (p *silentProxy) silence(on bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.silent = on
	p.cond.Broadcast()
}

func (p *silentProxy) pipe(dst, src net.Conn) {
	defer dst.Close()
	defer src.Close()
	buf := make([]byte, 32<<10)
	for {
		n, err := src.Read(buf)
		if n > 0 {
			p.mu.Lock()
			if p.silent {
				p.held++
			}
			for p.silent {
				p.cond.Wait()
			}
			p.mu.Unlock()
			if _, err := dst.Write(buf[:n]); err != nil {
				return
			}
		}
		if err != nil {
			return
		}
	}
}

// TestSQLiteIsLocalOnly: on SQLite, Publish sends nothing and Listen waits;
// Committed still tells this process's caches.
func TestSQLiteIsLocalOnly(t *testing.T) {
	r := newReplica(t, storetest.URL(t, "sqlite"))
	if err := r.store.Migrate(context.Background()); err != nil {
		t.Fatal(err)
	}
	r.change(t, true, invalidation.User("user_1"))
	if !r.cache.has(invalidation.User("user_1")) {
		t.Error("Committed did not reach the cache")
	}
	if got := r.counted("sent"); got != 0 {
		t.Errorf("counted %v sent on SQLite, want 0", got)
	}
}

func TestPublishOutsideATransactionFails(t *testing.T) {
	s := storetest.Open(t, "postgres")
	bus, err := invalidation.New(s, invalidation.Options{})
	if err != nil {
		t.Fatal(err)
	}
	err = bus.Publish(context.Background(), invalidation.User("user_1"))
	if err == nil || !strings.Contains(err.Error(), "WithNotify") {
		t.Errorf("Publish without a transaction: %v, want an error", err)
	}
}

func TestKeys(t *testing.T) {
	if id, ok := invalidation.User("user_1").UserID(); !ok || id != "user_1" {
		t.Errorf("User(user_1).UserID() = %q, %v", id, ok)
	}
	// Keys of other kinds (as a replica of an older version may send during
	// a rolling deploy) name no user.
	for _, k := range []invalidation.Key{"organization:org_1", "membership:org_1:user_1", "user_1"} {
		if id, ok := k.UserID(); ok {
			t.Errorf("%s.UserID() = %q, true; want false", k, id)
		}
	}
}

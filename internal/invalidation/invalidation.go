// Package invalidation keeps what each replica caches from the database in
// step with the database: a change one replica commits reaches the caches of
// every replica within a second.
//
// The webhook receiver, having applied an event, Publishes the keys of the
// cached rows it changed inside its transaction: each is a Postgres NOTIFY
// on the channel "gatehouse_invalidate", which Postgres delivers to every
// listening replica when, and only if, the transaction commits. Once it has
// committed, the receiver calls Committed, and this replica's caches drop
// the keys at once. Every replica Listens on the channel with lib/pq's
// Listener and hands the keys other replicas changed to its caches.
//
// Notifications can be lost: while a replica's listening connection is down
// (a database restart, a network fault), nothing reaches it. The Listener
// reconnects and subscribes again by itself; after every (re)connection the
// Bus resets its caches, since it cannot know what it missed. Meanwhile, the
// provisioner's 5 s trust window bounds how stale a live user can be (GetMe's
// kept messages follow the provisioner's rows). On SQLite there is one
// process and no notification: only Committed does anything.
package invalidation

import (
	"context"
	"crypto/rand"
	"errors"
	"log/slog"
	"strings"
	"sync"
	"time"

	"entgo.io/ent/dialect"
	"github.com/lib/pq"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/gatehouse-dev/gatehouse/internal/metrics"
	"github.com/gatehouse-dev/gatehouse/internal/store"
)

// channel is the Postgres notification channel replicas share.
const channel = "gatehouse_invalidate"

// A Key names a changed row, the same way on every replica. The only rows
// cached are users' (the provisioner's live users, and the User messages
// GetMe builds from them), so the only keys are "user:<id>"; a cache
// ignores keys it does not know.
type Key string

// User is the key of a user's row.
func User(id string) Key { return Key("user:" + id) }

// UserID returns the id of the user k names, if it names a user.
func (k Key) UserID() (string, bool) {
	return strings.CutPrefix(string(k), "user:")
}

// Cache is what a Bus keeps in step: a cache of database rows.
type Cache interface {
	// Invalidate drops what the cache holds for key, if anything.
	Invalidate(key Key)
	// InvalidateAll drops everything: notifications may have been lost.
	InvalidateAll()
}

// Options configures a Bus. The zero value is ready for production.
type Options struct {
	// Logger reports the listener's connection being lost and regained.
	// Nil discards.
	Logger *slog.Logger
	// Registerer gets gatehouse_cache_notifications_total{direction} and
	// gatehouse_cache_listener_connected. Nil registers nothing.
	Registerer prometheus.Registerer
	// MinReconnect and MaxReconnect bound the wait between the listener's
	// attempts to reconnect (doubling from one to the other); defaults
	// 100 ms and 2 s.
	MinReconnect, MaxReconnect time.Duration
	// PingInterval is how often an idle listening connection is checked;
	// default 30 s.
	PingInterval time.Duration
	// ReplyTimeout is how long the listening connection may leave a ping
	// (or a connection attempt, or LISTEN) unanswered before it is taken
	// for lost and replaced; default 10 s. A connection the network stops
	// carrying without a reset is so noticed within PingInterval +
	// ReplyTimeout.
	ReplyTimeout time.Duration
}

// A Bus carries invalidations between the replicas sharing one database.
// It is safe for concurrent use.
type Bus struct {
	store  *store.Store
	notify bool   // Postgres: notifications are sent and heard
	origin string // this replica, so that it skips its own notifications
	log    *slog.Logger
	opts   Options

	mu     sync.RWMutex
	caches []Cache

	subscribed chan struct{} // closed once Listen has first subscribed
	once       sync.Once

	notifications *prometheus.CounterVec
	connected     prometheus.Gauge
}

// New returns a Bus for the replicas sharing st's database. It fails if its
// metrics clash with other collectors of the same names.
func New(st *store.Store, opts Options) (*Bus, error) {
	if opts.MinReconnect <= 0 {
		opts.MinReconnect = 100 * time.Millisecond
	}
	if opts.MaxReconnect < opts.MinReconnect {
		opts.MaxReconnect = max(2*time.Second, opts.MinReconnect)
	}
	if opts.PingInterval <= 0 {
		opts.PingInterval = 30 * time.Second
	}
	if opts.ReplyTimeout <= 0 {
		opts.ReplyTimeout = 10 * time.Second
	}
	b := &Bus{
		store:      st,
		notify:     st.Dialect == dialect.Postgres,
		origin:     rand.Text()[:10],
		log:        opts.Logger,
		opts:       opts,
		subscribed: make(chan struct{}),
		notifications: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "gatehouse_cache_notifications_total",
			Help: "Cache invalidations exchanged between replicas through Postgres notifications: sent (committed) by this replica, and received from the others.",
		}, []string{"direction"}),
		connected: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "gatehouse_cache_listener_connected",
			Help: "1 while this replica listens for other replicas' cache invalidations, 0 while that connection is down (caches then expire on their own).",
		}),
	}
	if b.log == nil {
		b.log = slog.New(slog.DiscardHandler)
	}
	var err error
	if b.notifications, err = metrics.Register(opts.Registerer, b.notifications); err != nil {
		return nil, err
	}
	if b.connected, err = metrics.Register(opts.Registerer, b.connected); err != nil {
		return nil, err
	}
	b.notifications.WithLabelValues("sent")
	b.notifications.WithLabelValues("received")
	return b, nil
}

// Subscribe adds a cache for the Bus to keep in step. Caches are told of a
// change in the order they were subscribed.
func (b *Bus) Subscribe(c Cache) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.caches = append(b.caches, c)
}

// Publish notifies the other replicas of keys from the transaction begun
// with ctx (see store.WithNotify): they hear of it when, and only if, it
// commits. Call Committed once it has. An error leaves the transaction
// unusable; roll it back.
func (b *Bus) Publish(ctx context.Context, keys ...Key) error {
	if !b.notify {
		return nil
	}
	for _, k := range keys {
		if err := store.Notify(ctx, channel, b.origin+" "+string(k)); err != nil {
			return err
		}
	}
	return nil
}

// Committed drops keys from this replica's caches and, on Postgres, counts
// the notifications Publish sent as sent, now that their transaction has
// committed.
func (b *Bus) Committed(keys ...Key) {
	b.mu.RLock()
	defer b.mu.RUnlock()
	for _, k := range keys {
		for _, c := range b.caches {
			c.Invalidate(k)
		}
	}
	if b.notify {
		b.notifications.WithLabelValues("sent").Add(float64(len(keys)))
	}
}

// Subscribed is closed once Listen has subscribed to the channel for the first
// time: from then on, the other replicas' changes reach this one.
func (b *Bus) Subscribed() <-chan struct{} { return b.subscribed }

// Listen hands other replicas' invalidations to the caches until ctx ends,
// then returns nil. Its connection is re-established, and subscribed again,
// whenever it is lost; each time, every cache is reset. On SQLite there are
// no other replicas, and it just waits for ctx.
func (b *Bus) Listen(ctx context.Context) error {
	if !b.notify {
		b.once.Do(func() { close(b.subscribed) })
		<-ctx.Done()
		return nil
	}
	var downSince time.Time // when the connection was lost; zero while up
	l, err := b.store.NewListener(b.opts.MinReconnect, b.opts.MaxReconnect, b.opts.ReplyTimeout, func(ev pq.ListenerEventType, err error) {
		// Called on the listener's own goroutine, in order.
		switch ev {
		case pq.ListenerEventConnected, pq.ListenerEventReconnected:
			b.resetAll()
			b.connected.Set(1)
			if !downSince.IsZero() {
				b.log.Info("cache invalidations: listening again; caches reset", "down", time.Since(downSince).Round(time.Millisecond))
				downSince = time.Time{}
			}
		case pq.ListenerEventDisconnected:
			b.connected.Set(0)
			downSince = time.Now()
			b.log.Warn("cache invalidations: lost the listening connection; caches expire on their own until it is back", "error", err)
		case pq.ListenerEventConnectionAttemptFailed:
			b.log.Debug("cache invalidations: reconnect failed", "error", err)
		}
	})
	if err != nil {
		return err
	}
	defer func() {
		l.Close() //nolint:errcheck // closing once; nothing to report
		b.connected.Set(0)
		// Let lib/pq's goroutine deliver what it holds and finish, without
		// waiting for it: it may be in the middle of a reconnection attempt.
		go func() {
			for range l.Notify {
			}
		}()
	}()

	listened := make(chan error, 1)
	go func() { listened <- l.Listen(channel) }() // waits until connected
	go func() {
		select {
		case err := <-listened:
			if err != nil && !errors.Is(err, pq.ErrChannelAlreadyOpen) && ctx.Err() == nil {
				b.log.Error("cache invalidations: LISTEN failed", "error", err)
				return
			}
			b.once.Do(func() { close(b.subscribed) })
		case <-ctx.Done():
		}
	}()

	ping := time.NewTicker(b.opts.PingInterval)
	defer ping.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case n, ok := <-l.Notify:
			switch {
			case !ok:
				return nil
			case n != nil: // nil follows a reconnection, handled by its event
				b.receive(n.Extra)
			}
		case <-ping.C:
			// A dead connection that no read has noticed yet fails the
			// ping, within ReplyTimeout if the network is silent
			// (store.NewListener), and the listener reconnects.
			go l.Ping() //nolint:errcheck // the listener's events report it
		}
	}
}

// receive hands a notification from another replica to the caches.
func (b *Bus) receive(payload string) {
	origin, key, ok := strings.Cut(payload, " ")
	if !ok || origin == b.origin {
		return
	}
	b.notifications.WithLabelValues("received").Inc()
	b.mu.RLock()
	defer b.mu.RUnlock()
	for _, c := range b.caches {
		c.Invalidate(Key(key))
	}
}

func (b *Bus) resetAll() {
	b.mu.RLock()
	defer b.mu.RUnlock()
	for _, c := range b.caches {
		c.InvalidateAll()
	}
}

package store

import (
	"context"
	"database/sql"
	"errors"
	"net"
	"sync"
	"time"

	"entgo.io/ent/dialect"
	entsql "entgo.io/ent/dialect/sql"
	"github.com/lib/pq"
)

// Postgres notifications (NOTIFY/LISTEN) let a replica tell the others that
// it changed rows they may hold in memory. Notify sends one from inside a
// transaction, so Postgres delivers it when, and only if, the transaction
// commits; NewListener receives them.
//
// ent runs no raw SQL on a transaction (the execquery feature is off so that
// no query can bypass the privacy policy), so the store's driver lends the
// transaction's handle to Notify through the context the transaction was
// begun with; pg_notify is the only statement run with it.

// txHandle receives the transaction begun with a context from WithNotify.
type txHandle struct {
	tx      dialect.Tx
	dialect string
}

type txHandleKey struct{}

// WithNotify returns a context from which to begin a transaction
// (Client.Tx(ctx)) that Notify can then send from. Each transaction begun
// with it replaces the one before.
func WithNotify(ctx context.Context) context.Context {
	return context.WithValue(ctx, txHandleKey{}, &txHandle{})
}

// Notify sends payload on the Postgres channel from the transaction last
// begun with ctx (see WithNotify). Postgres delivers it to the channel's
// listeners when the transaction commits, and never if it rolls back; it
// drops duplicates within one transaction. On SQLite, which has no
// notifications (and no other replica), it does nothing. It fails if ctx
// began no transaction.
func Notify(ctx context.Context, channel, payload string) error {
	h, _ := ctx.Value(txHandleKey{}).(*txHandle)
	switch {
	case h == nil || h.tx == nil:
		return errors.New("store: Notify without a transaction begun with WithNotify")
	case h.dialect != dialect.Postgres:
		return nil
	}
	return h.tx.Exec(ctx, "SELECT pg_notify($1, $2)", []any{channel, payload}, nil)
}

// notifyingDriver is the store's ent driver: the standard one, but a
// transaction begun with a context from WithNotify is handed to it.
type notifyingDriver struct {
	*entsql.Driver
}

var _ dialect.Driver = notifyingDriver{}

func (d notifyingDriver) Tx(ctx context.Context) (dialect.Tx, error) {
	return d.BeginTx(ctx, nil)
}

func (d notifyingDriver) BeginTx(ctx context.Context, opts *sql.TxOptions) (dialect.Tx, error) {
	tx, err := d.Driver.BeginTx(ctx, opts)
	if err != nil {
		return nil, err
	}
	if h, ok := ctx.Value(txHandleKey{}).(*txHandle); ok {
		h.tx, h.dialect = tx, d.Dialect()
	}
	return tx, nil
}

// NewListener returns lib/pq's Listener on the store's Postgres database:
// one connection of its own, re-established after it is lost (waiting
// minReconnect, doubling to maxReconnect between attempts) and subscribed
// again to its channels, with events reported to onEvent. It fails on
// SQLite.
//
// Its connection is taken for lost when something it sends — the startup,
// LISTEN, a Ping — has no answer within replyTimeout, and so is a
// connection attempt that long: a network that drops packets without a
// reset (a partition, a database host that vanished) would otherwise leave
// it waiting on TCP's own timeouts, a quarter of an hour, unaware it hears
// nothing, with a Ping holding the Listener's lock all along so that even
// Close waits. On Linux, TCP_USER_TIMEOUT bounds the same: a ping written
// just as a stray notification was read (which disarms the deadline) is
// still not retransmitted into silence for longer than replyTimeout.
func (s *Store) NewListener(minReconnect, maxReconnect, replyTimeout time.Duration, onEvent pq.EventCallbackType) (*pq.Listener, error) {
	if s.Dialect != dialect.Postgres {
		return nil, errors.New("store: notifications need Postgres")
	}
	return pq.NewDialListener(newReplyDialer(replyTimeout), s.dsn, minReconnect, maxReconnect, onEvent), nil
}

// replyDialer dials connections that expect an answer to every write
// within timeout (replyConn), connecting within it too, with
// TCP_USER_TIMEOUT of it where the system has one.
type replyDialer struct {
	dialer  net.Dialer
	timeout time.Duration
}

func newReplyDialer(timeout time.Duration) replyDialer {
	return replyDialer{dialer: net.Dialer{Timeout: timeout, Control: userTimeout(timeout)}, timeout: timeout}
}

var (
	_ pq.Dialer        = replyDialer{}
	_ pq.DialerContext = replyDialer{}
)

func (d replyDialer) Dial(network, address string) (net.Conn, error) {
	return d.DialContext(context.Background(), network, address)
}

func (d replyDialer) DialTimeout(network, address string, timeout time.Duration) (net.Conn, error) {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	return d.DialContext(ctx, network, address)
}

func (d replyDialer) DialContext(ctx context.Context, network, address string) (net.Conn, error) {
	c, err := d.dialer.DialContext(ctx, network, address)
	if err != nil {
		return nil, err
	}
	return &replyConn{Conn: c, timeout: d.timeout}, nil
}

// replyConn is a connection on which every write is answered: a write
// arms a read deadline timeout away, unless one is armed already, and
// anything read disarms it. Idle, waiting for notifications, it has none.
// (lib/pq's reader may be slow to read an answer that came in time while
// it hands a burst of notifications to a full channel, and a deadline
// passed meanwhile fails the connection: a reconnection, and caches reset,
// but nothing lost. The Bus empties that channel at once.)
// Deadlines its user sets (lib/pq's connect_timeout) still apply: the read
// deadline is the earlier of the two.
type replyConn struct {
	net.Conn
	timeout time.Duration

	mu       sync.Mutex
	external time.Time // the user's read deadline
	due      time.Time // when an answer is due; zero if none is
}

func (c *replyConn) Write(b []byte) (int, error) {
	c.mu.Lock()
	if c.due.IsZero() {
		c.due = time.Now().Add(c.timeout)
		c.applyLocked()
	}
	c.mu.Unlock()
	return c.Conn.Write(b)
}

func (c *replyConn) Read(b []byte) (int, error) {
	n, err := c.Conn.Read(b)
	if n > 0 {
		c.mu.Lock()
		if !c.due.IsZero() {
			c.due = time.Time{}
			c.applyLocked()
		}
		c.mu.Unlock()
	}
	return n, err
}

func (c *replyConn) SetDeadline(t time.Time) error {
	if err := c.Conn.SetWriteDeadline(t); err != nil {
		return err
	}
	return c.SetReadDeadline(t)
}

func (c *replyConn) SetReadDeadline(t time.Time) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.external = t
	return c.applyLocked()
}

// applyLocked sets the read deadline to the earlier of the two. c.mu must
// be held.
func (c *replyConn) applyLocked() error {
	d := c.external
	if d.IsZero() || (!c.due.IsZero() && c.due.Before(d)) {
		d = c.due
	}
	return c.Conn.SetReadDeadline(d)
}

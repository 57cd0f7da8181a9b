package store

import (
	"context"
	"database/sql"
	"errors"
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
func (s *Store) NewListener(minReconnect, maxReconnect time.Duration, onEvent pq.EventCallbackType) (*pq.Listener, error) {
	if s.Dialect != dialect.Postgres {
		return nil, errors.New("store: notifications need Postgres")
	}
	return pq.NewListener(s.dsn, minReconnect, maxReconnect, onEvent), nil
}

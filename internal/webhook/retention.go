package webhook

import (
	"context"
	"fmt"
	"math/rand/v2"
	"time"

	"entgo.io/ent/dialect/sql"

	"github.com/gatehouse-dev/gatehouse/ent/webhookevent"
	"github.com/gatehouse-dev/gatehouse/internal/viewer"
)

const (
	// sweepEvery is the time between two sweeps, give or take a tenth so
	// that replicas started together drift apart.
	sweepEvery = time.Minute
	// purgeBatch bounds the rows one DELETE removes: each batch is a short
	// transaction of its own, so ingest is never held up for long.
	purgeBatch = 1000
)

// Sweep purges, until ctx ends, the records of deliveries received longer
// ago than the retention (Config.Retention): once when it starts, then about
// every minute, in batches of at most a thousand rows. It returns nil when
// ctx ends; a failed sweep is logged and tried again at the next one.
//
// Every replica may run it at once: on Postgres a batch locks the rows it
// deletes FOR UPDATE SKIP LOCKED, so sweeps on different replicas take
// different rows and never wait on each other; SQLite has one process.
//
// Once an event's record is purged its svix-id is forgotten: a redelivery
// of it (Svix retries for about a day; a replay from the dashboard can come
// at any time) is applied again. The appliers keep that harmless — an event
// no newer than the row it concerns, or about a deleted object, is stale and
// changes nothing — so the mirror is the same; only the answer is "stale"
// where it would have been "duplicate".
func (r *Receiver) Sweep(ctx context.Context) error {
	for {
		start := time.Now()
		n, err := r.purge(ctx, r.now().UTC().Add(-r.retention))
		switch {
		case ctx.Err() != nil:
			return nil
		case err != nil:
			r.log.Warn("webhook events: purge failed; retrying at the next sweep", "error", err, "purged", n)
		case n > 0:
			r.log.Info("webhook events purged", "purged", n, "retention", r.retention.String(), "duration", time.Since(start))
		}
		jitter := time.Duration(rand.Int64N(int64(r.sweepEvery)/5)) - r.sweepEvery/10
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(r.sweepEvery + jitter):
		}
	}
}

// purge deletes the records received before cutoff, batch by batch, until a
// batch comes back short, and returns how many it deleted.
func (r *Receiver) purge(ctx context.Context, cutoff time.Time) (int, error) {
	total := 0
	for {
		n, err := r.purgeOnce(ctx, cutoff, r.purgeBatch)
		total += n
		r.purged.Add(float64(n))
		if err != nil {
			return total, err
		}
		if n < r.purgeBatch {
			return total, nil
		}
	}
}

// purgeOnce deletes at most limit of the oldest records received before
// cutoff, in one statement:
//
//	DELETE FROM webhook_events WHERE id IN (SELECT id FROM webhook_events
//	WHERE received_at < $1 ORDER BY received_at LIMIT n FOR UPDATE SKIP LOCKED)
//
// (without the lock on SQLite).
func (r *Receiver) purgeOnce(ctx context.Context, cutoff time.Time, limit int) (int, error) {
	cutoff = cutoff.UTC() // as received_at is stored: SQLite compares the text
	n, err := r.client.WebhookEvent.Delete().
		Where(func(s *sql.Selector) {
			b := sql.Dialect(s.Dialect())
			t := b.Table(webhookevent.Table)
			oldest := b.Select(t.C(webhookevent.FieldID)).
				From(t).
				Where(sql.LT(t.C(webhookevent.FieldReceivedAt), cutoff)).
				OrderBy(t.C(webhookevent.FieldReceivedAt)).
				Limit(limit)
			if r.rowLocks {
				oldest.ForUpdate(sql.WithLockAction(sql.SkipLocked))
			}
			s.Where(sql.In(s.C(webhookevent.FieldID), oldest))
		}).
		Exec(viewer.NewSystemContext(ctx))
	if err != nil {
		return n, fmt.Errorf("purge webhook events received before %s: %w", cutoff.Format(time.RFC3339), err)
	}
	return n, nil
}

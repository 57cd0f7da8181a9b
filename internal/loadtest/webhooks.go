package loadtest

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/gatehouse-dev/gatehouse/internal/clerkemu"
	"github.com/gatehouse-dev/gatehouse/internal/webhook"
)

// WebhookOptions configures Webhooks.
type WebhookOptions struct {
	// URL is Gatehouse's POST /webhooks/clerk on a loopback address.
	URL string
	// Secret is the endpoint's "whsec_…" signing secret.
	Secret string
	// EventType is the Clerk event sent; default user.created.
	EventType string
	// Concurrency, Warmup and Duration apply to each of the two runs.
	Concurrency      int
	Warmup, Duration time.Duration
	// DuplicatePool is how many delivered events the duplicate run resends,
	// in turn; default 1,000.
	DuplicatePool int
	// ServerPID, when set, is Gatehouse's process, for CPU per event.
	ServerPID int
	// DBCommand, when set, names the database's processes (see Options).
	DBCommand string
}

// WebhookResult holds the two runs: distinct events, then redeliveries.
type WebhookResult struct {
	EventType string  `json:"event_type"`
	Distinct  *Result `json:"distinct"`
	Duplicate *Result `json:"duplicate"`
}

// Webhooks measures webhook ingest: first distinct events (each a new
// svix-id and a new object id, so each is applied and recorded), then
// redeliveries — the same svix-id and body, re-signed with a fresh
// timestamp as Svix does when it retries — of events the first run
// delivered. Any 2xx counts as success.
func Webhooks(ctx context.Context, opts WebhookOptions) (*WebhookResult, error) {
	if err := RequireLoopback(opts.URL); err != nil {
		return nil, err
	}
	if opts.Secret == "" {
		return nil, errors.New("webhooks: no signing secret")
	}
	if opts.EventType == "" {
		opts.EventType = webhook.TypeUserCreated
	}
	if opts.DuplicatePool <= 0 {
		opts.DuplicatePool = 1000
	}
	if _, err := clerkemu.SampleEvent(opts.EventType, clerkemu.Sample{}); err != nil {
		return nil, err
	}
	client := NewHTTPClient(opts.Concurrency)
	type delivered struct {
		id   string
		body []byte
	}
	var (
		mu   sync.Mutex
		pool []delivered
	)
	// A run id keeps object ids distinct across runs against one database.
	run := strings.ToLower(rand.Text()[:8])
	send := func(ctx context.Context, msgID string, body []byte) error {
		req, err := clerkemu.NewWebhookRequest(ctx, opts.URL, opts.Secret, msgID, time.Now(), body)
		if err != nil {
			return err
		}
		return doHTTP(client, req, 0)
	}
	distinct, err := Run(ctx, Options{
		Name: "distinct " + opts.EventType, Concurrency: opts.Concurrency,
		Warmup: opts.Warmup, Duration: opts.Duration, ServerPID: opts.ServerPID, DBCommand: opts.DBCommand,
	}, func(ctx context.Context, seq int64) error {
		id := fmt.Sprintf("wh%s%d", run, seq)
		body, err := clerkemu.SampleEvent(opts.EventType, clerkemu.Sample{
			UserID:       "user_" + id,
			OrgID:        "org_" + id,
			MembershipID: "orgmem_" + id,
			Email:        id + "@bench.test",
			FirstName:    "Bench",
			LastName:     id,
			OrgName:      "Bench " + id,
			UpdatedAt:    time.Now(),
		})
		if err != nil {
			return err
		}
		msgID := clerkemu.NewMessageID()
		if err := send(ctx, msgID, body); err != nil {
			return err
		}
		mu.Lock()
		if len(pool) < opts.DuplicatePool {
			pool = append(pool, delivered{msgID, body})
		}
		mu.Unlock()
		return nil
	})
	if err != nil {
		return nil, err
	}
	if len(pool) == 0 {
		return nil, fmt.Errorf("webhooks: no event was accepted (%v)", distinct.ErrorKinds)
	}
	duplicate, err := Run(ctx, Options{
		Name: "duplicate " + opts.EventType, Concurrency: opts.Concurrency,
		Warmup: opts.Warmup, Duration: opts.Duration, ServerPID: opts.ServerPID, DBCommand: opts.DBCommand,
	}, func(ctx context.Context, seq int64) error {
		d := pool[seq%int64(len(pool))]
		return send(ctx, d.id, d.body)
	})
	if err != nil {
		return nil, err
	}
	return &WebhookResult{EventType: opts.EventType, Distinct: distinct, Duplicate: duplicate}, nil
}

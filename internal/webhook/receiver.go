package webhook

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"slices"
	"strconv"
	"time"

	"entgo.io/ent/dialect"
	"github.com/prometheus/client_golang/prometheus"
	svix "github.com/svix/svix-webhooks/go"

	"github.com/gatehouse-dev/gatehouse/ent"
	"github.com/gatehouse-dev/gatehouse/internal/config"
	"github.com/gatehouse-dev/gatehouse/internal/invalidation"
	"github.com/gatehouse-dev/gatehouse/internal/metrics"
	"github.com/gatehouse-dev/gatehouse/internal/store"
)

// MaxBodyBytes is the largest request body the receiver reads; a larger one
// is answered 413.
const MaxBodyBytes = 1 << 20

// maxMessageIDLen bounds the svix-id Gatehouse stores (Svix's are ~30
// characters).
const maxMessageIDLen = 255

// applyTimeout bounds one delivery's database work. Svix gives up on an
// endpoint after 15 s and retries; there is no point holding locks longer.
const applyTimeout = 15 * time.Second

// Config configures a Receiver.
type Config struct {
	// Client is the store's ent client. Required.
	Client *ent.Client
	// Secret is the endpoint's signing secret, "whsec_…"
	// (CLERK_WEBHOOK_SIGNING_SECRET). Required.
	Secret string
	// Logger gets one line per delivery. Nil discards.
	Logger *slog.Logger
	// Registerer gets the receiver's metrics. Nil registers nothing. Several
	// receivers may share one Registerer: they share the series.
	Registerer prometheus.Registerer
	// Dialect is the store's ("postgres" or "sqlite"): on Postgres the
	// appliers lock the rows they decide on. Required.
	Dialect string
	// Invalidations, if set, hears of the rows each applied event changed,
	// so that caches of them drop them, on this replica and on the others
	// (*invalidation.Bus).
	Invalidations Invalidator
	// Retention is how long Sweep keeps the record of a delivery
	// (GATEHOUSE_WEBHOOK_RETENTION); zero is config.DefaultWebhookRetention.
	Retention time.Duration
	// Now is the clock for deleted_at and received_at; nil is time.Now.
	// (Svix's verifier checks the timestamp against the real clock.)
	Now func() time.Time
}

// Invalidator is told which rows an applied event changed: Publish inside
// the event's transaction, before it commits (an error rolls it back, and
// the delivery fails), and Committed once it has.
type Invalidator interface {
	Publish(ctx context.Context, keys ...invalidation.Key) error
	Committed(keys ...invalidation.Key)
}

var _ Invalidator = (*invalidation.Bus)(nil)

// Receiver is the http.Handler for POST /webhooks/clerk.
type Receiver struct {
	client        *ent.Client
	verifier      *svix.Webhook
	log           *slog.Logger
	now           func() time.Time
	rowLocks      bool
	invalidations Invalidator
	events        *prometheus.CounterVec
	duration      *prometheus.HistogramVec

	// The retention sweep (Sweep).
	retention  time.Duration
	sweepEvery time.Duration
	purgeBatch int
	purged     prometheus.Counter
}

var _ http.Handler = (*Receiver)(nil)

// New returns a Receiver. It fails if the client is missing, the secret
// fails config.CheckWebhookSecret (an empty one included), or the metrics
// clash with other collectors of the same name.
func New(cfg Config) (*Receiver, error) {
	if cfg.Client == nil {
		return nil, errors.New("webhook: no ent client")
	}
	if err := config.CheckWebhookSecret(cfg.Secret); err != nil {
		return nil, fmt.Errorf("webhook: signing secret (CLERK_WEBHOOK_SIGNING_SECRET): %w", err)
	}
	if cfg.Dialect != dialect.Postgres && cfg.Dialect != dialect.SQLite {
		return nil, fmt.Errorf("webhook: unknown dialect %q", cfg.Dialect)
	}
	if cfg.Retention < 0 {
		return nil, fmt.Errorf("webhook: negative retention %s", cfg.Retention)
	}
	// Cannot fail: CheckWebhookSecret has decoded the same base64 as Svix.
	verifier, _ := svix.NewWebhook(cfg.Secret)
	r := &Receiver{
		client:        cfg.Client,
		verifier:      verifier,
		log:           cfg.Logger,
		now:           cfg.Now,
		rowLocks:      cfg.Dialect == dialect.Postgres,
		invalidations: cfg.Invalidations,
		events: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "gatehouse_webhook_events_total",
			Help: "Clerk webhook deliveries by event type and result (applied, duplicate, stale, ignored, rejected, failed).",
		}, []string{"type", "result"}),
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "gatehouse_webhook_duration_seconds",
			Help:    "Time to answer a Clerk webhook delivery, by result.",
			Buckets: prometheus.DefBuckets,
		}, []string{"result"}),
		retention:  cmp.Or(cfg.Retention, config.DefaultWebhookRetention),
		sweepEvery: sweepEvery,
		purgeBatch: purgeBatch,
		purged: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "gatehouse_webhook_events_purged_total",
			Help: "Records of Clerk webhook deliveries purged after the retention (GATEHOUSE_WEBHOOK_RETENTION).",
		}),
	}
	if r.log == nil {
		r.log = slog.New(slog.DiscardHandler)
	}
	if r.now == nil {
		r.now = time.Now
	}
	var err error
	if r.events, err = metrics.Register(cfg.Registerer, r.events); err != nil {
		return nil, fmt.Errorf("webhook: register metrics: %w", err)
	}
	if r.duration, err = metrics.Register(cfg.Registerer, r.duration); err != nil {
		return nil, fmt.Errorf("webhook: register metrics: %w", err)
	}
	if r.purged, err = metrics.Register(cfg.Registerer, r.purged); err != nil {
		return nil, fmt.Errorf("webhook: register metrics: %w", err)
	}
	return r, nil
}

// delivery is what one request's log line and metrics report.
type delivery struct {
	eventType string
	msgID     string
	result    Result
	status    int
	reason    string // safe to show and log: never the body or the secret
	err       error  // detail of a failure, for the log only
}

// ServeHTTP verifies, decodes and applies one delivery. It answers 200 when
// the event was applied, was a duplicate, was stale or is not handled; 401
// when the Svix headers are missing, the signature does not match or the
// timestamp is more than 5 minutes off; 400 for a malformed payload; 405
// for a method other than POST; 413 for a body over MaxBodyBytes; 503 with
// Retry-After when the database is unavailable (store.IsUnavailable) or
// did not answer in time, and 500 when applying failed otherwise — either
// way with nothing written, for Svix to redeliver. The body is JSON:
// {"result": "..."} and, on an error, "error".
func (r *Receiver) ServeHTTP(w http.ResponseWriter, req *http.Request) {
	start := time.Now()
	d := r.serve(w, req)
	elapsed := time.Since(start)

	r.events.WithLabelValues(typeLabel(d.eventType), string(d.result)).Inc()
	r.duration.WithLabelValues(string(d.result)).Observe(elapsed.Seconds())

	level := slog.LevelInfo
	switch d.result {
	case ResultRejected:
		level = slog.LevelWarn
	case ResultFailed:
		level = slog.LevelError
	}
	attrs := []slog.Attr{
		slog.String("type", d.eventType),
		slog.String("svix_id", d.msgID),
		slog.String("result", string(d.result)),
		slog.Int("status", d.status),
		slog.Duration("duration", elapsed),
	}
	if d.reason != "" {
		attrs = append(attrs, slog.String("reason", d.reason))
	}
	if d.err != nil {
		attrs = append(attrs, slog.String("error", d.err.Error()))
	}
	r.log.LogAttrs(req.Context(), level, "webhook", attrs...)
}

func (r *Receiver) serve(w http.ResponseWriter, req *http.Request) delivery {
	reject := func(status int, reason string) delivery {
		writeJSON(w, status, map[string]string{"result": string(ResultRejected), "error": reason})
		return delivery{result: ResultRejected, status: status, reason: reason}
	}
	if req.Method != http.MethodPost {
		w.Header().Set("Allow", http.MethodPost)
		return reject(http.StatusMethodNotAllowed, "method not allowed")
	}
	body, err := io.ReadAll(http.MaxBytesReader(w, req.Body, MaxBodyBytes))
	if err != nil {
		var tooLarge *http.MaxBytesError
		if errors.As(err, &tooLarge) {
			return reject(http.StatusRequestEntityTooLarge, "body over 1 MiB")
		}
		return reject(http.StatusBadRequest, "unreadable body")
	}
	// Verification comes before any parsing: until it passes, the body is
	// an attacker's bytes. The svix-id is not logged before it either.
	if err := r.verifier.Verify(body, req.Header); err != nil {
		return reject(http.StatusUnauthorized, "signature: "+err.Error())
	}
	msgID := messageID(req.Header)
	if len(msgID) > maxMessageIDLen || !printable(msgID) {
		return reject(http.StatusBadRequest, "unusable svix-id")
	}
	ev, err := DecodeEvent(body)
	if err != nil {
		d := reject(http.StatusBadRequest, err.Error())
		d.msgID = msgID
		return d
	}
	d := delivery{eventType: ev.Type, msgID: msgID}

	ctx, cancel := context.WithTimeout(req.Context(), applyTimeout)
	defer cancel()
	d.result, d.err = r.apply(ctx, msgID, ev, body)
	if d.err != nil {
		d.result, d.status, d.reason = ResultFailed, http.StatusInternalServerError, "internal error"
		if store.IsUnavailable(d.err) || errors.Is(d.err, context.DeadlineExceeded) || errors.Is(d.err, context.Canceled) {
			d.status, d.reason = http.StatusServiceUnavailable, "database unavailable, retry later"
			w.Header().Set("Retry-After", strconv.Itoa(int(store.RetryAfter/time.Second)))
		}
		writeJSON(w, d.status, map[string]string{"result": string(d.result), "error": d.reason})
		return d
	}
	if d.result == ResultIgnored {
		d.reason = "event type not handled"
	}
	d.status = http.StatusOK
	writeJSON(w, d.status, map[string]string{"result": string(d.result)})
	return d
}

// messageID returns the message id the verifier used: svix-id, or the
// Standard Webhooks webhook-id that Svix's verifier falls back to.
func messageID(h http.Header) string {
	if h.Get("svix-id") != "" && h.Get("svix-signature") != "" && h.Get("svix-timestamp") != "" {
		return h.Get("svix-id")
	}
	return h.Get("webhook-id")
}

// typeLabel bounds the metric's type label to the handled types: every
// other type is "other", and a delivery rejected before decoding is
// "unknown".
func typeLabel(t string) string {
	switch {
	case t == "":
		return "unknown"
	case slices.Contains(HandledTypes, t):
		return t
	}
	return "other"
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	json.NewEncoder(w).Encode(v) //nolint:errcheck // the client may be gone
}

package webhook

import (
	"encoding/json"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"

	"github.com/gatehouse-dev/gatehouse/internal/clerkemu"
	"github.com/gatehouse-dev/gatehouse/internal/store/storetest"
	"github.com/gatehouse-dev/gatehouse/internal/testlog"
)

func TestMetricsAndLogs(t *testing.T) {
	s := storetest.Open(t, "sqlite")
	reg := prometheus.NewRegistry()
	secret := newSecret()
	logs := &testlog.Buffer{}
	newReceiver := func() *Receiver {
		r, err := New(Config{Client: s.Client, Dialect: s.Dialect, Secret: secret, Registerer: reg, Logger: slog.New(slog.NewJSONHandler(logs, nil))})
		if err != nil {
			t.Fatal(err)
		}
		return r
	}
	// Two receivers on one registry (as two servers in one process) share
	// the series instead of failing to register.
	r := newReceiver()
	srv := httptest.NewServer(newReceiver())
	defer srv.Close()
	e := &endpoint{t: t, receiver: r, url: srv.URL, secret: secret, logs: logs}

	body := sample(t, TypeUserCreated, clerkemu.Sample{})
	msgID := clerkemu.NewMessageID()
	e.deliver(msgID, body)
	e.deliver(msgID, body)
	e.deliver("", sample(t, TypeUserUpdated, clerkemu.Sample{UpdatedAt: time.UnixMilli(1_730_000_000_000)})) // before the fixture's user.created
	e.deliver("", []byte(`{"type":"session.created","object":"event","data":{"id":"sess_1"}}`))
	bad := *e
	bad.secret = newSecret()
	bad.deliver("", body)

	for _, tc := range []struct {
		typ, result string
		want        float64
	}{
		{"user.created", "applied", 1},
		{"user.created", "duplicate", 1},
		{"user.updated", "stale", 1},
		{"other", "ignored", 1},
		{"unknown", "rejected", 1},
	} {
		var m dto.Metric
		if err := r.events.WithLabelValues(tc.typ, tc.result).Write(&m); err != nil {
			t.Fatal(err)
		}
		if got := m.GetCounter().GetValue(); got != tc.want {
			t.Errorf("gatehouse_webhook_events_total{type=%q,result=%q} = %v, want %v", tc.typ, tc.result, got, tc.want)
		}
	}
	families, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	gathered := map[string]int{}
	for _, f := range families {
		gathered[f.GetName()] = len(f.GetMetric())
	}
	// applied, duplicate, stale, ignored, rejected: five series each; the
	// retention sweep's one counter.
	series := map[string]int{"gatehouse_webhook_events_total": 5, "gatehouse_webhook_duration_seconds": 5, "gatehouse_webhook_events_purged_total": 1}
	if diff := cmp.Diff(series, gathered); diff != "" {
		t.Errorf("gathered series (-want +got):\n%s", diff)
	}

	var lines []map[string]any
	for _, line := range strings.Split(strings.TrimSpace(logs.String()), "\n") {
		var m map[string]any
		if err := json.Unmarshal([]byte(line), &m); err != nil {
			t.Fatalf("log line %q: %v", line, err)
		}
		delete(m, "time")
		delete(m, "duration")
		lines = append(lines, m)
	}
	want := []map[string]any{
		{"level": "INFO", "msg": "webhook", "type": "user.created", "svix_id": msgID, "result": "applied", "status": float64(http.StatusOK)},
		{"level": "INFO", "msg": "webhook", "type": "user.created", "svix_id": msgID, "result": "duplicate", "status": float64(http.StatusOK)},
	}
	if diff := cmp.Diff(want, lines[:2]); diff != "" {
		t.Errorf("log lines (-want +got):\n%s", diff)
	}
	if len(lines) != 5 {
		t.Fatalf("%d log lines, want 5 (one per delivery)", len(lines))
	}
	if rejected := lines[4]; rejected["result"] != "rejected" || rejected["level"] != "WARN" || rejected["svix_id"] != "" {
		t.Errorf("rejected delivery logged as %v: want WARN, and no svix-id from an unverified request", rejected)
	}
}

func TestNewValidatesConfig(t *testing.T) {
	s := storetest.Open(t, "sqlite")
	for name, cfg := range map[string]Config{
		"no client":    {Secret: newSecret()},
		"no secret":    {Client: s.Client},
		"not base64":   {Client: s.Client, Secret: "whsec_not*base64!"},
		"metric clash": {Client: s.Client, Secret: newSecret(), Registerer: clashingRegistry(t)},
	} {
		t.Run(name, func(t *testing.T) {
			r, err := New(cfg)
			if err == nil {
				t.Fatalf("New = %v, want an error", r)
			}
			if strings.Contains(err.Error(), "not*base64") {
				t.Errorf("error echoes the secret: %v", err)
			}
		})
	}
}

// clashingRegistry holds a different collector under the receiver's
// counter name.
func clashingRegistry(t *testing.T) *prometheus.Registry {
	reg := prometheus.NewRegistry()
	reg.MustRegister(prometheus.NewGauge(prometheus.GaugeOpts{Name: "gatehouse_webhook_events_total", Help: "not ours"}))
	return reg
}

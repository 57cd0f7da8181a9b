package app_test

import (
	"context"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/gatehouse-dev/gatehouse/internal/config"
	"github.com/gatehouse-dev/gatehouse/internal/store"
	"github.com/gatehouse-dev/gatehouse/internal/store/storetest"
	"github.com/gatehouse-dev/gatehouse/internal/viewer"
)

// TestWebhookRecordsArePurgedAfterTheRetention: a running Gatehouse purges
// the records of webhook deliveries older than GATEHOUSE_WEBHOOK_RETENTION
// (here 2h), on its own, and keeps the younger ones.
func TestWebhookRecordsArePurgedAfterTheRetention(t *testing.T) {
	for _, dialect := range storetest.Dialects {
		t.Run(dialect, func(t *testing.T) {
			url := storetest.URL(t, dialect)
			ctx := context.Background()
			st, err := store.Open(ctx, url)
			if err != nil {
				t.Fatal(err)
			}
			if err := st.Migrate(ctx); err != nil {
				t.Fatal(err)
			}
			sys := viewer.NewSystemContext(ctx)
			now := time.Now().UTC()
			for id, age := range map[string]time.Duration{
				"msg_lastweek": 8 * 24 * time.Hour,
				"msg_3h":       3 * time.Hour,
				"msg_1h":       time.Hour,
			} {
				st.Client.WebhookEvent.Create().SetID(id).SetType("user.updated").SetResult("applied").
					SetPayload([]byte(`{"data":{"email_addresses":[{"email_address":"old@example.com"}]}}`)).
					SetReceivedAt(now.Add(-age)).ExecX(sys)
			}
			st.Close()

			g := start(t, dialect, onDatabase(url), func(c *config.Config) { c.WebhookRetention = 2 * time.Hour })
			records := func() []string {
				ids, err := g.app.Store.Client.WebhookEvent.Query().IDs(sys)
				if err != nil {
					t.Fatal(err)
				}
				return ids
			}
			waitFor(t, "the sweep", func() bool { return len(records()) == 1 })
			if diff := cmp.Diff([]string{"msg_1h"}, records()); diff != "" {
				t.Errorf("records kept (-want +got):\n%s", diff)
			}
			r, err := http.Get(g.httpURL + "/metrics")
			if err != nil {
				t.Fatal(err)
			}
			metrics, _ := io.ReadAll(r.Body)
			r.Body.Close()
			if !strings.Contains(string(metrics), "gatehouse_webhook_events_purged_total 2") {
				t.Errorf("/metrics does not count the 2 purged records")
			}
		})
	}
}

package webhook

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/gatehouse-dev/gatehouse/internal/clerkemu"
	"github.com/gatehouse-dev/gatehouse/internal/store/storetest"
)

// BenchmarkReceiveUserCreated applies distinct, signed user.created events
// through the Receiver's ServeHTTP (no network), on SQLite and on Postgres
// (with TEST_DATABASE_URL). Each iteration is one new user.
func BenchmarkReceiveUserCreated(b *testing.B) {
	for _, dialect := range storetest.Dialects {
		b.Run(dialect, func(b *testing.B) {
			st := storetest.Open(b, dialect)
			secret := newSecret()
			r, err := New(Config{
				Client: st.Client, Dialect: st.Dialect, Secret: secret,
				Logger: slog.New(slog.NewJSONHandler(io.Discard, nil)),
			})
			if err != nil {
				b.Fatal(err)
			}
			reqs := make([]*http.Request, b.N)
			for i := range reqs {
				body, err := clerkemu.SampleEvent(TypeUserCreated, clerkemu.Sample{UserID: fmt.Sprintf("user_bench%d", i), UpdatedAt: time.Now()})
				if err != nil {
					b.Fatal(err)
				}
				if reqs[i], err = clerkemu.NewWebhookRequest(context.Background(), "http://gatehouse/webhooks/clerk", secret, "", time.Now(), body); err != nil {
					b.Fatal(err)
				}
			}
			b.ResetTimer()
			for _, req := range reqs {
				w := httptest.NewRecorder()
				r.ServeHTTP(w, req)
				if w.Code != http.StatusOK {
					b.Fatalf("answer %d: %s", w.Code, w.Body)
				}
			}
		})
	}
}

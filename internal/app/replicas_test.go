package app_test

import (
	"context"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	gatehousev1 "github.com/gatehouse-dev/gatehouse/gen/gatehouse/v1"
	"github.com/gatehouse-dev/gatehouse/internal/clerkemu"
	"github.com/gatehouse-dev/gatehouse/internal/store/storetest"
	"github.com/gatehouse-dev/gatehouse/internal/webhook"
)

// startReplica starts one more replica on dbURL behind c.
func (c *clerkFixture) startReplica(t *testing.T, dbURL string, opts ...option) *gatehouse {
	t.Helper()
	cfg := c.serveConfig(dbURL)
	for _, o := range opts {
		o(cfg)
	}
	return c.startApp(t, cfg, testLogger(t))
}

// TestWebhookOnOneReplicaReachesTheOthers: a user.updated, then a
// user.deleted, applied by replica A shows on replica B — which has just
// vouched for the user and so trusts its cached row — within a second, well
// inside B's 5 s trust window.
func TestWebhookOnOneReplicaReachesTheOthers(t *testing.T) {
	c := newClerk(t)
	dbURL := storetest.NewPostgresDatabase(t)
	a := c.startReplica(t, dbURL)
	b := c.startReplica(t, dbURL)
	ctx := context.Background()
	const userID = "user_xr"
	tok := withToken(ctx, b.mint(t, clerkemu.Session{UserID: userID}))

	send := func(eventType string, s clerkemu.Sample) {
		t.Helper()
		s.UserID, s.UpdatedAt = userID, time.Now()
		body, err := clerkemu.SampleEvent(eventType, s)
		if err != nil {
			t.Fatal(err)
		}
		if code := sendWebhook(t, a, "", body); code != http.StatusOK {
			t.Fatalf("%s on A: %d", eventType, code)
		}
	}

	// B vouches for the user (and caches the row) just before A applies.
	if me, err := b.users.GetMe(tok, &gatehousev1.GetMeRequest{}); err != nil || me.User.FirstName != "F"+userID {
		t.Fatalf("GetMe on B: %v, %v", me.GetUser(), err)
	}
	send(webhook.TypeUserUpdated, clerkemu.Sample{FirstName: "Renamed"})
	took := within(t, time.Second, "B's GetMe to show the rename made on A", func() bool {
		me, err := b.users.GetMe(tok, &gatehousev1.GetMeRequest{})
		return err == nil && me.User.FirstName == "Renamed"
	})
	t.Logf("user.updated on A seen by B after %v", took)

	if _, err := b.users.GetMe(tok, &gatehousev1.GetMeRequest{}); err != nil {
		t.Fatal(err)
	}
	send(webhook.TypeUserDeleted, clerkemu.Sample{})
	took = within(t, time.Second, "B to refuse the session of the user deleted on A", func() bool {
		_, err := b.users.GetMe(tok, &gatehousev1.GetMeRequest{})
		return status.Code(err) == codes.Unauthenticated
	})
	t.Logf("user.deleted on A seen by B after %v", took)

	for _, m := range []struct {
		g      *gatehouse
		series string
	}{
		{a, `gatehouse_cache_notifications_total{direction="sent"} 2`},
		{b, `gatehouse_cache_notifications_total{direction="received"} 2`},
		{b, `gatehouse_cache_listener_connected 1`},
	} {
		if metrics := get(t, m.g.httpURL+"/metrics"); !strings.Contains(metrics, m.series) {
			t.Errorf("/metrics of %s lacks %s", m.g.httpURL, m.series)
		}
	}
}

func get(t *testing.T, url string) string {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// within polls cond until it holds, failing the test if it does not within
// limit; it returns how long it took.
func within(t *testing.T, limit time.Duration, what string, cond func() bool) time.Duration {
	t.Helper()
	began := time.Now()
	for !cond() {
		if time.Since(began) > limit {
			t.Fatalf("%s: not within %v", what, limit)
		}
		time.Sleep(10 * time.Millisecond)
	}
	return time.Since(began)
}

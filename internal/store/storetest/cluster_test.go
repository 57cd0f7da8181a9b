package storetest_test

import (
	"context"
	"testing"

	"github.com/gatehouse-dev/gatehouse/internal/store"
	"github.com/gatehouse-dev/gatehouse/internal/store/storetest"
)

// TestCluster: a cluster of the test's own answers, stops at once, and
// answers again after Start.
func TestCluster(t *testing.T) {
	c := storetest.NewCluster(t)
	ctx := context.Background()
	s, err := store.Open(ctx, c.URL())
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if err := s.Ping(ctx); err != nil {
		t.Fatalf("ping: %v", err)
	}
	c.Stop(t)
	if err := s.Ping(ctx); !store.IsUnavailable(err) {
		t.Fatalf("ping of a stopped cluster: %v, want an outage", err)
	}
	c.Start(t)
	if err := s.Ping(ctx); err != nil {
		t.Fatalf("ping after restart: %v", err)
	}
}

package store_test

import (
	"context"
	"database/sql"
	"testing"
	"time"

	"github.com/gatehouse-dev/gatehouse/internal/store"
	"github.com/gatehouse-dev/gatehouse/internal/store/storetest"
)

func TestOpenMigratePing(t *testing.T) {
	storetest.ForEach(t, func(t *testing.T, s *store.Store) {
		ctx := context.Background()
		if err := s.Migrate(ctx); err != nil {
			t.Fatalf("second migrate: %v", err)
		}
		if err := s.Ping(ctx); err != nil {
			t.Fatalf("ping: %v", err)
		}
	})
}

func TestOpenRejectsUnknownScheme(t *testing.T) {
	if _, err := store.Open(context.Background(), "mysql://root@localhost/x"); err == nil {
		t.Fatal("Open(mysql://…) succeeded; want an error")
	}
}

// TestMigrateWaitsForTheMigrationLock: while another session holds the
// migration lock — another replica migrating — Migrate waits, and once it is
// released, finishes.
func TestMigrateWaitsForTheMigrationLock(t *testing.T) {
	ctx := context.Background()
	url := storetest.NewPostgresDatabase(t)
	s, err := store.Open(ctx, url)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	other, err := sql.Open("postgres", url)
	if err != nil {
		t.Fatal(err)
	}
	defer other.Close()
	holder, err := other.Conn(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer holder.Close()
	if _, err := holder.ExecContext(ctx, "SELECT pg_advisory_lock($1)", store.MigrationLock); err != nil {
		t.Fatal(err)
	}

	done := make(chan error, 1)
	go func() { done <- s.Migrate(ctx) }()
	deadline := time.Now().Add(10 * time.Second)
	for {
		var waiting int
		err := other.QueryRowContext(ctx, `SELECT count(*) FROM pg_locks l JOIN pg_database d ON d.oid = l.database
			WHERE d.datname = current_database() AND l.locktype = 'advisory' AND NOT l.granted`).Scan(&waiting)
		if err != nil {
			t.Fatal(err)
		}
		if waiting == 1 {
			break
		}
		select {
		case err := <-done:
			t.Fatalf("Migrate returned (%v) while another session held the migration lock", err)
		default:
		}
		if time.Now().After(deadline) {
			t.Fatal("Migrate is not waiting for the migration lock")
		}
		time.Sleep(20 * time.Millisecond)
	}

	if _, err := holder.ExecContext(ctx, "SELECT pg_advisory_unlock($1)", store.MigrationLock); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("Migrate after the lock was released: %v", err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("Migrate did not finish after the lock was released")
	}
	var n int
	if err := other.QueryRowContext(ctx, "SELECT count(*) FROM webhook_events").Scan(&n); err != nil {
		t.Fatalf("schema after Migrate: %v", err)
	}
}

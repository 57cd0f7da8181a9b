package store_test

import (
	"context"
	"database/sql"
	"database/sql/driver"
	"errors"
	"fmt"
	"io"
	"net"
	"path/filepath"
	"syscall"
	"testing"

	"github.com/lib/pq"

	"github.com/gatehouse-dev/gatehouse/internal/store"
)

func TestIsUnavailable(t *testing.T) {
	tests := []struct {
		name string
		err  error
		want bool
	}{
		{"nil", nil, false},
		{"connection failure (08006)", fmt.Errorf("query: %w", &pq.Error{Code: "08006"}), true},
		{"cannot connect (08001)", &pq.Error{Code: "08001"}, true},
		{"too many connections (53300)", &pq.Error{Code: "53300"}, true},
		{"out of memory (53200)", &pq.Error{Code: "53200"}, true},
		{"admin shutdown (57P01)", &pq.Error{Code: "57P01"}, true},
		{"crash shutdown (57P02)", &pq.Error{Code: "57P02"}, true},
		{"starting up (57P03)", &pq.Error{Code: "57P03"}, true},
		{"unique violation (23505)", &pq.Error{Code: "23505"}, false},
		{"deadlock (40P01)", &pq.Error{Code: "40P01"}, false},
		{"query canceled (57014)", &pq.Error{Code: "57014"}, false},
		{"syntax error (42601)", &pq.Error{Code: "42601"}, false},
		{"bad connection", fmt.Errorf("exec: %w", driver.ErrBadConn), true},
		{"connection done", sql.ErrConnDone, true},
		{"unexpected EOF", fmt.Errorf("read: %w", io.ErrUnexpectedEOF), true},
		// lib/pq's Begin on a connection the server closed as it went down
		// (seen when Postgres was stopped -m immediate under load).
		{"EOF", fmt.Errorf("ent: starting a transaction: %w", io.EOF), true},
		{"dial refused", &net.OpError{Op: "dial", Net: "tcp", Err: syscall.ECONNREFUSED}, true},
		{"reset", &net.OpError{Op: "read", Net: "tcp", Err: syscall.ECONNRESET}, true},
		{"the caller's deadline", fmt.Errorf("query: %w", context.DeadlineExceeded), false},
		{"the caller's cancellation", fmt.Errorf("query: %w", context.Canceled), false},
		{"anything else", errors.New("record not found"), false},
	}
	for _, tt := range tests {
		if got := store.IsUnavailable(tt.err); got != tt.want {
			t.Errorf("%s: IsUnavailable(%v) = %v, want %v", tt.name, tt.err, got, tt.want)
		}
	}
}

// TestIsUnavailableOnRealFailures: what the drivers really return when the
// server is not there, and when the pool has been closed by a shutdown.
func TestIsUnavailableOnRealFailures(t *testing.T) {
	ctx := context.Background()

	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := lis.Addr().String()
	lis.Close() // nothing listens there now
	db, err := sql.Open("postgres", "postgres://postgres@"+addr+"/x?sslmode=disable")
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	if err := db.PingContext(ctx); !store.IsUnavailable(err) {
		t.Errorf("Postgres not listening: IsUnavailable(%v) = false", err)
	}

	s, err := store.Open(ctx, filepath.Join(t.TempDir(), "g.db"))
	if err != nil {
		t.Fatal(err)
	}
	s.Close()
	if err := s.Ping(ctx); !store.IsUnavailable(err) {
		t.Errorf("closed store: IsUnavailable(%v) = false", err)
	}
}

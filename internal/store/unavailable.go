package store

import (
	"context"
	"database/sql"
	"database/sql/driver"
	"errors"
	"io"
	"net"
	"strings"
	"syscall"
	"time"

	"modernc.org/sqlite"
	sqlite3 "modernc.org/sqlite/lib"
)

// RetryAfter is the delay Gatehouse suggests to a client (google.rpc.RetryInfo,
// Retry-After) when the database is unavailable: about how long a failover
// or a restart takes to be noticed and a new connection made.
const RetryAfter = time.Second

// IsUnavailable reports whether err, returned by an operation on the store,
// means that the database cannot serve now but may after a while: it is
// unreachable (connection refused or reset, a network error), it dropped the
// connection, it is shutting down, starting up or out of connections or
// other resources, it is busy (SQLite's lock wait ran out), or the store is
// being closed as the process shuts down. Such a failure is the client's to
// retry — UNAVAILABLE for a call, 503 for a webhook — and never a bug.
//
// A Postgres error with an SQLSTATE is judged by its class alone: 08
// (connection exception), 53 (insufficient resources) and 57P01–57P03
// (shutdown, crash shutdown, cannot connect now) are outages; anything else
// (a constraint, a deadlock, a cancelled query) is not.
//
// Context errors are not outages: they are the caller's deadline or
// cancellation, and are reported as such.
func IsUnavailable(err error) bool {
	if err == nil || errors.Is(err, context.DeadlineExceeded) || errors.Is(err, context.Canceled) {
		return false // (context.DeadlineExceeded is a net.Error too)
	}
	var state interface{ SQLState() string }
	if errors.As(err, &state) {
		switch s := state.SQLState(); {
		case strings.HasPrefix(s, "08"), strings.HasPrefix(s, "53"),
			s == "57P01", s == "57P02", s == "57P03":
			return true
		}
		return false
	}
	var lite *sqlite.Error
	if errors.As(err, &lite) {
		switch lite.Code() & 0xff { // the primary result code
		case sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED:
			return true
		}
		return false
	}
	var netErr net.Error
	switch {
	case errors.Is(err, driver.ErrBadConn), // lib/pq: the connection broke, or the server ended it (a FATAL error)
		errors.Is(err, sql.ErrConnDone),
		errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF), // the server closed the connection
		errors.Is(err, syscall.ECONNREFUSED),
		errors.Is(err, syscall.ECONNRESET),
		errors.Is(err, syscall.EPIPE),
		errors.As(err, &netErr):
		return true
	}
	// database/sql's error for a pool that Close has closed is not exported;
	// it is met only while the process shuts down, when another replica
	// can take the call.
	return strings.Contains(err.Error(), "sql: database is closed")
}

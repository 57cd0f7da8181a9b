// Package store opens Gatehouse's database — embedded SQLite by default,
// Postgres (lib/pq) for a postgres:// URL — and migrates its schema.
//
// The ent client it returns enforces tenancy itself (see internal/tenancy):
// callers pass a context carrying a viewer, and only that viewer's tenant is
// reachable.
package store

import (
	"context"
	"database/sql"
	"database/sql/driver"
	"errors"
	"fmt"
	"net/url"
	"strings"
	"sync"
	"time"

	"entgo.io/ent/dialect"
	entsql "entgo.io/ent/dialect/sql"
	_ "github.com/lib/pq"  // Postgres driver.
	_ "modernc.org/sqlite" // Embedded SQLite driver.

	"github.com/gatehouse-dev/gatehouse/ent"
	"github.com/gatehouse-dev/gatehouse/ent/migrate"
	_ "github.com/gatehouse-dev/gatehouse/ent/runtime" // Schema hooks and privacy policies.
)

// DefaultSQLitePath is the database used when DATABASE_URL is unset.
const DefaultSQLitePath = "gatehouse.db"

// Store is an open database.
type Store struct {
	// Client is the tenancy-enforcing ent client.
	Client *ent.Client
	// DB is the underlying pool.
	DB *sql.DB
	// Dialect is dialect.Postgres or dialect.SQLite.
	Dialect string

	dsn string // what the driver was opened with, for NewListener
}

// Open connects to databaseURL: "" or a file path or "file:" / "sqlite:" URL
// for SQLite, "postgres://" or "postgresql://" for Postgres. It checks the
// connection but does not migrate.
func Open(ctx context.Context, databaseURL string) (*Store, error) {
	driver, dsn, dia, err := parseURL(databaseURL)
	if err != nil {
		return nil, err
	}
	db, err := sql.Open(driver, dsn)
	if err != nil {
		return nil, fmt.Errorf("open %s database: %w", dia, err)
	}
	if dia == dialect.SQLite {
		// One writer at a time; WAL lets readers proceed beside it.
		db.SetMaxOpenConns(1)
	} else {
		db.SetMaxOpenConns(20)
		db.SetMaxIdleConns(20)
		db.SetConnMaxIdleTime(5 * time.Minute)
	}
	pingCtx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	if err := db.PingContext(pingCtx); err != nil {
		db.Close()
		return nil, fmt.Errorf("connect to %s database: %w", dia, err)
	}
	drv := notifyingDriver{entsql.OpenDB(dia, db)}
	return &Store{Client: ent.NewClient(ent.Driver(drv)), DB: db, Dialect: dia, dsn: dsn}, nil
}

// migrateMu serializes migrations within a process: ent's Schema.Create
// mutates the package-level table definitions (ent/migrate.Tables) as it
// plans, so two at once — two stores in one process — race.
var migrateMu sync.Mutex

// MigrationLock is the key of the Postgres session advisory lock that
// serializes schema migrations across processes ("gatehous" in ASCII). A
// replica waiting for it shows in pg_locks as an advisory lock not granted.
const MigrationLock int64 = 0x67617465686f7573

// Migrate creates or updates the schema. It only adds: columns and tables are
// never dropped.
//
// Any number of replicas may migrate the same database at the same moment:
// on Postgres each waits for the session advisory lock MigrationLock, and
// the ones after the first find the schema already current. The wait ends
// with ctx.
func (s *Store) Migrate(ctx context.Context) error {
	migrateMu.Lock()
	defer migrateMu.Unlock()
	if s.Dialect == dialect.Postgres {
		unlock, err := s.advisoryLock(ctx, MigrationLock)
		if err != nil {
			return fmt.Errorf("migrate %s schema: take the migration lock: %w", s.Dialect, err)
		}
		defer unlock()
	}
	if err := s.Client.Schema.Create(ctx, migrate.WithForeignKeys(true)); err != nil {
		return fmt.Errorf("migrate %s schema: %w", s.Dialect, err)
	}
	return nil
}

// advisoryLock takes the Postgres session advisory lock key on a connection
// of its own, waiting as long as ctx allows, and returns what releases it.
// The lock belongs to that connection: if the process dies, Postgres
// releases it with the connection.
func (s *Store) advisoryLock(ctx context.Context, key int64) (unlock func(), err error) {
	conn, err := s.DB.Conn(ctx)
	if err != nil {
		return nil, err
	}
	if _, err := conn.ExecContext(ctx, "SELECT pg_advisory_lock($1)", key); err != nil {
		conn.Close()
		return nil, err
	}
	return func() {
		ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
		defer cancel()
		if _, err := conn.ExecContext(ctx, "SELECT pg_advisory_unlock($1)", key); err != nil {
			// Drop the connection instead of pooling it: the lock goes with it.
			conn.Raw(func(any) error { return driver.ErrBadConn }) //nolint:errcheck // it is the point
		}
		conn.Close()
	}, nil
}

// Ping checks that the database answers.
func (s *Store) Ping(ctx context.Context) error {
	return s.DB.PingContext(ctx)
}

// Close closes the pool.
func (s *Store) Close() error {
	return s.Client.Close()
}

// Redacted returns databaseURL with any password masked, for logs.
func Redacted(databaseURL string) string {
	u, err := url.Parse(databaseURL)
	if err != nil || u.User == nil {
		return databaseURL
	}
	return u.Redacted()
}

// withBinaryParameters turns on lib/pq's binary_parameters unless the URL
// says otherwise: a statement with parameters then takes one round trip
// instead of two (docs/BENCHMARKS.md has the measured difference).
func withBinaryParameters(raw string) string {
	u, err := url.Parse(raw)
	if err != nil {
		return raw // lib/pq reports the malformed URL
	}
	q := u.Query()
	if q.Has("binary_parameters") {
		return raw
	}
	q.Set("binary_parameters", "yes")
	u.RawQuery = q.Encode()
	return u.String()
}

func parseURL(raw string) (driver, dsn, dia string, err error) {
	switch {
	case raw == "":
		raw = DefaultSQLitePath
	case strings.HasPrefix(raw, "postgres://"), strings.HasPrefix(raw, "postgresql://"):
		return "postgres", withBinaryParameters(raw), dialect.Postgres, nil
	case strings.Contains(raw, "://"):
		return "", "", "", errors.New("DATABASE_URL: want postgres://… or a SQLite file path")
	}
	path := strings.TrimPrefix(strings.TrimPrefix(raw, "sqlite:"), "file:")
	if i := strings.IndexByte(path, '?'); i >= 0 {
		path = path[:i]
	}
	if path == "" {
		return "", "", "", errors.New("DATABASE_URL: empty SQLite path")
	}
	q := url.Values{}
	q.Add("_pragma", "foreign_keys(1)")
	q.Add("_pragma", "journal_mode(WAL)")
	q.Add("_pragma", "busy_timeout(10000)")
	q.Add("_pragma", "synchronous(NORMAL)")
	q.Set("_txlock", "immediate")
	// Store times as "YYYY-MM-DD HH:MM:SS.fff+hh:mm", which sorts and
	// compares correctly, not Go's time.String with its monotonic suffix.
	q.Set("_time_format", "sqlite")
	return "sqlite", "file:" + path + "?" + q.Encode(), dialect.SQLite, nil
}

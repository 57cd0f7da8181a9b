// Package storetest gives each test a fresh, migrated database: SQLite in a
// temp directory, or a new database on the Postgres server named by
// TEST_DATABASE_URL, dropped when the test ends.
package storetest

import (
	"context"
	"crypto/rand"
	"database/sql"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/gatehouse-dev/gatehouse/internal/store"
)

// Dialects are the databases ForEach runs a test on.
var Dialects = []string{"sqlite", "postgres"}

// ForEach runs f as a subtest on a fresh SQLite store and, when
// TEST_DATABASE_URL is set, on a fresh Postgres store.
func ForEach(t *testing.T, f func(t *testing.T, s *store.Store)) {
	t.Helper()
	for _, d := range Dialects {
		t.Run(d, func(t *testing.T) {
			f(t, Open(t, d))
		})
	}
}

// Open returns a fresh migrated store of the dialect ("sqlite" or
// "postgres"). Postgres tests are skipped, saying why, when
// TEST_DATABASE_URL is not set.
func Open(t testing.TB, dialect string) *store.Store {
	t.Helper()
	ctx := context.Background()
	var dsn string
	switch dialect {
	case "sqlite":
		dsn = filepath.Join(t.TempDir(), "gatehouse.db")
	case "postgres":
		dsn = NewPostgresDatabase(t)
	default:
		t.Fatalf("storetest: unknown dialect %q", dialect)
	}
	s, err := store.Open(ctx, dsn)
	if err != nil {
		t.Fatalf("storetest: %v", err)
	}
	t.Cleanup(func() { s.Close() })
	if err := s.Migrate(ctx); err != nil {
		t.Fatalf("storetest: %v", err)
	}
	return s
}

// NewPostgresDatabase creates an empty database on TEST_DATABASE_URL's server,
// drops it when the test ends, and returns its URL. It skips the test when
// TEST_DATABASE_URL is not set.
func NewPostgresDatabase(t testing.TB) string {
	t.Helper()
	base := os.Getenv("TEST_DATABASE_URL")
	if base == "" {
		t.Skip("TEST_DATABASE_URL not set: skipping the Postgres run (see README, Testing)")
	}
	admin, err := sql.Open("postgres", base)
	if err != nil {
		t.Fatalf("storetest: %v", err)
	}
	defer admin.Close()
	name := "gatehouse_test_" + strings.ToLower(rand.Text()[:16])
	if _, err := admin.Exec("CREATE DATABASE " + name); err != nil {
		t.Fatalf("storetest: create database: %v", err)
	}
	t.Cleanup(func() {
		admin, err := sql.Open("postgres", base)
		if err != nil {
			t.Errorf("storetest: %v", err)
			return
		}
		defer admin.Close()
		if _, err := admin.Exec("DROP DATABASE IF EXISTS " + name + " WITH (FORCE)"); err != nil {
			t.Errorf("storetest: drop database %s: %v", name, err)
		}
	})
	u, err := url.Parse(base)
	if err != nil {
		t.Fatalf("storetest: TEST_DATABASE_URL: %v", err)
	}
	u.Path = "/" + name
	return u.String()
}

// URL returns a fresh database URL for the dialect without opening it: a
// SQLite file path in a temp dir, or a new Postgres database.
func URL(t testing.TB, dialect string) string {
	t.Helper()
	if dialect == "sqlite" {
		return filepath.Join(t.TempDir(), "gatehouse.db")
	}
	return NewPostgresDatabase(t)
}

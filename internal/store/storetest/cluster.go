package storetest

import (
	"bytes"
	"crypto/rand"
	"fmt"
	"net"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"
)

// RequireClusterEnv, set to 1 (as CI does), makes NewCluster fail instead
// of skipping when it cannot make a cluster, so that fault tests never
// silently stop running.
const RequireClusterEnv = "TEST_REQUIRE_PG_CLUSTER"

// clusterPrefix starts the name of every cluster NewCluster makes; the
// test process's pid follows, so that clusters left by a test binary that
// was killed can be told apart and dropped.
const clusterPrefix = "gatehousetest_"

// Cluster is a Postgres server of a test's own, which the test may stop and
// start — unlike the shared server of TEST_DATABASE_URL, which other
// packages' tests use at the same time. It is a Debian postgresql-common
// cluster (pg_createcluster) with its data in a temporary directory,
// listening on localhost only with trust authentication, and fsync off.
type Cluster struct {
	Version string // the Postgres major version, e.g. "15"
	Name    string // the cluster's name, for pg_ctlcluster
	Port    int
	dir     string
}

// NewCluster makes and starts a Postgres cluster for t, and drops it (data
// and all) when t ends, whether it passed or not. It skips t, saying why,
// when TEST_DATABASE_URL is unset (Postgres tests were not asked for), when
// not running as root, or when Debian's postgresql-common tools are
// missing; with TEST_REQUIRE_PG_CLUSTER=1 those fail t instead.
func NewCluster(t testing.TB) *Cluster {
	t.Helper()
	unable := t.Skipf
	if os.Getenv(RequireClusterEnv) == "1" {
		unable = t.Fatalf
	}
	switch {
	case os.Getenv("TEST_DATABASE_URL") == "":
		unable("TEST_DATABASE_URL not set: skipping the test that needs a Postgres cluster of its own (see README, Testing)")
	case os.Geteuid() != 0:
		unable("not root: pg_createcluster needs root to make a Postgres cluster of the test's own")
	}
	// pg_isready comes with postgresql-common too (postgresql-client-common);
	// without it, Start would wait 30 s and fail.
	for _, tool := range []string{"pg_createcluster", "pg_ctlcluster", "pg_dropcluster", "pg_lsclusters", "pg_isready"} {
		if _, err := exec.LookPath(tool); err != nil {
			unable("%s not found: install Debian's postgresql-common to run the tests that stop and start Postgres", tool)
		}
	}
	version, err := newestVersion()
	if err != nil {
		unable("no Postgres server installed: %v", err)
	}
	pg, err := user.Lookup("postgres")
	if err != nil {
		unable("no postgres user: %v", err)
	}
	dropAbandonedClusters(t)

	dir, err := os.MkdirTemp("", "gatehouse-pg-")
	if err != nil {
		t.Fatal(err)
	}
	// Registered first, so it runs last: after the cluster is dropped.
	t.Cleanup(func() { os.RemoveAll(dir) })
	uid, _ := strconv.Atoi(pg.Uid)
	gid, _ := strconv.Atoi(pg.Gid)
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Chown(dir, uid, gid); err != nil {
		t.Fatal(err)
	}
	c := &Cluster{
		Version: version,
		Name:    fmt.Sprintf("%s%d_%s", clusterPrefix, os.Getpid(), strings.ToLower(rand.Text()[:6])),
		Port:    freePort(t),
		dir:     dir,
	}
	t.Cleanup(func() {
		// --stop: stop it first if it runs. Never leave a server behind.
		if out, err := exec.Command("pg_dropcluster", "--stop", c.Version, c.Name).CombinedOutput(); err != nil {
			t.Errorf("storetest: pg_dropcluster %s %s: %v\n%s", c.Version, c.Name, err, out)
		}
	})
	run(t, "pg_createcluster", "--quiet", "--start-conf=manual",
		"-d", filepath.Join(dir, "data"), "-l", filepath.Join(dir, "postgresql.log"), "-p", strconv.Itoa(c.Port),
		"-o", "listen_addresses=localhost", "-o", "fsync=off", "-o", "full_page_writes=off",
		"-o", "shared_buffers=16MB", "-o", "max_connections=100",
		c.Version, c.Name, "--", "--auth=trust")
	c.Start(t)
	return c
}

// URL is the cluster's postgres database, as the superuser.
func (c *Cluster) URL() string {
	return fmt.Sprintf("postgres://postgres@127.0.0.1:%d/postgres?sslmode=disable", c.Port)
}

// Start starts the server and waits until it accepts connections.
func (c *Cluster) Start(t testing.TB) {
	t.Helper()
	run(t, "pg_ctlcluster", "--skip-systemctl-redirect", c.Version, c.Name, "start")
	deadline := time.Now().Add(30 * time.Second)
	for exec.Command("pg_isready", "-q", "-h", "127.0.0.1", "-p", strconv.Itoa(c.Port)).Run() != nil {
		if time.Now().After(deadline) {
			t.Fatalf("storetest: cluster %s does not accept connections 30 s after start:\n%s", c.Name, c.Log())
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// Stop stops the server the way a crash or a failover does: at once
// (-m immediate), without waiting for clients or checkpointing.
func (c *Cluster) Stop(t testing.TB) {
	t.Helper()
	run(t, "pg_ctlcluster", "--skip-systemctl-redirect", c.Version, c.Name, "stop", "-m", "immediate")
}

// Log returns the server's log so far.
func (c *Cluster) Log() string {
	b, _ := os.ReadFile(filepath.Join(c.dir, "postgresql.log"))
	return string(b)
}

func run(t testing.TB, name string, args ...string) {
	t.Helper()
	out, err := exec.Command(name, args...).CombinedOutput()
	if err != nil {
		t.Fatalf("storetest: %s %s: %v\n%s", name, strings.Join(args, " "), err, out)
	}
}

// newestVersion is the newest Postgres major version with a server
// installed (/usr/lib/postgresql/VERSION/bin/postgres).
func newestVersion() (string, error) {
	entries, err := os.ReadDir("/usr/lib/postgresql")
	if err != nil {
		return "", err
	}
	var versions []int
	for _, e := range entries {
		n, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		if _, err := os.Stat(filepath.Join("/usr/lib/postgresql", e.Name(), "bin", "postgres")); err == nil {
			versions = append(versions, n)
		}
	}
	if len(versions) == 0 {
		return "", fmt.Errorf("none under /usr/lib/postgresql")
	}
	return strconv.Itoa(slices.Max(versions)), nil
}

// freePort returns a TCP port nothing listens on now.
func freePort(t testing.TB) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// dropAbandonedClusters drops the clusters that test processes no longer
// running made: a test binary killed mid-test runs no cleanup.
func dropAbandonedClusters(t testing.TB) {
	out, err := exec.Command("pg_lsclusters", "--no-header").Output()
	if err != nil {
		return
	}
	for line := range strings.Lines(string(out)) {
		f := strings.Fields(line)
		if len(f) < 2 || !strings.HasPrefix(f[1], clusterPrefix) {
			continue
		}
		pidText, _, _ := strings.Cut(strings.TrimPrefix(f[1], clusterPrefix), "_")
		pid, err := strconv.Atoi(pidText)
		if err != nil || processAlive(pid) {
			continue
		}
		if out, err := exec.Command("pg_dropcluster", "--stop", f[0], f[1]).CombinedOutput(); err != nil {
			t.Logf("storetest: dropping abandoned cluster %s: %v\n%s", f[1], err, bytes.TrimSpace(out))
			continue
		}
		if len(f) >= 6 { // the data directory: remove the temporary one around it
			if dir := filepath.Dir(f[5]); strings.HasPrefix(filepath.Base(dir), "gatehouse-pg-") {
				os.RemoveAll(dir)
			}
		}
	}
}

// processAlive reports whether pid runs: it exists and is not a zombie
// waiting to be reaped.
func processAlive(pid int) bool {
	stat, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return false
	}
	// The state follows the command name, which is in parentheses.
	i := bytes.LastIndexByte(stat, ')')
	return i < 0 || i+2 >= len(stat) || stat[i+2] != 'Z'
}

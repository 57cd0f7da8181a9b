// Package cli is the gatehouse command: its subcommands (serve, dev, token,
// migrate, webhook, version). serve and dev build a Config and hand it to
// app.Start. cmd/gatehouse calls Run; the tests call Run the same way, with
// port 0 and a temp database.
package cli

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"runtime/debug"
	"strings"

	"github.com/gatehouse-dev/gatehouse/internal/app"
	"github.com/gatehouse-dev/gatehouse/internal/config"
	"github.com/gatehouse-dev/gatehouse/internal/store"
)

const usage = `Usage: gatehouse <command> [flags]

Commands:
  serve      run the gRPC API and the HTTP listener (configuration from the environment)
  dev        run locally with a built-in Clerk emulator: no account, no network
  token      mint a dev credential (session, --machine, --api-key, --oauth) for a running "gatehouse dev"
  webhook    send a signed sample Clerk webhook to a running "gatehouse dev"
  migrate    create or update the database schema and exit
  version    print the version

Run "gatehouse <command> -h" for a command's flags. The README lists the
environment variables.
`

// Run runs the gatehouse command with args (without the program name). It
// returns when the command is done or ctx ends.
func Run(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	err := run(ctx, args, getenv, stdout, stderr)
	if errors.Is(err, flag.ErrHelp) {
		return nil // the flag set printed the command's usage
	}
	return err
}

func run(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	if len(args) == 0 {
		fmt.Fprint(stderr, usage)
		return errors.New("no command given")
	}
	cmd, rest := args[0], args[1:]
	switch cmd {
	case "serve":
		return runServe(ctx, rest, getenv, stdout, stderr)
	case "dev":
		return runDev(ctx, rest, getenv, stdout, stderr)
	case "token":
		return runToken(ctx, rest, getenv, stdout, stderr)
	case "webhook":
		return runWebhook(ctx, rest, getenv, stdout, stderr)
	case "migrate":
		return runMigrate(ctx, rest, getenv, stdout, stderr)
	case "version", "--version", "-version":
		fmt.Fprintln(stdout, "gatehouse", Version())
		return nil
	case "help", "-h", "--help":
		fmt.Fprint(stdout, usage)
		return nil
	}
	fmt.Fprint(stderr, usage)
	return fmt.Errorf("unknown command %q", cmd)
}

// Version reports the module version and VCS revision the binary was built
// from.
func Version() string {
	info, ok := debug.ReadBuildInfo()
	if !ok {
		return "(unknown)"
	}
	v := info.Main.Version
	for _, s := range info.Settings {
		if s.Key == "vcs.revision" && len(s.Value) >= 12 {
			v += " " + s.Value[:12]
		}
	}
	return strings.TrimSpace(v + " " + info.GoVersion)
}

func runServe(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	fs := newFlagSet("serve", stderr)
	noMigrate := fs.Bool("no-migrate", false, "do not migrate the schema on start (also GATEHOUSE_MIGRATE=false)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	cfg, err := config.Load(getenv)
	if err != nil {
		return err
	}
	if *noMigrate {
		cfg.Migrate = false
	}
	log, err := newLogger(stderr, cfg.LogFormat, cfg.LogLevel)
	if err != nil {
		return err
	}
	a, err := app.Start(ctx, cfg, log)
	if err != nil {
		return err
	}
	return a.Wait()
}

func runMigrate(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	fs := newFlagSet("migrate", stderr)
	if err := fs.Parse(args); err != nil {
		return err
	}
	dsn := getenv("DATABASE_URL")
	st, err := store.Open(ctx, dsn)
	if err != nil {
		return err
	}
	defer st.Close()
	if err := st.Migrate(ctx); err != nil {
		return err
	}
	fmt.Fprintf(stdout, "migrated %s database %s\n", st.Dialect, displayDSN(dsn))
	return nil
}

func displayDSN(dsn string) string {
	if dsn == "" {
		return store.DefaultSQLitePath
	}
	return store.Redacted(dsn)
}

func newLogger(w io.Writer, format string, level slog.Level) (*slog.Logger, error) {
	opts := &slog.HandlerOptions{Level: level}
	switch format {
	case "", "json":
		return slog.New(slog.NewJSONHandler(w, opts)), nil
	case "text":
		return slog.New(slog.NewTextHandler(w, opts)), nil
	}
	return nil, fmt.Errorf("unknown log format %q", format)
}

func newFlagSet(name string, stderr io.Writer) *flag.FlagSet {
	fs := flag.NewFlagSet("gatehouse "+name, flag.ContinueOnError)
	fs.SetOutput(stderr)
	return fs
}

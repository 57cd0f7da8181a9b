package loadtest

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"slices"
	"strings"
	"text/tabwriter"
	"time"

	"google.golang.org/grpc/metadata"

	gatehousev1 "github.com/gatehouse-dev/gatehouse/gen/gatehouse/v1"
	"github.com/gatehouse-dev/gatehouse/internal/clerkemu"
	"github.com/gatehouse-dev/gatehouse/internal/config"
	"github.com/gatehouse-dev/gatehouse/internal/devstate"
	"github.com/gatehouse-dev/gatehouse/internal/store"
)

const usage = `Usage: gatehouse-bench <command> [flags]

Commands:
  load       closed-loop load against Gatehouse (gRPC; Connect, gRPC-Web, REST) and the peer (HTTP)
  peer       serve the peer: net/http + clerk-sdk-go; GET /me through ent, GET /machine (m2m_token.Verify)
  kidflood   forged key ids against an in-process Gatehouse and peer; counts JWKS fetches
  flood      invented mt_/ak_/oat_ credentials against an in-process Gatehouse and peer; counts verify calls
  webhooks   signed webhook ingest: distinct events/s, then duplicate deliveries/s
  profile    CPU profile of one load scenario against an in-process Gatehouse and peer

They find a running "gatehouse dev" through .gatehouse/dev.json (-dev-dir).
Targets must be loopback addresses. docs/BENCHMARKS.md has the recipes.
`

// Command runs gatehouse-bench with args (without the program name).
func Command(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	if len(args) == 0 {
		fmt.Fprint(stderr, usage)
		return errors.New("no command given")
	}
	err := command(ctx, args, getenv, stdout, stderr)
	if errors.Is(err, flag.ErrHelp) {
		return nil // -h printed the flags
	}
	return err
}

func command(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	switch args[0] {
	case "load":
		return runLoad(ctx, args[1:], getenv, stdout, stderr)
	case "peer":
		return runPeer(ctx, args[1:], getenv, stdout, stderr)
	case "kidflood":
		return runKidFlood(ctx, args[1:], getenv, stdout, stderr)
	case "flood":
		return runFlood(ctx, args[1:], getenv, stdout, stderr)
	case "webhooks":
		return runWebhooks(ctx, args[1:], getenv, stdout, stderr)
	case "profile":
		return runProfile(ctx, args[1:], getenv, stdout, stderr)
	case "help", "-h", "--help":
		fmt.Fprint(stdout, usage)
		return nil
	}
	fmt.Fprint(stderr, usage)
	return fmt.Errorf("unknown command %q", args[0])
}

// readDevState returns the state of the `gatehouse dev` running in dir, or
// an empty state if none runs there (flags then supply the addresses).
func readDevState(dir string) (*devstate.State, error) {
	s, err := devstate.Read(dir)
	if errors.Is(err, devstate.ErrNotRunning) {
		return &devstate.State{}, nil
	}
	return s, err
}

func runLoad(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("gatehouse-bench load", flag.ContinueOnError)
	fs.SetOutput(stderr)
	devDir := fs.String("dev-dir", devstate.Dir, "directory of a running `gatehouse dev` (dev.json, emulator-key.pem)")
	grpcAddr := fs.String("grpc", "", "Gatehouse's gRPC address (default: from dev.json, else 127.0.0.1:50051)")
	httpAddr := fs.String("http", "", "Gatehouse's HTTP address, for the getme-* scenarios (default: from dev.json, else 127.0.0.1:8080)")
	http2 := fs.Bool("http2", false, "the getme-* scenarios over HTTP/2 without TLS, multiplexed as gRPC is, rather than HTTP/1.1")
	peerURL := fs.String("peer", "http://127.0.0.1:8090", "the peer's base URL")
	grpcPID := fs.Int("grpc-pid", 0, "Gatehouse's PID, for server CPU per request and peak RSS")
	peerPID := fs.Int("peer-pid", 0, "the peer's PID, for server CPU per request and peak RSS")
	scenarios := fs.String("scenarios", "health,getme", "comma-separated, run in this order each round: "+strings.Join(ScenarioNames, ", "))
	concurrency := fs.Int("concurrency", 50, "workers, each with one request in flight")
	duration := fs.Duration("duration", 10*time.Second, "measured window per scenario")
	warmup := fs.Duration("warmup", 2*time.Second, "unmeasured warm-up before each window")
	rounds := fs.Int("rounds", 1, "repeat the scenario list this many times (interleaved) and report medians")
	conns := fs.Int("conns", 1, "gRPC connections")
	timeout := fs.Duration("timeout", 10*time.Second, "per-request timeout")
	token := fs.String("token", getenv("GATEHOUSE_TOKEN"), "session token (default $GATEHOUSE_TOKEN; else minted from the dev emulator's key)")
	user := fs.String("user", "user_bench", "user the minted tokens are for (personal tenant)")
	nUsers := fs.Int("users", 1, "mint tokens for this many users (user_bench0…), used in turn")
	pageSize := fs.Int("page-size", 0, "ListProjects page_size (0: the server's default, 50)")
	ratios := fs.String("ratios", "", `comparisons to print, e.g. "getme/health,getme/peer" (default: each scenario against the first)`)
	dbCommand := fs.String("db-command", "", `sum the CPU time of processes with this name (e.g. "postgres") per request`)
	asJSON := fs.Bool("json", false, "print JSON instead of a table")
	if err := fs.Parse(args); err != nil {
		return err
	}
	names := config.SplitList(*scenarios)
	if len(names) == 0 || *rounds < 1 || *duration <= 0 {
		return errors.New("load: need at least one scenario, one round and a positive duration")
	}
	for _, n := range names {
		if !slices.Contains(ScenarioNames, n) {
			return fmt.Errorf("load: unknown scenario %q (have %s)", n, strings.Join(ScenarioNames, ", "))
		}
	}
	state, err := readDevState(*devDir)
	if err != nil {
		return err
	}
	if *grpcAddr == "" {
		*grpcAddr = cmp.Or(strings.TrimSpace(state.GRPCAddr), "127.0.0.1:50051")
	}
	if *httpAddr == "" {
		*httpAddr = cmp.Or(strings.TrimSpace(state.HTTPAddr), "127.0.0.1:8080")
	}
	for _, a := range []string{*peerURL, *httpAddr} {
		if err := RequireLoopback(a); err != nil {
			return err
		}
	}

	t := loadTarget(*httpAddr, *peerURL, *concurrency, *http2)
	t.PageSize = int32(*pageSize)
	t.Conns, err = DialGRPC(*grpcAddr, *conns)
	if err != nil {
		return err
	}
	defer CloseAll(t.Conns)
	needsToken := slices.ContainsFunc(names, func(n string) bool { return n != Health })
	if needsToken {
		if *token != "" {
			t.Tokens = []string{*token}
		} else if t.Tokens, err = mintTokens(*devDir, state.Issuer, *user, *nUsers); err != nil {
			return err
		}
		// GetMe provisions each user on first sight, so the peer, which
		// only reads, finds the rows too.
		if err := prime(ctx, t); err != nil {
			return err
		}
	}

	results := map[string][]*Result{}
	for round := range *rounds {
		for _, name := range names {
			call, err := t.NewCall(name)
			if err != nil {
				return err
			}
			pid := *grpcPID
			if IsPeer(name) {
				pid = *peerPID
			}
			r, err := Run(ctx, Options{
				Name: name, Concurrency: *concurrency, Warmup: *warmup, Duration: *duration,
				Timeout: *timeout, ServerPID: pid, DBCommand: *dbCommand,
			}, call)
			if err != nil {
				return fmt.Errorf("%s: %w", name, err)
			}
			if !*asJSON {
				fmt.Fprintf(stderr, "round %d/%d %-14s %8.0f rps  p50 %s  p99 %s  errors %d\n",
					round+1, *rounds, name, r.RPS, fmtDur(r.P50), fmtDur(r.P99), r.Errors)
			}
			results[name] = append(results[name], r)
			if ctx.Err() != nil {
				return ctx.Err()
			}
		}
	}

	pairs, err := parseRatios(*ratios, names)
	if err != nil {
		return err
	}
	report := LoadReport{
		Target: *grpcAddr, HTTPTarget: *httpAddr, Peer: *peerURL, Rounds: *rounds, Concurrency: *concurrency,
		Warmup: *warmup, Duration: *duration, Runs: results,
	}
	for _, n := range names {
		report.Medians = append(report.Medians, Median(results[n]))
	}
	for _, p := range pairs {
		report.Ratios = append(report.Ratios, CompareRuns(p[0], p[1], results[p[0]], results[p[1]]))
	}
	if *asJSON {
		return writeJSON(stdout, report)
	}
	return report.WriteTable(stdout)
}

// loadTarget is the Target of `gatehouse-bench load` without its gRPC
// connections and tokens. With http2, the getme-* scenarios speak h2c to
// Gatehouse; the peer, a plain net/http server that does not accept h2c,
// is called over HTTP/1.1 either way.
func loadTarget(httpAddr, peerURL string, concurrency int, http2 bool) *Target {
	t := &Target{GatehouseURL: "http://" + httpAddr, PeerURL: peerURL, HTTP: NewHTTPClient(concurrency)}
	if http2 {
		t.GatehouseHTTP = NewH2CClient()
	}
	return t
}

// LoadReport is the output of `gatehouse-bench load`.
type LoadReport struct {
	Target      string               `json:"grpc_target"`
	HTTPTarget  string               `json:"http_target"`
	Peer        string               `json:"peer"`
	Rounds      int                  `json:"rounds"`
	Concurrency int                  `json:"concurrency"`
	Warmup      time.Duration        `json:"warmup_ns"`
	Duration    time.Duration        `json:"duration_ns"`
	Runs        map[string][]*Result `json:"runs"`
	Medians     []*Result            `json:"medians"`
	Ratios      []Ratio              `json:"ratios,omitempty"`
}

// Ratio compares two scenarios measured in the same rounds: the median over
// rounds of each round's ratio.
type Ratio struct {
	Of, To string
	// RPS is Of's requests per second over To's.
	RPS float64 `json:"rps"`
	// CPUPerRequest is Of's server CPU per request over To's (0 if either
	// had no PID).
	CPUPerRequest float64 `json:"cpu_per_request"`
	// P50 and P99 are the latency ratios.
	P50 float64 `json:"p50"`
	P99 float64 `json:"p99"`
}

// CompareRuns pairs the rounds of two scenarios.
func CompareRuns(of, to string, a, b []*Result) Ratio {
	r := Ratio{Of: of, To: to}
	var rps, cpu, p50, p99 []float64
	for i := range min(len(a), len(b)) {
		rps = append(rps, div(a[i].RPS, b[i].RPS))
		cpu = append(cpu, div(float64(a[i].ServerCPUPerReq), float64(b[i].ServerCPUPerReq)))
		p50 = append(p50, div(float64(a[i].P50), float64(b[i].P50)))
		p99 = append(p99, div(float64(a[i].P99), float64(b[i].P99)))
	}
	r.RPS, r.CPUPerRequest, r.P50, r.P99 = median(rps), median(cpu), median(p50), median(p99)
	return r
}

// Median returns a Result whose every figure is the median of rs's (the
// counts are totals).
func Median(rs []*Result) *Result {
	if len(rs) == 0 {
		return nil
	}
	if len(rs) == 1 {
		return rs[0]
	}
	m := &Result{Name: rs[0].Name, Concurrency: rs[0].Concurrency}
	pick := func(f func(*Result) float64) float64 {
		v := make([]float64, len(rs))
		for i, r := range rs {
			v[i] = f(r)
		}
		return median(v)
	}
	dur := func(f func(*Result) time.Duration) time.Duration {
		return time.Duration(pick(func(r *Result) float64 { return float64(f(r)) }))
	}
	for _, r := range rs {
		m.Requests += r.Requests
		m.Errors += r.Errors
		m.Elapsed += r.Elapsed
		for k, n := range r.ErrorKinds {
			if m.ErrorKinds == nil {
				m.ErrorKinds = map[string]int64{}
			}
			m.ErrorKinds[k] += n
		}
		m.ServerPeakRSS = max(m.ServerPeakRSS, r.ServerPeakRSS)
	}
	m.RPS = pick(func(r *Result) float64 { return r.RPS })
	m.P50 = dur(func(r *Result) time.Duration { return r.P50 })
	m.P90 = dur(func(r *Result) time.Duration { return r.P90 })
	m.P99 = dur(func(r *Result) time.Duration { return r.P99 })
	m.Max = dur(func(r *Result) time.Duration { return r.Max })
	m.ServerCPU = dur(func(r *Result) time.Duration { return r.ServerCPU })
	m.ServerCPUPerReq = dur(func(r *Result) time.Duration { return r.ServerCPUPerReq })
	m.ServerCores = pick(func(r *Result) float64 { return r.ServerCores })
	m.LoadCores = pick(func(r *Result) float64 { return r.LoadCores })
	m.MachineCores = pick(func(r *Result) float64 { return r.MachineCores })
	m.DBCPUPerReq = dur(func(r *Result) time.Duration { return r.DBCPUPerReq })
	return m
}

// WriteTable prints the medians and ratios as aligned text.
func (rep *LoadReport) WriteTable(w io.Writer) error {
	fmt.Fprintf(w, "gatehouse-bench load: concurrency %d, warm-up %s, window %s, %d round(s)",
		rep.Concurrency, rep.Warmup, rep.Duration, rep.Rounds)
	if rep.Rounds > 1 {
		fmt.Fprint(w, " (medians over rounds; requests and errors are totals)")
	}
	fmt.Fprintln(w)
	writeResults(w, rep.Medians)
	if len(rep.Ratios) > 0 {
		fmt.Fprintln(w)
		tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
		fmt.Fprintln(tw, "ratio\tRPS\tp50\tp99\tsrv CPU/req\t")
		for _, r := range rep.Ratios {
			cpu := "-"
			if r.CPUPerRequest > 0 {
				cpu = fmt.Sprintf("%.2f×", r.CPUPerRequest)
			}
			fmt.Fprintf(tw, "%s / %s\t%.2f×\t%.2f×\t%.2f×\t%s\t\n", r.Of, r.To, r.RPS, r.P50, r.P99, cpu)
		}
		tw.Flush()
	}
	return nil
}

func writeResults(w io.Writer, rs []*Result) {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "scenario\trequests\terrors\tRPS\tp50\tp90\tp99\tsrv CPU/req\tsrv cores\tsrv peak RSS\tdb CPU/req\tload cores\tmachine cores\t")
	for _, r := range rs {
		cpu, cores, rss, db := "-", "-", "-", "-"
		if r.DBCPUPerReq > 0 {
			db = fmtDur(r.DBCPUPerReq)
		}
		if r.ServerCPU > 0 {
			cpu = fmtDur(r.ServerCPUPerReq)
			cores = fmt.Sprintf("%.2f", r.ServerCores)
		}
		if r.ServerPeakRSS > 0 {
			rss = fmt.Sprintf("%.1f MiB", float64(r.ServerPeakRSS)/(1<<20))
		}
		fmt.Fprintf(tw, "%s\t%d\t%d\t%.0f\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%.2f\t%.2f\t\n",
			r.Name, r.Requests, r.Errors, r.RPS, fmtDur(r.P50), fmtDur(r.P90), fmtDur(r.P99), cpu, cores, rss, db, r.LoadCores, r.MachineCores)
	}
	tw.Flush()
	for _, r := range rs {
		if len(r.ErrorKinds) > 0 {
			fmt.Fprintf(w, "  %s errors: %v\n", r.Name, r.ErrorKinds)
		}
	}
}

func parseRatios(spec string, names []string) ([][2]string, error) {
	var out [][2]string
	if spec == "" {
		for _, n := range names[1:] {
			out = append(out, [2]string{n, names[0]})
		}
		return out, nil
	}
	for _, p := range config.SplitList(spec) {
		of, to, ok := strings.Cut(p, "/")
		if !ok || !slices.Contains(names, of) || !slices.Contains(names, to) {
			return nil, fmt.Errorf("load: -ratios: %q is not a/b of two scenarios being run", p)
		}
		out = append(out, [2]string{of, to})
	}
	return out, nil
}

// mintTokens signs session tokens with the dev emulator's key, as
// `gatehouse token` does.
func mintTokens(devDir, issuer, user string, n int) ([]string, error) {
	keyPath := devstate.KeyPath(devDir)
	if _, err := os.Stat(keyPath); err != nil {
		return nil, fmt.Errorf("no token: pass -token, or run from the directory of a running `gatehouse dev` (%w)", err)
	}
	key, err := clerkemu.LoadOrCreateKey(keyPath)
	if err != nil {
		return nil, err
	}
	emu, err := clerkemu.New(clerkemu.Options{Key: key, Issuer: issuer})
	if err != nil {
		return nil, err
	}
	var out []string
	for i := range max(n, 1) {
		id := user
		if n > 1 {
			id = fmt.Sprintf("%s%d", user, i)
		}
		tok, err := emu.MintSession(clerkemu.Session{UserID: id, TTL: 12 * time.Hour})
		if err != nil {
			return nil, err
		}
		out = append(out, tok)
	}
	return out, nil
}

// prime calls GetMe once with each token so Gatehouse provisions the users.
func prime(ctx context.Context, t *Target) error {
	users := gatehousev1.NewUserServiceClient(t.Conns[0])
	for _, tok := range t.Tokens {
		cctx, cancel := context.WithTimeout(metadata.AppendToOutgoingContext(ctx, "authorization", "Bearer "+tok), 10*time.Second)
		_, err := users.GetMe(cctx, &gatehousev1.GetMeRequest{})
		cancel()
		if err != nil {
			return fmt.Errorf("priming GetMe: %w", err)
		}
	}
	return nil
}

func runPeer(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("gatehouse-bench peer", flag.ContinueOnError)
	fs.SetOutput(stderr)
	devDir := fs.String("dev-dir", devstate.Dir, "directory of a running `gatehouse dev`")
	addr := fs.String("addr", "127.0.0.1:8090", "listen address (loopback only)")
	apiURL := fs.String("api-url", "", "Clerk Backend API URL (default: the dev emulator's, from dev.json)")
	secretKey := fs.String("secret-key", "", "Clerk secret key (default: the dev emulator's, from dev.json)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if err := RequireLoopback(*addr); err != nil {
		return err
	}
	state, err := readDevState(*devDir)
	if err != nil {
		return err
	}
	if *apiURL == "" && state.EmulatorURL != "" {
		*apiURL = state.EmulatorURL + "/v1"
	}
	*secretKey = cmp.Or(strings.TrimSpace(*secretKey), state.SecretKey)
	if *apiURL == "" || *secretKey == "" {
		return errors.New("peer: no Backend API: start `gatehouse dev` here first, or pass -api-url and -secret-key")
	}
	// The same database `gatehouse dev` uses.
	dsn := cmp.Or(strings.TrimSpace(getenv("DATABASE_URL")), devstate.DatabasePath(*devDir))
	st, err := store.Open(ctx, dsn)
	if err != nil {
		return err
	}
	defer st.Close()
	h, err := NewPeer(PeerConfig{Client: st.Client, APIURL: *apiURL, SecretKey: *secretKey})
	if err != nil {
		return err
	}
	lis, err := net.Listen("tcp", *addr)
	if err != nil {
		return err
	}
	srv := &http.Server{Handler: h, ReadHeaderTimeout: 5 * time.Second}
	fmt.Fprintf(stdout, "peer listening on http://%s (GET /me, GET /machine), database %s, pid %d\n", lis.Addr(), store.Redacted(dsn), os.Getpid())
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(lis) }()
	select {
	case err := <-errc:
		return err
	case <-ctx.Done():
	}
	sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	return srv.Shutdown(sctx)
}

func runKidFlood(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("gatehouse-bench kidflood", flag.ContinueOnError)
	fs.SetOutput(stderr)
	requests := fs.Int("requests", 10_000, "forged tokens sent to each side")
	concurrency := fs.Int("concurrency", 50, "workers")
	refetch := fs.Duration("refetch", 5*time.Second, "Gatehouse's JWKS refetch window (GATEHOUSE_JWKS_REFETCH_INTERVAL)")
	dsn := fs.String("database", getenv("DATABASE_URL"), "database for the in-process Gatehouse and peer (default $DATABASE_URL, else a temporary SQLite file)")
	asJSON := fs.Bool("json", false, "print JSON instead of a table")
	if err := fs.Parse(args); err != nil {
		return err
	}
	fmt.Fprintf(stderr, "kidflood: minting %d forged tokens and starting Gatehouse, the peer and a Clerk emulator in-process…\n", *requests)
	res, err := KidFlood(ctx, KidFloodOptions{
		DatabaseURL: *dsn, Requests: *requests, Concurrency: *concurrency, RefetchInterval: *refetch,
		Logger: errorLogger(stderr),
	})
	if err != nil {
		return err
	}
	if *asJSON {
		return writeJSON(stdout, res)
	}
	fmt.Fprintf(stdout, "gatehouse-bench kidflood: %d tokens with random kids, concurrency %d, refetch window %s\n",
		res.Requests, res.Concurrency, res.RefetchInterval)
	tw := tabwriter.NewWriter(stdout, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "side\trequests\trejected\tunexpected\telapsed\tRPS\tp50\tp99\tJWKS fetches\twindows\tfetches/request\t")
	for _, s := range []KidFloodSide{res.Gatehouse, res.Peer} {
		r := s.Load
		fmt.Fprintf(tw, "%s\t%d\t%d\t%d\t%s\t%.0f\t%s\t%s\t%d\t%d\t%.4f\t\n",
			r.Name, r.Requests, r.Requests-r.Errors, r.Errors, r.Elapsed.Round(time.Millisecond), r.RPS,
			fmtDur(r.P50), fmtDur(r.P99), s.JWKSFetches, s.Windows, div(float64(s.JWKSFetches), float64(r.Requests)))
	}
	tw.Flush()
	for _, s := range []KidFloodSide{res.Gatehouse, res.Peer} {
		if len(s.Load.ErrorKinds) > 0 {
			fmt.Fprintf(stdout, "  %s unexpected answers: %v\n", s.Load.Name, s.Load.ErrorKinds)
		}
	}
	return nil
}

func runFlood(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("gatehouse-bench flood", flag.ContinueOnError)
	fs.SetOutput(stderr)
	requests := fs.Int("requests", 10_000, "invented credentials, a third each mt_, ak_, oat_, each sent once (the peer gets the mt_ ones)")
	concurrency := fs.Int("concurrency", 50, "flood workers")
	bg := fs.Int("background", 4, "workers of each already-verified caller (session, machine token) beside the flood")
	baseline := fs.Duration("baseline", 3*time.Second, "how long the background runs alone before each flood")
	dsn := fs.String("database", getenv("DATABASE_URL"), "database for the in-process Gatehouse and peer (default $DATABASE_URL, else a temporary SQLite file)")
	asJSON := fs.Bool("json", false, "print JSON instead of a table")
	if err := fs.Parse(args); err != nil {
		return err
	}
	fmt.Fprintf(stderr, "flood: starting Gatehouse, the peer and a Clerk emulator in-process; %s of background alone, then %d invented credentials, for each…\n", *baseline, *requests)
	res, err := Flood(ctx, FloodOptions{
		DatabaseURL: *dsn, Requests: *requests, Concurrency: *concurrency, Background: *bg, Baseline: *baseline,
		Logger: errorLogger(stderr),
	})
	if err != nil {
		return err
	}
	if *asJSON {
		return writeJSON(stdout, res)
	}
	return res.WriteTable(stdout)
}

// WriteTable prints the flood's figures, then the background's, as aligned
// text.
func (res *FloodResult) WriteTable(w io.Writer) error {
	fmt.Fprintf(w, "gatehouse-bench flood: %d invented credentials (mt_, ak_, oat_ in turn), each sent once, concurrency %d;\n", res.Requests, res.Concurrency)
	fmt.Fprintf(w, "Gatehouse's verify budget %d + %g/s per caller address; all callers are 127.0.0.1\n", res.VerifyBurst, res.VerifyRate)
	sides := []FloodSide{res.Gatehouse, res.Peer}
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "side\tsent\tunauthenticated\texhausted\tunexpected\telapsed\tRPS\tp99\tverify calls\t(mt/ak/oat)\tper credential\tbudget bound\t")
	for _, s := range sides {
		r, bound := s.Flood, "-"
		if s.Bound > 0 {
			bound = fmt.Sprintf("%.0f", s.Bound)
		}
		fmt.Fprintf(tw, "%s (%s)\t%d\t%d\t%d\t%d\t%s\t%.0f\t%s\t%d\t%d/%d/%d\t%.4f\t%s\t\n",
			strings.TrimSuffix(r.Name, " flood"), strings.Join(s.Prefixes, " "), r.Requests, s.Unauthenticated, s.ResourceExhausted, r.Errors,
			r.Elapsed.Round(time.Millisecond), r.RPS, fmtDur(r.P99), s.FloodVerifies,
			s.Verifies.Machine, s.Verifies.APIKey, s.Verifies.OAuth, div(float64(s.FloodVerifies), float64(r.Requests)), bound)
	}
	tw.Flush()
	fmt.Fprintln(w, "  verify calls: for the invented credentials; (mt/ak/oat): every verify call in the run, the background's included")
	for _, s := range sides {
		if len(s.Flood.ErrorKinds) > 0 {
			fmt.Fprintf(w, "  %s unexpected answers: %v\n", s.Flood.Name, s.Flood.ErrorKinds)
		}
	}

	fmt.Fprintf(w, "\nalready-verified callers, %d workers each: alone for %s, then beside the flood\n", res.Background, res.Baseline)
	tw = tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "caller\talone: requests\terrors\tp50\tp99\tverify calls\tflood: requests\terrors\tp50\tp99\tverify calls\tp99 ×\t")
	for _, s := range sides {
		for i, pair := range [][2]*Result{{s.Baseline.Session, s.During.Session}, {s.Baseline.Machine, s.During.Machine}} {
			alone, during := pair[0], pair[1]
			// The side's verify calls are shown against its machine caller,
			// the one that can cause them.
			vAlone, vDuring := "", ""
			if i == 1 {
				vAlone, vDuring = fmt.Sprint(s.BaselineVerifies), fmt.Sprint(s.BackgroundVerifies)
			}
			fmt.Fprintf(tw, "%s\t%d\t%d\t%s\t%s\t%s\t%d\t%d\t%s\t%s\t%s\t%.2f×\t\n",
				alone.Name, alone.Requests, alone.Errors, fmtDur(alone.P50), fmtDur(alone.P99), vAlone,
				during.Requests, during.Errors, fmtDur(during.P50), fmtDur(during.P99), vDuring,
				div(float64(during.P99), float64(alone.P99)))
		}
	}
	tw.Flush()
	for _, s := range sides {
		for _, r := range []*Result{s.Baseline.Session, s.Baseline.Machine, s.During.Session, s.During.Machine} {
			if len(r.ErrorKinds) > 0 {
				fmt.Fprintf(w, "  %s errors: %v\n", r.Name, r.ErrorKinds)
			}
		}
	}
	return nil
}

func runWebhooks(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("gatehouse-bench webhooks", flag.ContinueOnError)
	fs.SetOutput(stderr)
	devDir := fs.String("dev-dir", devstate.Dir, "directory of a running `gatehouse dev`")
	url := fs.String("url", "", "Gatehouse's webhook URL (default: from dev.json, http://HTTP_ADDR/webhooks/clerk)")
	secret := fs.String("secret", "", "the whsec_ signing secret (default: from dev.json)")
	eventType := fs.String("type", "user.created", "event type to send")
	concurrency := fs.Int("concurrency", 32, "workers")
	duration := fs.Duration("duration", 10*time.Second, "measured window of each run")
	warmup := fs.Duration("warmup", 2*time.Second, "unmeasured warm-up before each window")
	pool := fs.Int("dup-pool", 1000, "delivered events the duplicate run resends, in turn")
	pid := fs.Int("pid", 0, "Gatehouse's PID, for server CPU per event and peak RSS")
	dbCommand := fs.String("db-command", "", `sum the CPU time of processes with this name (e.g. "postgres") per event`)
	asJSON := fs.Bool("json", false, "print JSON instead of a table")
	if err := fs.Parse(args); err != nil {
		return err
	}
	state, err := readDevState(*devDir)
	if err != nil {
		return err
	}
	if *url == "" {
		if state.HTTPAddr == "" {
			return errors.New("webhooks: no running `gatehouse dev` here: pass -url and -secret")
		}
		*url = "http://" + state.HTTPAddr + "/webhooks/clerk"
	}
	*secret = cmp.Or(strings.TrimSpace(*secret), state.WebhookSecret)
	res, err := Webhooks(ctx, WebhookOptions{
		URL: *url, Secret: *secret, EventType: *eventType, Concurrency: *concurrency,
		Warmup: *warmup, Duration: *duration, DuplicatePool: *pool, ServerPID: *pid, DBCommand: *dbCommand,
	})
	if err != nil {
		return err
	}
	if *asJSON {
		return writeJSON(stdout, res)
	}
	fmt.Fprintf(stdout, "gatehouse-bench webhooks: %s, concurrency %d, warm-up %s, window %s\n",
		res.EventType, *concurrency, *warmup, *duration)
	writeResults(stdout, []*Result{res.Distinct, res.Duplicate})
	fmt.Fprintf(stdout, "\nduplicate / distinct: %.2f× the rate\n", div(res.Duplicate.RPS, res.Distinct.RPS))
	return nil
}

func runProfile(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("gatehouse-bench profile", flag.ContinueOnError)
	fs.SetOutput(stderr)
	scenario := fs.String("scenario", GetMe, "one of: "+strings.Join(ScenarioNames, ", "))
	out := fs.String("cpuprofile", "", "write the CPU profile here (required)")
	dsn := fs.String("database", getenv("DATABASE_URL"), "database (default $DATABASE_URL, else a temporary SQLite file)")
	concurrency := fs.Int("concurrency", 50, "workers")
	duration := fs.Duration("duration", 10*time.Second, "profiled window")
	warmup := fs.Duration("warmup", 2*time.Second, "unprofiled warm-up")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *out == "" {
		return errors.New("profile: -cpuprofile is required")
	}
	f, err := os.Create(*out)
	if err != nil {
		return err
	}
	r, err := Profile(ctx, ProfileOptions{
		DatabaseURL: *dsn, Scenario: *scenario, Concurrency: *concurrency,
		Warmup: *warmup, Duration: *duration, CPUProfile: f,
	})
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return err
	}
	writeResults(stdout, []*Result{r})
	fmt.Fprintf(stdout, "CPU profile in %s (server and load share the process: use pprof -focus)\n", *out)
	return nil
}

func div(a, b float64) float64 {
	if b == 0 {
		return 0
	}
	return a / b
}

func median(v []float64) float64 {
	if len(v) == 0 {
		return 0
	}
	s := slices.Clone(v)
	slices.Sort(s)
	if len(s)%2 == 1 {
		return s[len(s)/2]
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2
}

// fmtDur prints d with three significant digits in a unit that suits it.
func fmtDur(d time.Duration) string {
	switch {
	case d <= 0:
		return "0"
	case d < time.Millisecond:
		return fmt.Sprintf("%.0fµs", float64(d)/float64(time.Microsecond))
	case d < 10*time.Millisecond:
		return fmt.Sprintf("%.2fms", float64(d)/float64(time.Millisecond))
	case d < time.Second:
		return fmt.Sprintf("%.1fms", float64(d)/float64(time.Millisecond))
	}
	return fmt.Sprintf("%.2fs", d.Seconds())
}

// writeJSON prints v, indented, for -json.
func writeJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

// errorLogger is the in-process Gatehouse's logger for a command: its errors
// only, to w.
func errorLogger(w io.Writer) *slog.Logger {
	return slog.New(slog.NewTextHandler(w, &slog.HandlerOptions{Level: slog.LevelError}))
}

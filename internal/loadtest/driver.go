package loadtest

import (
	"context"
	"errors"
	"fmt"
	"os"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"google.golang.org/grpc/status"
)

// Call makes one request. seq numbers the requests of a run from 0 (across
// warm-up and measurement), so a call can vary its input (a project name, a
// token) deterministically. It returns nil when the request had the outcome
// the scenario expects.
type Call func(ctx context.Context, seq int64) error

// Options configures Run.
type Options struct {
	// Name labels the Result.
	Name string
	// Concurrency is the number of workers, each with one request in flight
	// at a time (a closed loop). Default 1.
	Concurrency int
	// Warmup runs the workers before measuring; those requests are not
	// counted.
	Warmup time.Duration
	// Duration is the measured window. It, Requests or Stop is required;
	// with more than one, whichever ends first stops the run.
	Duration time.Duration
	// Requests stops the run after this many measured requests.
	Requests int64
	// Stop, when closed, ends the measured window as the end of Duration
	// would: requests in flight finish, uncounted. It lets a run last as
	// long as something else does (another run, beside it).
	Stop <-chan struct{}
	// Timeout bounds each request; default 10 s.
	Timeout time.Duration
	// ServerPID, when non-zero, is the process whose CPU time and RSS are
	// read from /proc at the edges of the measured window.
	ServerPID int
	// DBCommand, when set (e.g. "postgres"), names the database's processes,
	// whose CPU time is summed at the edges of the window.
	DBCommand string
}

// Result is what one Run measured. Durations marshal as nanoseconds.
type Result struct {
	Name        string           `json:"name"`
	Concurrency int              `json:"concurrency"`
	Requests    int64            `json:"requests"`
	Errors      int64            `json:"errors"`
	ErrorKinds  map[string]int64 `json:"error_kinds,omitempty"`
	Elapsed     time.Duration    `json:"elapsed_ns"`
	RPS         float64          `json:"rps"`
	P50         time.Duration    `json:"p50_ns"`
	P90         time.Duration    `json:"p90_ns"`
	P99         time.Duration    `json:"p99_ns"`
	Max         time.Duration    `json:"max_ns"`

	// Server figures: zero unless Options.ServerPID was set. CPU comes from
	// /proc/PID/stat (utime+stime, in clock ticks of 1/CLK_TCK s), so it is
	// exact to one tick over the whole window.
	ServerCPU       time.Duration `json:"server_cpu_ns,omitempty"`
	ServerCPUPerReq time.Duration `json:"server_cpu_per_request_ns,omitempty"`
	// ServerCores is the server's average CPU use over the window, in cores.
	ServerCores float64 `json:"server_cores,omitempty"`
	// ServerPeakRSS is VmHWM at the window's end: the process's peak so far.
	ServerPeakRSS int64 `json:"server_peak_rss_bytes,omitempty"`

	// DBCPUPerReq is the database processes' CPU time per request (zero
	// unless Options.DBCommand was set). On a shared machine it includes
	// whatever else the database served meanwhile.
	DBCPUPerReq time.Duration `json:"db_cpu_per_request_ns,omitempty"`

	// LoadCores is the load driver's own CPU use over the window, in cores:
	// near 1.0 with the driver pinned to one core means the driver, not the
	// server, may be what limits the rate.
	LoadCores float64 `json:"load_cores"`
	// MachineCores is every CPU's busy time over the window, in cores
	// (/proc/stat): near the core count means the machine was saturated,
	// by this run or by anything else on it.
	MachineCores float64 `json:"machine_cores"`
}

// Run drives call from opts.Concurrency workers: first for opts.Warmup,
// then for the measured window. Requests started inside the window and
// completed before its end are counted; those in flight at its end finish
// but are not. Run fails only if it could not measure (bad options, an
// unreadable /proc/PID); failed requests are counted in the Result.
func Run(ctx context.Context, opts Options, call Call) (*Result, error) {
	if opts.Concurrency <= 0 {
		opts.Concurrency = 1
	}
	if opts.Timeout <= 0 {
		opts.Timeout = 10 * time.Second
	}
	if opts.Duration <= 0 && opts.Requests <= 0 && opts.Stop == nil {
		return nil, errors.New("loadtest: need a duration, a request count or a stop channel")
	}
	if opts.ServerPID != 0 {
		if _, err := ReadProc(opts.ServerPID); err != nil {
			return nil, err
		}
	}

	var (
		seq       atomic.Int64
		measuring atomic.Bool
		stop      atomic.Bool
		reserved  atomic.Int64 // measured requests started (count mode)
		completed atomic.Int64 // measured requests finished
		windowEnd atomic.Int64 // unix nanos; 0 while the window is open
		wg        sync.WaitGroup
		full      = make(chan struct{}) // count mode: the last request finished
		fullOnce  sync.Once
	)
	type workerSample struct {
		lat  []time.Duration
		errs map[string]int64
	}
	samples := make([]workerSample, opts.Concurrency)
	worker := func(s *workerSample) {
		defer wg.Done()
		s.errs = map[string]int64{}
		for !stop.Load() && ctx.Err() == nil {
			counted := measuring.Load()
			if counted && opts.Requests > 0 && reserved.Add(1) > opts.Requests {
				return
			}
			n := seq.Add(1) - 1
			rctx, cancel := context.WithTimeout(ctx, opts.Timeout)
			t0 := time.Now()
			err := call(rctx, n)
			t1 := time.Now()
			cancel()
			if !counted {
				continue
			}
			if end := windowEnd.Load(); end != 0 && t1.UnixNano() > end {
				continue // finished after the window closed
			}
			s.lat = append(s.lat, t1.Sub(t0))
			if err != nil {
				s.errs[errorKind(err)]++
			}
			if opts.Requests > 0 && completed.Add(1) == opts.Requests {
				fullOnce.Do(func() { close(full) })
			}
		}
	}
	launch := func() {
		for i := range samples {
			wg.Add(1)
			go worker(&samples[i])
		}
	}
	if opts.Warmup > 0 {
		launch()
		sleep(ctx, opts.Warmup)
	}
	server0, self0, err := snapshot(opts.ServerPID, opts.DBCommand)
	if err != nil {
		stop.Store(true)
		wg.Wait()
		return nil, err
	}
	start := time.Now()
	measuring.Store(true)
	if opts.Warmup <= 0 {
		launch() // without a warm-up, every request sent is counted
	}
	var window <-chan time.Time
	if opts.Duration > 0 {
		t := time.NewTimer(opts.Duration)
		defer t.Stop()
		window = t.C
	}
	select {
	case <-window:
	case <-full:
	case <-opts.Stop:
	case <-ctx.Done():
	}
	end := time.Now()
	windowEnd.Store(end.UnixNano())
	stop.Store(true)
	server1, self1, err := snapshot(opts.ServerPID, opts.DBCommand)
	wg.Wait()
	if err != nil {
		return nil, err
	}

	r := &Result{Name: opts.Name, Concurrency: opts.Concurrency, Elapsed: end.Sub(start)}
	var all []time.Duration
	for _, s := range samples {
		all = append(all, s.lat...)
		for k, n := range s.errs {
			if r.ErrorKinds == nil {
				r.ErrorKinds = map[string]int64{}
			}
			r.ErrorKinds[k] += n
			r.Errors += n
		}
	}
	slices.Sort(all)
	r.Requests = int64(len(all))
	secs := r.Elapsed.Seconds()
	if secs > 0 {
		r.RPS = float64(r.Requests) / secs
		r.LoadCores = (self1.CPU - self0.CPU).Seconds() / secs
		r.MachineCores = (self1.machine - self0.machine).Seconds() / secs
	}
	r.P50, r.P90, r.P99 = Percentile(all, 50), Percentile(all, 90), Percentile(all, 99)
	if len(all) > 0 {
		r.Max = all[len(all)-1]
	}
	if opts.ServerPID != 0 {
		r.ServerCPU = server1.CPU - server0.CPU
		if r.Requests > 0 {
			r.ServerCPUPerReq = r.ServerCPU / time.Duration(r.Requests)
		}
		if secs > 0 {
			r.ServerCores = r.ServerCPU.Seconds() / secs
		}
		r.ServerPeakRSS = server1.PeakRSS
	}
	if opts.DBCommand != "" && r.Requests > 0 {
		r.DBCPUPerReq = (self1.db - self0.db) / time.Duration(r.Requests)
	}
	return r, nil
}

// counters are this process's and the machine's at one instant.
type counters struct {
	Proc
	machine, db time.Duration
}

// snapshot reads the server's, this process's, the machine's and the
// database's counters.
func snapshot(serverPID int, dbCommand string) (server Proc, self counters, err error) {
	if serverPID != 0 {
		if server, err = ReadProc(serverPID); err != nil {
			return server, self, err
		}
	}
	if self.Proc, err = ReadProc(os.Getpid()); err != nil {
		return server, self, err
	}
	if self.machine, err = MachineBusy(); err != nil {
		return server, self, err
	}
	if dbCommand != "" {
		self.db, err = CommandCPU(dbCommand)
	}
	return server, self, err
}

// Percentile returns the p-th percentile (nearest rank) of sorted.
func Percentile(sorted []time.Duration, p float64) time.Duration {
	if len(sorted) == 0 {
		return 0
	}
	rank := int(p/100*float64(len(sorted))+0.999999) - 1
	return sorted[max(0, min(rank, len(sorted)-1))]
}

// errorKind names an error for the Result's tally: the gRPC code, the HTTP
// status, or a short message.
func errorKind(err error) string {
	if s, ok := status.FromError(err); ok {
		return s.Code().String()
	}
	if errors.Is(err, context.DeadlineExceeded) {
		return "timeout"
	}
	msg := err.Error()
	if len(msg) > 80 {
		msg = msg[:80] + "…"
	}
	return msg
}

// HTTPStatusError is an HTTP answer other than the one a scenario expects.
type HTTPStatusError struct{ Code int }

func (e *HTTPStatusError) Error() string { return fmt.Sprintf("HTTP %d", e.Code) }

func sleep(ctx context.Context, d time.Duration) {
	if d <= 0 {
		return
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
	case <-ctx.Done():
	}
}

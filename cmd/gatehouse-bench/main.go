// Command gatehouse-bench measures Gatehouse against what users would run
// instead: load (gRPC and the peer over HTTP), the peer itself, forged key
// ids, invented opaque credentials, and webhook ingest. See
// docs/BENCHMARKS.md, or run `gatehouse-bench help`.
package main

import (
	"context"
	"fmt"
	"os"
	"os/signal"
	"syscall"

	"github.com/gatehouse-dev/gatehouse/internal/loadtest"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := loadtest.Command(ctx, os.Args[1:], os.Getenv, os.Stdout, os.Stderr)
	stop()
	if err != nil {
		fmt.Fprintln(os.Stderr, "gatehouse-bench:", err)
		os.Exit(1)
	}
}

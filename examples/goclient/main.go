// Command goclient calls Gatehouse from Go the way a service does, through
// the client package: a token on every call, retries of UNAVAILABLE, and
// plaintext only to a loopback address.
//
// Against `go run ./cmd/gatehouse dev`, as the signed-in dev user:
//
//	export TOKEN=$(go run ./cmd/gatehouse token)
//	go run ./examples/goclient -name "From Go"
//
// As a machine, reading an organization's projects:
//
//	TOKEN=$(go run ./cmd/gatehouse token --machine) go run ./examples/goclient -tenant org_dev
//
// With a user's API key or an OAuth token (GetMe reports which):
//
//	TOKEN=$(go run ./cmd/gatehouse token --api-key --scopes org:projects:read) go run ./examples/goclient
//	TOKEN=$(go run ./cmd/gatehouse token --oauth --scopes org:projects:read) go run ./examples/goclient
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"time"

	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"

	"github.com/gatehouse-dev/gatehouse/client"
	gatehousev1 "github.com/gatehouse-dev/gatehouse/gen/gatehouse/v1"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	if err := run(ctx, os.Args[1:], os.Getenv, os.Stdout, os.Stderr); err != nil {
		fmt.Fprintln(os.Stderr, "goclient:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("goclient", flag.ContinueOnError)
	fs.SetOutput(stderr)
	addr := fs.String("addr", "127.0.0.1:50051", "Gatehouse gRPC address (plaintext only to loopback; TLS otherwise)")
	tenant := fs.String("tenant", "", "with a machine token: the tenant (org_… or user_…) to act in")
	name := fs.String("name", "", "with a session token: also create a project with this name")
	if err := fs.Parse(args); err != nil {
		return err
	}
	token := getenv("TOKEN")
	if token == "" {
		return errors.New("set TOKEN to a Clerk credential: a session token, machine token, API key or OAuth token (in dev: export TOKEN=$(go run ./cmd/gatehouse token))")
	}

	conn, err := client.Dial(*addr, client.StaticToken(token))
	if err != nil {
		return err
	}
	defer conn.Close()
	users := gatehousev1.NewUserServiceClient(conn)
	projects := gatehousev1.NewProjectServiceClient(conn)

	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()

	if *tenant != "" {
		// A machine has no "me": it reads the tenant it names.
		ctx = client.WithTenant(ctx, *tenant)
	} else {
		me, err := users.GetMe(ctx, &gatehousev1.GetMeRequest{})
		if err != nil {
			return fmt.Errorf("GetMe: %w", err)
		}
		show(stdout, "GetMe", me)
		if *name != "" {
			created, err := projects.CreateProject(ctx, &gatehousev1.CreateProjectRequest{Name: *name})
			if err != nil {
				return fmt.Errorf("CreateProject: %w", err)
			}
			show(stdout, "CreateProject", created)
		}
	}
	list, err := projects.ListProjects(ctx, &gatehousev1.ListProjectsRequest{})
	if err != nil {
		return fmt.Errorf("ListProjects: %w", err)
	}
	show(stdout, "ListProjects", list)
	return nil
}

func show(w io.Writer, what string, m proto.Message) {
	fmt.Fprintf(w, "%s: %s\n", what, protojson.Format(m))
}

package client_test

import (
	"context"
	"fmt"
	"log"
	"os"

	"github.com/gatehouse-dev/gatehouse/client"
	gatehousev1 "github.com/gatehouse-dev/gatehouse/gen/gatehouse/v1"
)

// A service acting for a signed-in user forwards the user's Clerk session
// token, here taken from the request context by the service's own code.
func ExampleDial() {
	sessionToken := func(ctx context.Context) (string, error) {
		tok, ok := ctx.Value(sessionTokenKey{}).(string)
		if !ok {
			return "", fmt.Errorf("no Clerk session token in the context")
		}
		return tok, nil
	}
	conn, err := client.Dial("gatehouse.internal:443", sessionToken)
	if err != nil {
		log.Fatal(err)
	}
	defer conn.Close()

	ctx := context.WithValue(context.Background(), sessionTokenKey{}, "eyJhbGciOiJSUzI1NiIs…")
	me, err := gatehousev1.NewUserServiceClient(conn).GetMe(ctx, &gatehousev1.GetMeRequest{})
	if err != nil {
		log.Fatal(err) // UNAUTHENTICATED: no token or a bad one; UNAVAILABLE: still failing after 4 attempts
	}
	fmt.Println(me.GetUser().GetId(), me.GetSession().GetTenantId())
}

type sessionTokenKey struct{}

// A background service calls as itself with a Clerk machine token and names
// the tenant it acts in on each call. Machines may call only the methods
// whose rule allows them (the read methods).
func ExampleWithTenant() {
	conn, err := client.Dial("gatehouse.internal:443", client.StaticToken(os.Getenv("GATEHOUSE_MACHINE_TOKEN")))
	if err != nil {
		log.Fatal(err)
	}
	defer conn.Close()

	ctx := client.WithTenant(context.Background(), "org_2abc")
	res, err := gatehousev1.NewProjectServiceClient(conn).ListProjects(ctx, &gatehousev1.ListProjectsRequest{PageSize: 100})
	if err != nil {
		log.Fatal(err)
	}
	for _, p := range res.GetProjects() {
		fmt.Println(p.GetId(), p.GetName())
	}
}

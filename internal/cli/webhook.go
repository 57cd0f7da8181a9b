package cli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/gatehouse-dev/gatehouse/internal/clerkemu"
	"github.com/gatehouse-dev/gatehouse/internal/devstate"
)

func runWebhook(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	if len(args) == 0 || args[0] != "send" {
		fmt.Fprintf(stderr, "Usage: gatehouse webhook send [flags] TYPE\n\nTYPE is one of: %s\n", strings.Join(clerkemu.SampleEventTypes(), ", "))
		return errors.New(`want "webhook send TYPE"`)
	}
	fs := newFlagSet("webhook send", stderr)
	user := fs.String("user", "user_webhook", "the user id of user.* and membership events")
	org := fs.String("org", devOrgID, "the organization id of organization.* and membership events")
	membership := fs.String("membership", "", "the membership id of membership events (default: derived from org and user)")
	email := fs.String("email", "", "the primary email address (default: <user>@example.com)")
	first := fs.String("first-name", "Webhook", "the user's first name")
	last := fs.String("last-name", "User", "the user's last name")
	orgName := fs.String("org-name", "Dev Organization", "the organization's name")
	role := fs.String("role", "org:member", "the membership's role")
	msgID := fs.String("id", "", "the svix-id (default: a fresh one; reuse one to see a duplicate delivery)")
	url := fs.String("url", "", "the webhook endpoint (default: the running gatehouse dev's)")
	dir := fs.String("dir", devstate.Dir, "the dev directory")
	// The type may stand before, between or after the flags.
	var positional []string
	for rest := args[1:]; ; {
		if err := fs.Parse(rest); err != nil {
			return err
		}
		if fs.NArg() == 0 {
			break
		}
		positional = append(positional, fs.Arg(0))
		rest = fs.Args()[1:]
	}
	if len(positional) != 1 {
		return fmt.Errorf("want one event type, one of: %s", strings.Join(clerkemu.SampleEventTypes(), ", "))
	}
	eventType := positional[0]
	st, err := devstate.Read(*dir)
	if err != nil {
		return err
	}
	if *url == "" {
		*url = "http://" + st.HTTPAddr + "/webhooks/clerk"
	}
	if *email == "" {
		*email = strings.TrimPrefix(*user, "user_") + "@example.com"
	}
	if *membership == "" {
		*membership = "orgmem_" + strings.TrimPrefix(*org, "org_") + strings.TrimPrefix(*user, "user_")
	}
	body, err := clerkemu.SampleEvent(eventType, clerkemu.Sample{
		UserID: *user, OrgID: *org, MembershipID: *membership, Email: *email,
		FirstName: *first, LastName: *last, OrgName: *orgName, Role: *role,
		UpdatedAt: time.Now(),
	})
	if err != nil {
		return err
	}
	if *msgID == "" {
		*msgID = clerkemu.NewMessageID()
	}
	resp, err := clerkemu.SendWebhook(ctx, *url, st.WebhookSecret, *msgID, body)
	if err != nil {
		return fmt.Errorf("send %s: %w", eventType, err)
	}
	defer resp.Body.Close()
	answer, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
	fmt.Fprintf(stdout, "%s %s -> %s %s\n", eventType, *msgID, resp.Status, strings.TrimSpace(string(answer)))
	if resp.StatusCode >= 300 {
		return fmt.Errorf("the webhook endpoint answered %s", resp.Status)
	}
	return nil
}

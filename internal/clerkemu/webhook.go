package clerkemu

import (
	"net/http"
	"strconv"
	"time"
)

// WebhookSecret is the "whsec_…" secret webhooks are signed with, the value
// of CLERK_WEBHOOK_SIGNING_SECRET.
func (e *Emulator) WebhookSecret() string { return e.whSecret }

// SignWebhook returns the svix-id, svix-timestamp and svix-signature headers
// Svix would send with body, signed with Svix's own library.
func (e *Emulator) SignWebhook(msgID string, ts time.Time, body []byte) http.Header {
	sig, err := e.webhook.Sign(msgID, ts, body)
	if err != nil {
		panic(err) // Sign never fails: it is an HMAC over bytes
	}
	h := make(http.Header)
	h.Set("svix-id", msgID)
	h.Set("svix-timestamp", strconv.FormatInt(ts.Unix(), 10))
	h.Set("svix-signature", sig)
	return h
}

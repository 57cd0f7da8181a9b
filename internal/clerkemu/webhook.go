package clerkemu

import (
	"bytes"
	"context"
	"crypto/rand"
	"fmt"
	"net/http"
	"strconv"
	"time"

	svix "github.com/svix/svix-webhooks/go"
)

// WebhookSecret is the "whsec_…" secret webhooks are signed with, the value
// of CLERK_WEBHOOK_SIGNING_SECRET.
func (e *Emulator) WebhookSecret() string { return e.whSecret }

// SignWebhook returns the svix-id, svix-timestamp and svix-signature headers
// Svix would send with body, signed with Svix's own library.
func (e *Emulator) SignWebhook(msgID string, ts time.Time, body []byte) http.Header {
	h := make(http.Header)
	if err := setSignature(h, e.webhook, msgID, ts, body); err != nil {
		panic(err) // Sign never fails: it is an HMAC over bytes
	}
	return h
}

// NewMessageID returns a fresh svix-id ("msg_…").
func NewMessageID() string { return "msg_" + rand.Text() }

// NewWebhookRequest returns a POST of body to url, signed as Svix signs:
// the svix-id (msgID, or a fresh one when empty), svix-timestamp (ts) and
// svix-signature headers, with secret ("whsec_…").
func NewWebhookRequest(ctx context.Context, url, secret, msgID string, ts time.Time, body []byte) (*http.Request, error) {
	wh, err := svix.NewWebhook(secret)
	if err != nil {
		return nil, fmt.Errorf("webhook: signing secret is not a whsec_ base64 key")
	}
	if msgID == "" {
		msgID = NewMessageID()
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, url, bytes.NewReader(body))
	if err != nil {
		return nil, err
	}
	req.Header.Set("Content-Type", "application/json")
	if err := setSignature(req.Header, wh, msgID, ts, body); err != nil {
		return nil, fmt.Errorf("webhook: sign: %w", err)
	}
	return req, nil
}

// SendWebhook signs body with secret as Svix would, now, and POSTs it to
// url (a Gatehouse's /webhooks/clerk). An empty msgID gets a fresh one;
// sending the same msgID again is a redelivery. The caller closes the
// response body.
func SendWebhook(ctx context.Context, url, secret, msgID string, body []byte) (*http.Response, error) {
	req, err := NewWebhookRequest(ctx, url, secret, msgID, time.Now(), body)
	if err != nil {
		return nil, err
	}
	return http.DefaultClient.Do(req)
}

// setSignature sets the svix-id, svix-timestamp and svix-signature headers
// Svix sends with body, signed by wh, on h.
func setSignature(h http.Header, wh *svix.Webhook, msgID string, ts time.Time, body []byte) error {
	sig, err := wh.Sign(msgID, ts, body)
	if err != nil {
		return err
	}
	h.Set("svix-id", msgID)
	h.Set("svix-timestamp", strconv.FormatInt(ts.Unix(), 10))
	h.Set("svix-signature", sig)
	return nil
}

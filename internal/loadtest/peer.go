package loadtest

import (
	"encoding/json"
	"errors"
	"net/http"
	"strings"
	"time"

	clerksdk "github.com/clerk/clerk-sdk-go/v2"
	clerkhttp "github.com/clerk/clerk-sdk-go/v2/http"
	"github.com/clerk/clerk-sdk-go/v2/jwks"
	"github.com/clerk/clerk-sdk-go/v2/m2m_token"

	"github.com/gatehouse-dev/gatehouse/ent"
	"github.com/gatehouse-dev/gatehouse/internal/viewer"
)

// PeerConfig configures the peer.
type PeerConfig struct {
	// Client is the store's ent client (the same database Gatehouse uses).
	Client *ent.Client
	// APIURL is the Clerk Backend API base URL, e.g. the emulator's
	// "http://127.0.0.1:PORT/v1".
	APIURL string
	// SecretKey is the Clerk secret key (sk_…).
	SecretKey string
	// HTTPClient fetches the JWKS and verifies machine tokens; nil is a
	// client with a 5 s timeout.
	HTTPClient *http.Client
}

// NewPeer returns the peer: the way Clerk documents a Go backend today — a
// net/http handler behind clerk-sdk-go v2's WithHeaderAuthorization
// middleware — serving GET /me with the same lookup Gatehouse's GetMe makes:
// the user row by the token's subject, read through the tenancy-enforcing
// ent client under a viewer for that user.
//
// Clerk's guide configures the SDK with the package-level clerk.SetKey;
// the peer passes the same Backend API settings to the middleware through
// its JWKSClient option instead, which changes where the key comes from and
// nothing about what the middleware does per request (it still verifies
// every token in full and fetches the JWKS for every key id it has not
// cached).
//
// GET /machine verifies a machine token (mt_…) as the SDK's m2m_token
// package does, with one POST /m2m_tokens/verify to the Backend API on
// every request, and answers the machine's id. clerk-sdk-go v2.4.2 has no
// call to verify an API key (ak_…) or an OAuth token (oat_…), so the peer
// serves neither.
func NewPeer(cfg PeerConfig) (http.Handler, error) {
	if cfg.Client == nil || cfg.APIURL == "" || cfg.SecretKey == "" {
		return nil, errors.New("loadtest: peer needs an ent client, a Backend API URL and a secret key")
	}
	hc := cfg.HTTPClient
	if hc == nil {
		hc = &http.Client{Timeout: 5 * time.Second}
	}
	backend := &clerksdk.ClientConfig{BackendConfig: clerksdk.BackendConfig{
		URL:        clerksdk.String(cfg.APIURL),
		Key:        clerksdk.String(cfg.SecretKey),
		HTTPClient: hc,
	}}
	jwksClient := jwks.NewClient(backend)
	machines := m2m_token.NewClient(backend)
	me := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		claims, ok := clerksdk.SessionClaimsFromContext(r.Context())
		if !ok {
			w.WriteHeader(http.StatusUnauthorized)
			w.Write([]byte(`{"access": "unauthorized"}`))
			return
		}
		ctx := viewer.NewContext(r.Context(), &viewer.Principal{
			Kind:      viewer.KindUser,
			Subject:   claims.Subject,
			SessionID: claims.SessionID,
			TenantID:  claims.Subject,
		})
		u, err := cfg.Client.User.Get(ctx, claims.Subject)
		switch {
		case ent.IsNotFound(err):
			http.Error(w, `{"error": "user not found"}`, http.StatusNotFound)
			return
		case err != nil:
			http.Error(w, `{"error": "internal"}`, http.StatusInternalServerError)
			return
		case u.DeletedAt != nil:
			http.Error(w, `{"error": "user deleted"}`, http.StatusUnauthorized)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		json.NewEncoder(w).Encode(peerMe{
			User: peerUser{
				ID: u.ID, Email: u.Email, FirstName: u.FirstName, LastName: u.LastName, ImageURL: u.ImageURL,
				CreateTime: u.CreatedAt, UpdateTime: u.UpdatedAt,
			},
			Session: peerSession{
				TenantID:         claims.Subject,
				OrganizationID:   claims.ActiveOrganizationID,
				OrganizationRole: claims.ActiveOrganizationRole,
				Permissions:      claims.ActiveOrganizationPermissions,
			},
		})
	})
	machine := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		token, _ := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
		mt, err := machines.Verify(r.Context(), &m2m_token.VerifyParams{Token: token})
		if err != nil || mt.Revoked || mt.Expired {
			w.WriteHeader(http.StatusUnauthorized)
			w.Write([]byte(`{"access": "unauthorized"}`))
			return
		}
		w.Header().Set("Content-Type", "application/json")
		json.NewEncoder(w).Encode(peerMachine{ID: mt.Subject, TokenID: mt.ID, Scopes: mt.Scopes})
	})
	mux := http.NewServeMux()
	mux.Handle("GET /me", clerkhttp.WithHeaderAuthorization(clerkhttp.JWKSClient(jwksClient))(me))
	mux.Handle("GET /machine", machine)
	return mux, nil
}

// peerMachine is what GET /machine answers: the machine a token is for.
type peerMachine struct {
	ID      string   `json:"id"`
	TokenID string   `json:"tokenId"`
	Scopes  []string `json:"scopes"`
}

// peerMe is GetMeResponse's JSON shape.
type peerMe struct {
	User    peerUser    `json:"user"`
	Session peerSession `json:"session"`
}

type peerUser struct {
	ID         string    `json:"id"`
	Email      string    `json:"email"`
	FirstName  string    `json:"firstName"`
	LastName   string    `json:"lastName"`
	ImageURL   string    `json:"imageUrl"`
	CreateTime time.Time `json:"createTime"`
	UpdateTime time.Time `json:"updateTime"`
}

type peerSession struct {
	TenantID         string   `json:"tenantId"`
	OrganizationID   string   `json:"organizationId,omitempty"`
	OrganizationRole string   `json:"organizationRole,omitempty"`
	Permissions      []string `json:"permissions,omitempty"`
}

package auth

import (
	"encoding/base64"
	"encoding/json"
	"slices"
	"strings"
	"time"

	"github.com/gatehouse-dev/gatehouse/internal/viewer"
)

// The prefixes of Clerk's opaque credentials, which route them.
const (
	MachineTokenPrefix = "mt_"
	APIKeyPrefix       = "ak_"
	OAuthTokenPrefix   = "oat_"
)

// The shape of an opaque credential's body (after the prefix): base64-like,
// 16 to 256 characters. Anything else is refused without a call to Clerk.
const (
	minOpaqueBody = 16
	maxOpaqueBody = 256
)

// The "typ" headers of OAuth access tokens in JWT form (RFC 9068).
const (
	typeAccessToken            = "at+jwt"
	typeAccessTokenApplication = "application/at+jwt"
)

// machineSubjectPrefix starts the sub of a machine token in JWT form.
const machineSubjectPrefix = "mch_"

// opaqueKind returns the kind of credential an opaque token's prefix names,
// and false for anything else (a JWT, or nothing Clerk issues). It looks at
// the prefix only: wellFormedOpaque checks the rest.
func opaqueKind(token string) (viewer.Credential, bool) {
	for _, o := range opaqueKinds {
		if strings.HasPrefix(token, o.prefix) {
			return o.kind, true
		}
	}
	return 0, false
}

// prefixOf is the prefix of an opaque credential of kind.
func prefixOf(kind viewer.Credential) string {
	for _, o := range opaqueKinds {
		if o.kind == kind {
			return o.prefix
		}
	}
	return ""
}

// opaqueKinds are the opaque credentials' prefixes and kinds.
var opaqueKinds = [...]struct {
	prefix string
	kind   viewer.Credential
}{
	{MachineTokenPrefix, viewer.CredentialM2M},
	{APIKeyPrefix, viewer.CredentialAPIKey},
	{OAuthTokenPrefix, viewer.CredentialOAuth},
}

// wellFormedOpaque reports whether token is prefix followed by 16 to 256
// characters of A–Z a–z 0–9 + / = _ -.
func wellFormedOpaque(token, prefix string) bool {
	body, ok := strings.CutPrefix(token, prefix)
	if !ok || len(body) < minOpaqueBody || len(body) > maxOpaqueBody {
		return false
	}
	for i := 0; i < len(body); i++ {
		switch c := body[i]; {
		case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9',
			c == '+', c == '/', c == '=', c == '_', c == '-':
		default:
			return false
		}
	}
	return true
}

// jwtKind routes a token that is not opaque by its header and claims, as
// Clerk's own SDKs do, without verifying anything: typ at+jwt (or
// application/at+jwt) is an OAuth token, a sub starting mch_ a machine
// token, anything else a session token, whose verifier then holds it to
// everything a session must be. ok is false when token is not a compact JWS
// whose header and claims decode.
//
// Routing decides which verifier runs, never whether a token is good: a
// JWT of one kind carrying the marks of another fails its own verifier
// (a session's cat, a machine's cat, an OAuth typ). It is never handed to a
// second verifier.
func jwtKind(token string) (kind viewer.Credential, ok bool) {
	if !compactJWS(token) {
		return 0, false
	}
	h, ok := readHeader(token)
	if !ok {
		return 0, false
	}
	if h.typ == typeAccessToken || h.typ == typeAccessTokenApplication {
		return viewer.CredentialOAuth, true
	}
	sub, ok := peekSubject(token)
	if !ok {
		return 0, false
	}
	if strings.HasPrefix(sub, machineSubjectPrefix) {
		return viewer.CredentialM2M, true
	}
	return viewer.CredentialSession, true
}

// peekSubject reads the sub claim of a compact JWS without verifying it, for
// routing only. A token without sub has "".
func peekSubject(token string) (string, bool) {
	_, rest, _ := strings.Cut(token, ".")
	seg, _, _ := strings.Cut(rest, ".")
	raw, err := base64.RawURLEncoding.DecodeString(seg)
	if err != nil {
		return "", false
	}
	var claims struct {
		Subject json.RawMessage `json:"sub"`
	}
	if json.Unmarshal(raw, &claims) != nil {
		return "", false
	}
	var sub string
	if len(claims.Subject) > 0 && json.Unmarshal(claims.Subject, &sub) != nil {
		return "", true // not a string: a subject of no kind, refused by its verifier
	}
	return sub, true
}

// grant is what verifying a credential other than a session established,
// independent of the call presenting it: the tenant it acts in and the
// permissions it holds there are decided on every call (see principalOf),
// never cached. A grant may be shared between calls: read only.
type grant struct {
	kind viewer.Credential
	// id is the token's or key's id (mt_…, ak_…, oat_…), never the
	// credential itself.
	id string
	// subject is who the credential acts for: mch_… (a machine), user_…,
	// or org_… (an organization's own API key).
	subject   string
	expiresAt time.Time
	// scopes are the Gatehouse permissions an API key's or OAuth token's
	// scopes name, sorted; nil when they name none.
	scopes []string
	// restricted is set when a machine token's claims hold "tenants"; then
	// only those tenants are allowed.
	restricted bool
	tenants    []string
}

// forUser reports whether g acts for a user (a user's API key, an OAuth
// token), as require_user asks.
func (g *grant) forUser() bool {
	return g.kind != viewer.CredentialM2M && viewer.ValidUserID(g.subject)
}

// gatehousePermissions are the permissions scopes may name; other scopes
// are not Gatehouse's and are ignored.
var gatehousePermissions = []string{PermProjectsCreate, PermProjectsDelete, PermProjectsRead, PermProjectsUpdate}

// namedPermissions returns the Gatehouse permissions among scopes, sorted
// and without duplicates; nil when there are none.
func namedPermissions(scopes []string) []string {
	var perms []string
	for _, s := range scopes {
		if slices.Contains(gatehousePermissions, s) {
			perms = append(perms, s)
		}
	}
	if len(perms) == 0 {
		return nil
	}
	return normalize(perms)
}

// scopedPermissions is what a credential naming perms (nil: none) holds
// where its subject holds held: the named ones the subject holds, or, when
// none is named, org:projects:read if the subject holds it. A key or token
// never holds more than its subject.
func scopedPermissions(perms, held []string) []string {
	if perms == nil {
		perms = []string{PermProjectsRead}
	}
	out := make([]string, 0, len(perms))
	for _, p := range perms {
		if slices.Contains(held, p) {
			out = append(out, p)
		}
	}
	return out
}

// tenantsClaim reads a machine token's optional "tenants" custom claim.
// Claims that cannot be read at all, or a "tenants" that is not a list of
// strings, restrict the token to no tenant: a restriction that cannot be
// understood is not lifted.
func tenantsClaim(raw json.RawMessage) (restricted bool, tenants []string) {
	if len(raw) == 0 {
		return false, nil
	}
	var claims map[string]json.RawMessage
	if err := json.Unmarshal(raw, &claims); err != nil {
		return true, nil
	}
	return tenantsOf(claims)
}

// tenantsOf is tenantsClaim on claims already split.
func tenantsOf(claims map[string]json.RawMessage) (restricted bool, tenants []string) {
	list, ok := claims["tenants"]
	if !ok {
		return false, nil
	}
	if err := json.Unmarshal(list, &tenants); err != nil {
		return true, nil
	}
	return true, tenants
}

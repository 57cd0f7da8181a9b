package clerkemu

import (
	"crypto/rsa"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/go-jose/go-jose/v3"
	"github.com/go-jose/go-jose/v3/jwt"
)

// Session token categories, the JWT "cat" header.
const (
	CategorySession  = "cl_B7d4PD111AAA"
	CategoryIgnore   = "cl_I7d4PD111III"
	CategoryTemplate = "cl_B7d4PD222AAA"
	CategoryMachine  = "cl_B7d4PD333AAA"
)

// Session describes a session token to mint. Only UserID is required; the
// other fields default to what Clerk issues, and the rest exist to mint
// tokens that a verifier must reject.
type Session struct {
	UserID    string
	SessionID string // default "sess_" + random

	OrgID   string
	OrgSlug string
	// OrgRole is in Clerk's "org:admin" form; v2 tokens carry it without
	// the "org:" prefix.
	OrgRole string
	// Permissions are organization permissions ("org:projects:read"). They
	// need an OrgID.
	Permissions []string

	// Version is 2 (the default; Clerk's current claims: "v":2, "o", "fea")
	// or 1 ("org_id", "org_role", "org_permissions").
	Version int

	TTL             time.Duration // default 1h: exp = iat + TTL
	NotBefore       time.Time     // default IssuedAt - 10s
	IssuedAt        time.Time     // default now
	AuthorizedParty string        // azp; default "http://localhost:3000"
	// Status is the "sts" claim: "" (omitted), "active" or "pending".
	Status string
	// Category is the "cat" header; default CategorySession, "-" omits it.
	Category string
	Issuer   string // overrides the emulator's issuer

	OmitSID, OmitExp bool
	// KeyID overrides the "kid" header.
	KeyID string
	// SigningKey signs instead of the emulator's key (the kid stays the
	// emulator's unless KeyID is set): a forged token.
	SigningKey *rsa.PrivateKey
	// Extra claims are added last and so override any of the above.
	Extra map[string]any
}

// MintSession returns a signed RS256 session token for s.
func (e *Emulator) MintSession(s Session) (string, error) {
	if s.UserID == "" {
		return "", errors.New("clerkemu: mint session: no user id")
	}
	if len(s.Permissions) > 0 && s.OrgID == "" {
		return "", errors.New("clerkemu: mint session: permissions need an organization")
	}
	signer := e.signer()
	key, kid := signer.key, signer.kid
	if s.SigningKey != nil {
		key = s.SigningKey
	}
	if s.KeyID != "" {
		kid = s.KeyID
	}
	if s.SessionID == "" {
		s.SessionID = "sess_" + randomHex(12)
	}
	if s.Version == 0 {
		s.Version = 2
	}
	if s.TTL == 0 {
		s.TTL = time.Hour
	}
	if s.IssuedAt.IsZero() {
		s.IssuedAt = time.Now()
	}
	if s.NotBefore.IsZero() {
		s.NotBefore = s.IssuedAt.Add(-10 * time.Second)
	}
	if s.AuthorizedParty == "" {
		s.AuthorizedParty = "http://localhost:3000"
	}
	if s.Category == "" {
		s.Category = CategorySession
	}
	if s.Issuer == "" {
		s.Issuer = e.issuer
	}

	claims := map[string]any{
		"iss": s.Issuer,
		"sub": s.UserID,
		"iat": s.IssuedAt.Unix(),
		"nbf": s.NotBefore.Unix(),
		"azp": s.AuthorizedParty,
		"fva": []int{0, -1},
	}
	if !s.OmitExp {
		claims["exp"] = s.IssuedAt.Add(s.TTL).Unix()
	}
	if !s.OmitSID {
		claims["sid"] = s.SessionID
	}
	if s.Status != "" {
		claims["sts"] = s.Status
	}
	switch s.Version {
	case 1:
		if s.OrgID != "" {
			claims["org_id"] = s.OrgID
			claims["org_slug"] = s.OrgSlug
			claims["org_role"] = s.OrgRole
			claims["org_permissions"] = append([]string{}, s.Permissions...)
		}
	case 2:
		claims["v"] = 2
		if s.OrgID != "" {
			fea, per, fpm, err := encodePermissions(s.Permissions)
			if err != nil {
				return "", fmt.Errorf("clerkemu: mint session: %w", err)
			}
			claims["fea"] = fea
			claims["o"] = map[string]any{
				"id":  s.OrgID,
				"slg": s.OrgSlug,
				"rol": strings.TrimPrefix(s.OrgRole, "org:"),
				"per": per,
				"fpm": fpm,
			}
		}
	default:
		return "", fmt.Errorf("clerkemu: mint session: unknown version %d", s.Version)
	}
	for k, v := range s.Extra {
		claims[k] = v
	}

	token, err := sign(key, kid, "JWT", s.Category, claims)
	if err != nil {
		return "", fmt.Errorf("clerkemu: mint session: %w", err)
	}
	return token, nil
}

// sign returns claims as an RS256 compact JWS with header typ, kid and,
// unless it is "-" or empty, cat.
func sign(key *rsa.PrivateKey, kid, typ, cat string, claims map[string]any) (string, error) {
	opts := (&jose.SignerOptions{}).WithType(jose.ContentType(typ))
	if cat != "-" && cat != "" {
		opts = opts.WithHeader("cat", cat)
	}
	sig, err := jose.NewSigner(jose.SigningKey{
		Algorithm: jose.RS256,
		Key:       jose.JSONWebKey{Key: key, KeyID: kid, Algorithm: string(jose.RS256)},
	}, opts)
	if err != nil {
		return "", err
	}
	return jwt.Signed(sig).Claims(claims).CompactSerialize()
}

// encodePermissions encodes organization permissions as Clerk's v2 claims
// do: "fea" lists the features ("o:projects,o:billing"), "o.per" the
// permission names ("read,create"), and "o.fpm" for each feature a decimal
// bitmask over "o.per", least significant bit first.
func encodePermissions(perms []string) (fea, per, fpm string, err error) {
	var features, names []string
	masks := map[string]int{}
	for _, p := range perms {
		parts := strings.Split(p, ":")
		if len(parts) != 3 || parts[0] != "org" || parts[1] == "" || parts[2] == "" {
			return "", "", "", fmt.Errorf("permission %q is not org:<feature>:<permission>", p)
		}
		feature, name := parts[1], parts[2]
		if _, ok := masks[feature]; !ok {
			features = append(features, feature)
		}
		bit := indexOrAppend(&names, name)
		masks[feature] |= 1 << bit
	}
	feas := make([]string, len(features))
	fpms := make([]string, len(features))
	for i, f := range features {
		feas[i] = "o:" + f
		fpms[i] = strconv.Itoa(masks[f])
	}
	return strings.Join(feas, ","), strings.Join(names, ","), strings.Join(fpms, ","), nil
}

func indexOrAppend(list *[]string, s string) int {
	for i, v := range *list {
		if v == s {
			return i
		}
	}
	*list = append(*list, s)
	return len(*list) - 1
}

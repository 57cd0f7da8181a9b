// Package clerkemu emulates the parts of Clerk that Gatehouse talks to, for
// `gatehouse dev` and for tests: the Backend API (JWKS, users, and the
// verification of machine tokens, API keys and OAuth access tokens) over
// HTTP with Clerk's JSON shapes and error bodies; RS256 session tokens, and
// machine and OAuth JWTs, signed with real RSA keys (one instance key, one
// JWKS); and webhook signatures computed with Svix's own library. Gatehouse
// reaches it through its production code paths (internal/clerk and
// clerk-sdk-go), so what passes here passes with Clerk. Its answers are
// encoded from the types those paths decode (clerk-sdk-go's, or
// internal/clerk's where the SDK has none): one definition of the wire
// format.
//
// Fault injection (SetUsersStatus, SetJWKSStatus, SetJWKSDelay,
// SetVerifyStatus, SetRejectStatus, HoldVerifies) and counters (JWKSFetches,
// Verifies and its parts, VerifiesCanceled) let tests assert caching, limits
// and failure handling.
//
// SampleEvent builds webhook events in Clerk's real JSON shapes from
// embedded samples, and SendWebhook delivers one signed as Svix signs, for
// the `gatehouse webhook send` command, tests and benchmarks.
package clerkemu

import (
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"

	svix "github.com/svix/svix-webhooks/go"
)

// DefaultIssuer is the iss of tokens minted by an Emulator by default.
const DefaultIssuer = "https://clerk.gatehouse.test"

// Options configures an Emulator. The zero value is ready for tests.
type Options struct {
	// Issuer is the iss claim of minted session tokens; default
	// DefaultIssuer.
	Issuer string
	// Key signs session tokens; default a fresh 2048-bit key.
	Key *rsa.PrivateKey
	// KeyID is the key's kid; default derived from the key ("ins_…"), so
	// a persisted key keeps its kid across restarts.
	KeyID string
	// AutoUsers makes GET /v1/users/{id} synthesize any well-formed
	// user_… id it does not know (dev mode). Otherwise unknown users are
	// 404, as with Clerk.
	AutoUsers bool
	// WebhookSecret ("whsec_<base64>") signs webhooks; default random.
	WebhookSecret string
}

// Emulator is an in-memory Clerk instance. Serve Handler (for example with
// httptest.NewServer) and point the Backend API URL at {server}/v1. All
// methods are safe for concurrent use.
type Emulator struct {
	issuer    string
	secretKey string
	autoUsers bool
	whSecret  string
	webhook   *svix.Webhook
	machineID string // subject of tokens created over HTTP

	mu          sync.Mutex
	keys        []signingKey // keys[0] signs; all are served in the JWKS
	users       map[string]User
	deleted     map[string]bool
	usersStatus int
	jwksStatus  int
	jwksDelay   time.Duration
	tokens      map[string]*machineToken // by opaque token
	apiKeys     map[string]*apiKey       // by secret
	oauthTokens map[string]*oauthToken   // by opaque token

	verify      verifyFaults
	jwksFetches atomic.Int64
}

type signingKey struct {
	kid string
	key *rsa.PrivateKey
}

// New returns an Emulator configured by opts.
func New(opts Options) (*Emulator, error) {
	if opts.Issuer == "" {
		opts.Issuer = DefaultIssuer
	}
	if opts.Key == nil {
		k, err := rsa.GenerateKey(rand.Reader, 2048)
		if err != nil {
			return nil, fmt.Errorf("clerkemu: generate key: %w", err)
		}
		opts.Key = k
	}
	if opts.KeyID == "" {
		opts.KeyID = keyIDFor(&opts.Key.PublicKey)
	}
	if opts.WebhookSecret == "" {
		opts.WebhookSecret = "whsec_" + base64.StdEncoding.EncodeToString(randomBytes(24))
	}
	wh, err := svix.NewWebhook(opts.WebhookSecret)
	if err != nil {
		return nil, fmt.Errorf("clerkemu: webhook secret: %w", err)
	}
	return &Emulator{
		issuer:      opts.Issuer,
		secretKey:   "sk_test_" + randomHex(20),
		autoUsers:   opts.AutoUsers,
		whSecret:    opts.WebhookSecret,
		webhook:     wh,
		machineID:   "mch_" + randomHex(12),
		keys:        []signingKey{{kid: opts.KeyID, key: opts.Key}},
		users:       make(map[string]User),
		deleted:     make(map[string]bool),
		tokens:      make(map[string]*machineToken),
		apiKeys:     make(map[string]*apiKey),
		oauthTokens: make(map[string]*oauthToken),
	}, nil
}

// SecretKey is the sk_test_… key the Backend API requires as a bearer token.
func (e *Emulator) SecretKey() string { return e.secretKey }

// Issuer is the iss of minted session tokens.
func (e *Emulator) Issuer() string { return e.issuer }

// KeyID is the kid of the current signing key.
func (e *Emulator) KeyID() string { return e.signer().kid }

// PublicKeyPEM is the current signing key's public half as a PKIX
// "PUBLIC KEY" PEM block, the format of CLERK_JWT_KEY.
func (e *Emulator) PublicKeyPEM() string {
	der, err := x509.MarshalPKIXPublicKey(&e.signer().key.PublicKey)
	if err != nil {
		panic(err) // cannot happen for an RSA key
	}
	return string(pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der}))
}

// PrivateKeyPEM is the current signing key as a PKCS #8 "PRIVATE KEY" PEM
// block.
func (e *Emulator) PrivateKeyPEM() string {
	return string(privateKeyPEM(e.signer().key))
}

// RotateKey makes a fresh key the signing key and serves only it in the
// JWKS, so tokens signed with the old key stop verifying once a client
// refetches. It returns the new kid.
func (e *Emulator) RotateKey() (kid string, err error) { return e.rotate(false) }

// RotateKeyKeepOld is RotateKey, but the JWKS keeps serving the old keys
// too, as during a graceful rotation.
func (e *Emulator) RotateKeyKeepOld() (kid string, err error) { return e.rotate(true) }

func (e *Emulator) rotate(keepOld bool) (string, error) {
	k, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		return "", fmt.Errorf("clerkemu: generate key: %w", err)
	}
	sk := signingKey{kid: keyIDFor(&k.PublicKey), key: k}
	e.mu.Lock()
	defer e.mu.Unlock()
	if keepOld {
		e.keys = append([]signingKey{sk}, e.keys...)
	} else {
		e.keys = []signingKey{sk}
	}
	return sk.kid, nil
}

func (e *Emulator) signer() signingKey {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.keys[0]
}

// JWKSFetches counts authorized GET /v1/jwks requests.
func (e *Emulator) JWKSFetches() int64 { return e.jwksFetches.Load() }

// SetJWKSStatus makes GET /v1/jwks answer status with a Clerk error body
// (e.g. 503), for fault injection; 0 restores normal answers.
func (e *Emulator) SetJWKSStatus(status int) {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.jwksStatus = status
}

// SetJWKSDelay makes GET /v1/jwks wait d before answering (0: no delay).
func (e *Emulator) SetJWKSDelay(d time.Duration) {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.jwksDelay = d
}

// keyIDFor derives a stable Clerk-style kid ("ins_…") from a public key.
func keyIDFor(pub *rsa.PublicKey) string {
	der, err := x509.MarshalPKIXPublicKey(pub)
	if err != nil {
		panic(err) // cannot happen for an RSA key
	}
	sum := sha256.Sum256(der)
	return "ins_" + hex.EncodeToString(sum[:10])
}

// LoadOrCreateKey reads the PEM private key at path, or creates a fresh
// 2048-bit key there (mode 0600, parent directories 0700) if there is none,
// so `gatehouse token` and a running `gatehouse dev` sign with the same key.
// Two processes racing to create it end up with the same key.
func LoadOrCreateKey(path string) (*rsa.PrivateKey, error) {
	if k, err := readKey(path); !errors.Is(err, fs.ErrNotExist) {
		return k, err
	}
	k, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		return nil, fmt.Errorf("clerkemu: generate key: %w", err)
	}
	dir := filepath.Dir(path)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("clerkemu: key: %w", err)
	}
	// Write a temporary file, then link it into place: the key appears
	// whole or not at all, and a concurrent creator's key is never replaced.
	tmp, err := os.CreateTemp(dir, ".key-*")
	if err != nil {
		return nil, fmt.Errorf("clerkemu: key: %w", err)
	}
	defer os.Remove(tmp.Name())
	_, err = tmp.Write(privateKeyPEM(k))
	if cerr := tmp.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return nil, fmt.Errorf("clerkemu: write key: %w", err)
	}
	if err := os.Link(tmp.Name(), path); errors.Is(err, fs.ErrExist) {
		return readKey(path) // another process won the race
	} else if err != nil {
		return nil, fmt.Errorf("clerkemu: key: %w", err)
	}
	return k, nil
}

func readKey(path string) (*rsa.PrivateKey, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	block, _ := pem.Decode(data)
	if block == nil {
		return nil, fmt.Errorf("clerkemu: key %s: no PEM block", path)
	}
	var parsed any
	switch block.Type {
	case "PRIVATE KEY":
		parsed, err = x509.ParsePKCS8PrivateKey(block.Bytes)
	case "RSA PRIVATE KEY":
		parsed, err = x509.ParsePKCS1PrivateKey(block.Bytes)
	default:
		return nil, fmt.Errorf("clerkemu: key %s: unexpected PEM type %q", path, block.Type)
	}
	if err != nil {
		return nil, fmt.Errorf("clerkemu: key %s: %w", path, err)
	}
	k, ok := parsed.(*rsa.PrivateKey)
	if !ok {
		return nil, fmt.Errorf("clerkemu: key %s: %T is not an RSA key", path, parsed)
	}
	return k, nil
}

func privateKeyPEM(k *rsa.PrivateKey) []byte {
	der, err := x509.MarshalPKCS8PrivateKey(k)
	if err != nil {
		panic(err) // cannot happen for a valid RSA key
	}
	return pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der})
}

func randomBytes(n int) []byte {
	b := make([]byte, n)
	rand.Read(b) // never returns an error
	return b
}

func randomHex(nBytes int) string { return hex.EncodeToString(randomBytes(nBytes)) }

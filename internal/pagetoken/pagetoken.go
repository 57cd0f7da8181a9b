// Package pagetoken makes the opaque page tokens of Gatehouse's List RPCs
// and chooses page sizes.
//
// A token carries the keyset cursor of the last item of a page (its sort key
// and id) and is authenticated with HMAC-SHA256 under a server key, bound to
// the tenant and the query ("projects", "users") it was issued for. A token
// that was altered, or issued for another tenant or another query, or under
// another key, does not decode. Tokens do not name their tenant: the binding
// is in the MAC only.
//
// Tokens are valid wherever the same key is: give every replica the same key
// for tokens to work across replicas and restarts; a key made at random per
// process makes them last as long as the process.
package pagetoken

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/binary"
	"errors"
	"fmt"
	"hash"
	"strings"
	"time"
)

// ErrInvalid is returned for a token that is malformed, altered, or was issued
// for another tenant, query or key. The caller sent it; it is the caller's
// INVALID_ARGUMENT.
var ErrInvalid = errors.New("invalid page token")

const (
	// DefaultSize is the page size when a request leaves it 0.
	DefaultSize = 50
	// MaxSize is the largest page; larger requests are clamped to it.
	MaxSize = 200
	// MinKeyLen is the shortest key New accepts.
	MinKeyLen = 16
)

// Size returns the page size to use for a request's page_size: 0 means
// DefaultSize, anything above MaxSize is MaxSize, and a negative size is an
// error.
func Size(n int32) (int, error) {
	switch {
	case n < 0:
		return 0, errors.New("must not be negative")
	case n == 0:
		return DefaultSize, nil
	case n > MaxSize:
		return MaxSize, nil
	}
	return int(n), nil
}

// Cursor is the position after which the next page starts: the sort key of
// the last item returned. Time is zero for lists ordered by ID alone; ID is
// at most 128 bytes (longer ones make tokens that do not decode).
type Cursor struct {
	Time time.Time
	ID   string
}

// Codec encodes and decodes page tokens under one key. It is safe for
// concurrent use.
type Codec struct {
	key []byte
}

// New returns a Codec that authenticates tokens with key, which must be
// secret and at least MinKeyLen bytes long (New panics otherwise: the key
// comes from the server's own configuration).
func New(key []byte) *Codec {
	if len(key) < MinKeyLen {
		panic(fmt.Sprintf("pagetoken: key of %d bytes, want at least %d", len(key), MinKeyLen))
	}
	// A key of its own, so that the configured secret may serve elsewhere too.
	m := hmac.New(sha256.New, key)
	m.Write([]byte("gatehouse page token key v1"))
	return &Codec{key: m.Sum(nil)}
}

// Token layout, before base64url (unpadded) encoding:
//
//	version (1) | flags (1) | unix nanoseconds, if flagTime (8) | id | mac (16)
//
// where mac is HMAC-SHA256, truncated, over the query, the tenant and all the
// bytes before it.
const (
	version  = 1
	flagTime = 1 << 0
	macLen   = 16
	// maxIDLen bounds what a token can make the server parse and query with.
	maxIDLen = 128
)

var encoding = base64.RawURLEncoding.Strict()

// Encode returns the token for the page after cur in query, for tenant.
func (c *Codec) Encode(tenant, query string, cur Cursor) string {
	b := make([]byte, 0, 2+8+len(cur.ID)+macLen)
	b = append(b, version, 0)
	if !cur.Time.IsZero() {
		b[1] |= flagTime
		b = binary.BigEndian.AppendUint64(b, uint64(cur.Time.UnixNano()))
	}
	b = append(b, cur.ID...)
	b = append(b, c.mac(tenant, query, b)...)
	return encoding.EncodeToString(b)
}

// Decode returns the cursor in token if it was issued by Encode under the
// same key for the same tenant and query; otherwise it returns ErrInvalid.
// The cursor's Time is in UTC.
func (c *Codec) Decode(token, tenant, query string) (Cursor, error) {
	if len(token) > encoding.EncodedLen(2+8+maxIDLen+macLen) {
		return Cursor{}, ErrInvalid
	}
	// The decoder skips newlines; a token has exactly one spelling.
	if strings.ContainsFunc(token, func(r rune) bool { return r == '\r' || r == '\n' }) {
		return Cursor{}, ErrInvalid
	}
	b, err := encoding.DecodeString(token)
	if err != nil || len(b) < 2+macLen {
		return Cursor{}, ErrInvalid
	}
	body, sum := b[:len(b)-macLen], b[len(b)-macLen:]
	if !hmac.Equal(sum, c.mac(tenant, query, body)) {
		return Cursor{}, ErrInvalid
	}
	// Authentic: what follows only guards against a bug in Encode.
	if body[0] != version || body[1]&^flagTime != 0 {
		return Cursor{}, ErrInvalid
	}
	var cur Cursor
	rest := body[2:]
	if body[1]&flagTime != 0 {
		if len(rest) < 8 {
			return Cursor{}, ErrInvalid
		}
		cur.Time = time.Unix(0, int64(binary.BigEndian.Uint64(rest))).UTC()
		rest = rest[8:]
	}
	cur.ID = string(rest)
	return cur, nil
}

func (c *Codec) mac(tenant, query string, body []byte) []byte {
	m := hmac.New(sha256.New, c.key)
	writeField(m, query)
	writeField(m, tenant)
	m.Write(body)
	return m.Sum(nil)[:macLen]
}

// writeField writes s length-prefixed, so that no two (query, tenant) pairs
// give the MAC the same input.
func writeField(h hash.Hash, s string) {
	h.Write(binary.AppendUvarint(nil, uint64(len(s))))
	h.Write([]byte(s))
}

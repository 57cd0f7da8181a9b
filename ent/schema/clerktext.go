package schema

import (
	"context"
	"strings"
	"unicode/utf8"

	"entgo.io/ent"
	"entgo.io/ent/schema/mixin"
)

// maxClerkText bounds, in bytes, each string stored from Clerk. Clerk's own
// values are far shorter; the bound keeps a hostile or corrupted value from
// growing rows without end.
const maxClerkText = 2048

// ClerkMirrorMixin is embedded by the entities mirrored from Clerk (User,
// Organization, Membership). Their strings come from Clerk — webhooks and
// first-sight fetches from the Backend API alike — and whatever Clerk lets
// a user type must not make a write fail (a NUL byte in a name would fail
// every insert on Postgres, locking the user out; a webhook that can never
// be applied is retried by Svix for days). One hook cleans every string a
// mutation sets, on every path, with cleanText.
type ClerkMirrorMixin struct {
	mixin.Schema
}

// Hooks of the ClerkMirrorMixin.
func (ClerkMirrorMixin) Hooks() []ent.Hook {
	return []ent.Hook{cleanClerkStrings}
}

// cleanClerkStrings replaces each string field m sets with cleanText's
// version of it.
func cleanClerkStrings(next ent.Mutator) ent.Mutator {
	return ent.MutateFunc(func(ctx context.Context, m ent.Mutation) (ent.Value, error) {
		for _, name := range m.Fields() {
			v, _ := m.Field(name)
			s, ok := v.(string)
			if !ok {
				continue
			}
			if c := cleanText(s); c != s {
				if err := m.SetField(name, c); err != nil {
					return nil, err
				}
			}
		}
		return next.Mutate(ctx, m)
	})
}

// cleanText returns s as Postgres and SQLite text can hold it: invalid UTF-8
// replaced by U+FFFD, NUL bytes dropped, and cut to maxClerkText bytes on a
// character boundary. Other characters are kept: they are the user's.
func cleanText(s string) string {
	if len(s) <= maxClerkText && strings.IndexByte(s, 0) < 0 && utf8.ValidString(s) {
		return s
	}
	s = strings.ReplaceAll(strings.ToValidUTF8(s, "\uFFFD"), "\x00", "")
	if len(s) > maxClerkText {
		cut := maxClerkText
		for cut > 0 && !utf8.RuneStart(s[cut]) {
			cut--
		}
		s = s[:cut]
	}
	return s
}

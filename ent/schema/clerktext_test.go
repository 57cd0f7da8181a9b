package schema

import (
	"strings"
	"testing"
	"unicode/utf8"
)

func TestCleanText(t *testing.T) {
	long := strings.Repeat("é", maxClerkText) // 2 bytes each
	for _, tc := range []struct{ name, in, want string }{
		{"clean", "Ada Lovelace", "Ada Lovelace"},
		{"empty", "", ""},
		{"NUL", "Ada\x00", "Ada"},
		{"NULs inside", "a\x00b\x00\x00c", "abc"},
		{"invalid UTF-8", "Ad\xffa", "Ad\uFFFDa"},
		{"other controls stay", "tab\there", "tab\there"},
		{"too long, cut between characters", long, long[:maxClerkText]},
		{"too long, cut inside a character", "x" + long, "x" + long[:maxClerkText-2]},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := cleanText(tc.in); got != tc.want {
				t.Errorf("cleanText(%q) = %q, want %q", tc.in, got, tc.want)
			}
		})
	}
}

func FuzzCleanText(f *testing.F) {
	for _, s := range []string{"", "Ada", "a\x00b", "\xff\xfe", strings.Repeat("日本", 700)} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		c := cleanText(s)
		if len(c) > maxClerkText || !utf8.ValidString(c) || strings.IndexByte(c, 0) >= 0 {
			t.Fatalf("cleanText(%q) = %q: not storable", s, c)
		}
		if cleanText(c) != c {
			t.Fatalf("cleanText is not idempotent on %q", s)
		}
		if len(s) <= maxClerkText && utf8.ValidString(s) && strings.IndexByte(s, 0) < 0 && c != s {
			t.Fatalf("cleanText changed storable %q to %q", s, c)
		}
	})
}

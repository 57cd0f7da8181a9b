package pagetoken_test

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/gatehouse-dev/gatehouse/internal/pagetoken"
)

var testKey = []byte("0123456789abcdef0123456789abcdef")

func TestSize(t *testing.T) {
	tests := []struct {
		in      int32
		want    int
		wantErr bool
	}{
		{0, 50, false},
		{1, 1, false},
		{50, 50, false},
		{200, 200, false},
		{201, 200, false},
		{1 << 30, 200, false},
		{-1, 0, true},
		{-1 << 31, 0, true},
	}
	for _, tt := range tests {
		got, err := pagetoken.Size(tt.in)
		if got != tt.want || (err != nil) != tt.wantErr {
			t.Errorf("Size(%d) = %d, %v; want %d, error %t", tt.in, got, err, tt.want, tt.wantErr)
		}
	}
}

func TestRoundTrip(t *testing.T) {
	c := pagetoken.New(testKey)
	tests := []pagetoken.Cursor{
		{Time: time.Date(2026, 11, 23, 15, 4, 5, 123456000, time.UTC), ID: "prj_ABCDEFGHIJKLMNOPQRSTUVWXYZ"},
		{Time: time.Date(1999, 1, 1, 0, 0, 0, 1, time.UTC), ID: ""},
		{ID: "user_2abcDEF"},
		{ID: strings.Repeat("é", 64)},
	}
	for _, cur := range tests {
		token := c.Encode("org_A", "projects", cur)
		got, err := c.Decode(token, "org_A", "projects")
		if err != nil {
			t.Errorf("Decode(Encode(%+v)): %v", cur, err)
			continue
		}
		if diff := cmp.Diff(cur, got); diff != "" {
			t.Errorf("round trip (-want +got):\n%s", diff)
		}
	}
}

func TestDecodeTimeIsUTC(t *testing.T) {
	c := pagetoken.New(testKey)
	in := time.Date(2026, 1, 2, 3, 4, 5, 6, time.FixedZone("X", 3600))
	got, err := c.Decode(c.Encode("org_A", "projects", pagetoken.Cursor{Time: in, ID: "x"}), "org_A", "projects")
	if err != nil {
		t.Fatal(err)
	}
	if !got.Time.Equal(in) || got.Time.Location() != time.UTC {
		t.Errorf("time = %v, want %v in UTC", got.Time, in)
	}
}

func TestDecodeRejects(t *testing.T) {
	c := pagetoken.New(testKey)
	cur := pagetoken.Cursor{Time: time.Unix(1700000000, 0), ID: "prj_1"}
	valid := c.Encode("org_A", "projects", cur)

	tests := []struct {
		name, token, tenant, query string
	}{
		{"empty", "", "org_A", "projects"},
		{"not base64", "!!!not a token!!!", "org_A", "projects"},
		{"padded base64", valid + "=", "org_A", "projects"},
		{"too short", valid[:10], "org_A", "projects"},
		{"truncated", valid[:len(valid)-1], "org_A", "projects"},
		{"extended", valid + "A", "org_A", "projects"},
		{"with a newline", valid[:5] + "\n" + valid[5:], "org_A", "projects"},
		{"another tenant", valid, "org_B", "projects"},
		{"a personal tenant", valid, "user_A", "projects"},
		{"another query", valid, "org_A", "users"},
		{"another key", pagetoken.New([]byte("another key, 16+ bytes")).Encode("org_A", "projects", cur), "org_A", "projects"},
		{"tenant and query swapped", c.Encode("projects", "org_A", cur), "org_A", "projects"},
		{"huge", strings.Repeat("A", 1<<20), "org_A", "projects"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := c.Decode(tt.token, tt.tenant, tt.query)
			if !errors.Is(err, pagetoken.ErrInvalid) {
				t.Errorf("Decode = %+v, %v; want ErrInvalid", got, err)
			}
		})
	}
}

// TestDecodeRejectsEveryAlteredCharacter: changing any character of a token
// (including the unused low bits of the last one) makes it invalid.
func TestDecodeRejectsEveryAlteredCharacter(t *testing.T) {
	c := pagetoken.New(testKey)
	valid := c.Encode("org_A", "projects", pagetoken.Cursor{Time: time.Unix(1700000000, 0), ID: "prj_1"})
	const alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
	for i := range len(valid) {
		for _, r := range alphabet {
			if byte(r) == valid[i] {
				continue
			}
			tampered := valid[:i] + string(r) + valid[i+1:]
			if _, err := c.Decode(tampered, "org_A", "projects"); err == nil {
				t.Fatalf("Decode accepted %q (position %d of %q changed)", tampered, i, valid)
			}
		}
	}
}

func TestNewRejectsShortKey(t *testing.T) {
	defer func() {
		if recover() == nil {
			t.Error("New(15-byte key) did not panic")
		}
	}()
	pagetoken.New(make([]byte, pagetoken.MinKeyLen-1))
}

func FuzzDecode(f *testing.F) {
	c := pagetoken.New(testKey)
	f.Add(c.Encode("org_A", "projects", pagetoken.Cursor{Time: time.Unix(1700000000, 5), ID: "prj_1"}))
	f.Add(c.Encode("org_A", "projects", pagetoken.Cursor{ID: "user_1"}))
	f.Add("")
	f.Add("AQA")
	f.Fuzz(func(t *testing.T, token string) {
		cur, err := c.Decode(token, "org_A", "projects")
		if err != nil {
			if !errors.Is(err, pagetoken.ErrInvalid) {
				t.Fatalf("Decode(%q) error %v is not ErrInvalid", token, err)
			}
			return
		}
		// Only the server's own tokens decode, and each has one spelling.
		if again := c.Encode("org_A", "projects", cur); again != token {
			t.Fatalf("Decode(%q) = %+v, which encodes as %q", token, cur, again)
		}
		if _, err := c.Decode(token, "org_B", "projects"); err == nil {
			t.Fatalf("token %q decoded for another tenant", token)
		}
	})
}

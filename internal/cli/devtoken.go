package cli

import (
	"encoding/json"
	"net"
	"net/http"
	"slices"
	"time"

	"github.com/gatehouse-dev/gatehouse/internal/clerkemu"
	"github.com/gatehouse-dev/gatehouse/internal/loopback"
)

// devTokenPath is where `gatehouse dev` hands out session tokens to pages
// in a browser; only dev serves it.
const devTokenPath = "/dev/token"

// devTokenTTL is how long a token from devTokenPath lives. Clerk's own last
// a minute and getToken() fetches a new one as they expire; a page here asks
// for one per call, so a short life costs nothing.
const devTokenTTL = 10 * time.Minute

// devTokenHandler answers POST /dev/token with {"token": "…"}: a fresh
// session token for the dev user, signed by the emulator — the dev stand-in
// for Clerk's `await getToken()` in a page. Its azp is the calling page's
// origin, which must be one of parties (the browser sends it; a page from
// any other origin gets 403, and could not read the answer anyway: CORS); a
// caller without an Origin, such as curl, gets parties[0].
//
// It answers only requests addressed to a loopback name (127.0.0.1,
// localhost, [::1]): the dev server listens on loopback only, and checking
// the Host too keeps a page on a DNS-rebound name of its own from reaching
// it.
func devTokenHandler(emu *clerkemu.Emulator, userID string, parties []string) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodPost {
			w.Header().Set("Allow", http.MethodPost)
			http.Error(w, "use POST", http.StatusMethodNotAllowed)
			return
		}
		host, _, err := net.SplitHostPort(r.Host)
		if err != nil {
			host = r.Host
		}
		if !loopback.IsHost(trimBrackets(host)) {
			http.Error(w, "dev tokens are served to loopback addresses only", http.StatusForbidden)
			return
		}
		azp := r.Header.Get("Origin")
		switch {
		case azp == "" && len(parties) > 0:
			azp = parties[0]
		case azp != "" && !slices.Contains(parties, azp):
			http.Error(w, "origin "+azp+" is not in CLERK_AUTHORIZED_PARTIES", http.StatusForbidden)
			return
		}
		tok, err := emu.MintSession(clerkemu.Session{UserID: userID, AuthorizedParty: azp, TTL: devTokenTTL})
		if err != nil {
			http.Error(w, err.Error(), http.StatusInternalServerError)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		w.Header().Set("Cache-Control", "no-store")
		json.NewEncoder(w).Encode(map[string]string{"token": tok})
	})
}

func trimBrackets(host string) string {
	if len(host) > 1 && host[0] == '[' && host[len(host)-1] == ']' {
		return host[1 : len(host)-1]
	}
	return host
}

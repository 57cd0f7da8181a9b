package cli_test

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"io"
	"net/http"
	"os"
	"os/exec"
	"strings"
	"testing"

	"github.com/gatehouse-dev/gatehouse/internal/cli"
	"github.com/gatehouse-dev/gatehouse/internal/devstate"
)

// startDev runs `gatehouse dev` on free ports in a temp dir and returns its
// banner and state once it is up.
func startDev(t *testing.T, env map[string]string) (banner string, state *devstate.State, dir string) {
	t.Helper()
	dir = t.TempDir()
	stdout, _ := runInBackground(t, []string{"dev", "--dir", dir, "--grpc", "127.0.0.1:0", "--http", "127.0.0.1:0"}, env)
	waitFor(t, "the dev banner", func() bool { return strings.Contains(stdout.String(), "Ctrl-C stops it") })
	state, err := devstate.Read(dir)
	if err != nil {
		t.Fatal(err)
	}
	return stdout.String(), state, dir
}

func bannerToken(t *testing.T, banner string) string {
	t.Helper()
	for _, line := range strings.Split(banner, "\n") {
		if tok, ok := strings.CutPrefix(line, "export TOKEN='"); ok {
			return strings.TrimSuffix(tok, "'")
		}
	}
	t.Fatalf("no token in the banner:\n%s", banner)
	return ""
}

// TestDevCurlLines pastes the banner's curl lines into a shell, as the
// README tells a newcomer to, and checks each answers 200.
func TestDevCurlLines(t *testing.T) {
	if _, err := exec.LookPath("curl"); err != nil {
		t.Skip("no curl on this machine")
	}
	banner, state, _ := startDev(t, nil)
	var lines []string
	for _, line := range strings.Split(banner, "\n") {
		if strings.HasPrefix(line, "curl ") {
			lines = append(lines, line)
		}
	}
	if len(lines) < 2 || !strings.Contains(banner, "http://"+state.HTTPAddr+"/v1/me") ||
		!strings.Contains(banner, "http://"+state.HTTPAddr+"/gatehouse.v1.UserService/GetMe") {
		t.Fatalf("the banner lacks the Connect and REST curl lines:\n%s", banner)
	}
	for _, line := range lines {
		cmd := exec.Command("bash", "-c", line+` -sS -w '\n%{http_code}'`)
		cmd.Env = append(os.Environ(), "TOKEN="+bannerToken(t, banner))
		out, err := cmd.Output()
		if err != nil {
			t.Fatalf("%s: %v", line, err)
		}
		body, code, _ := strings.Cut(strings.TrimSpace(string(out)), "\n")
		if code != "200" {
			t.Errorf("%s: HTTP %s %s", line, code, body)
		}
		if strings.Contains(line, "/me") || strings.Contains(line, "GetMe") {
			if !strings.Contains(body, `"user_dev"`) {
				t.Errorf("%s: %s", line, body)
			}
		}
	}
}

// azp reads a JWT's azp claim.
func azp(t *testing.T, token string) string {
	t.Helper()
	parts := strings.Split(token, ".")
	if len(parts) != 3 {
		t.Fatalf("not a JWT: %q", token)
	}
	b, err := base64.RawURLEncoding.DecodeString(parts[1])
	if err != nil {
		t.Fatal(err)
	}
	var claims struct{ AZP string }
	if err := json.Unmarshal(b, &claims); err != nil {
		t.Fatal(err)
	}
	return claims.AZP
}

// TestDevTokenEndpoint: pages on the allowed origins get tokens from POST
// /dev/token, carrying their origin as azp, which the dev server then
// accepts; other origins and other host names get none.
func TestDevTokenEndpoint(t *testing.T) {
	const page, other = "http://localhost:5173", "http://localhost:3000"
	banner, state, dir := startDev(t, map[string]string{"CLERK_AUTHORIZED_PARTIES": page + ", " + other + "/"})
	if !strings.Contains(banner, "allow "+page+", "+other) {
		t.Errorf("the banner does not name the origins:\n%s", banner)
	}
	if got := azp(t, bannerToken(t, banner)); got != page {
		t.Errorf("the banner's token has azp %q, want %q", got, page)
	}
	base := "http://" + state.HTTPAddr
	post := func(host, origin, method string) (*http.Response, string) {
		t.Helper()
		req, _ := http.NewRequest(method, base+"/dev/token", nil)
		if host != "" {
			req.Host = host
		}
		if origin != "" {
			req.Header.Set("Origin", origin)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp, string(b)
	}
	getMe := func(token string) int {
		t.Helper()
		req, _ := http.NewRequest("GET", base+"/v1/me", nil)
		req.Header.Set("Authorization", "Bearer "+token)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}

	for _, origin := range []string{page, other, ""} {
		resp, body := post("", origin, "POST")
		var got struct{ Token string }
		if resp.StatusCode != 200 || json.Unmarshal([]byte(body), &got) != nil || got.Token == "" {
			t.Fatalf("POST /dev/token from %q: %d %s", origin, resp.StatusCode, body)
		}
		want := origin
		if origin == "" {
			want = page
		}
		if a := azp(t, got.Token); a != want {
			t.Errorf("from %q: azp %q, want %q", origin, a, want)
		}
		if origin != "" && resp.Header.Get("Access-Control-Allow-Origin") != origin {
			t.Errorf("from %q: no CORS header: %v", origin, resp.Header)
		}
		if resp.Header.Get("Cache-Control") != "no-store" {
			t.Errorf("from %q: Cache-Control %q", origin, resp.Header.Get("Cache-Control"))
		}
		if code := getMe(got.Token); code != 200 {
			t.Errorf("GET /v1/me with the token for %q: %d", origin, code)
		}
	}
	for _, tt := range []struct{ name, host, origin, method string }{
		{"another origin", "", "http://evil.example", "POST"},
		{"a rebound host name", "evil.example:" + state.HTTPAddr[strings.LastIndex(state.HTTPAddr, ":")+1:], page, "POST"},
	} {
		resp, body := post(tt.host, tt.origin, tt.method)
		if resp.StatusCode != http.StatusForbidden || strings.Contains(body, "token") && strings.Contains(body, "ey") {
			t.Errorf("%s: %d %s, want 403 and no token", tt.name, resp.StatusCode, body)
		}
		if resp.Header.Get("Access-Control-Allow-Origin") == "http://evil.example" {
			t.Errorf("%s: CORS allows it", tt.name)
		}
	}
	if resp, _ := post("", page, "GET"); resp.StatusCode != http.StatusMethodNotAllowed {
		t.Errorf("GET /dev/token: %d, want 405", resp.StatusCode)
	}

	// gatehouse token mints for the running server's first origin.
	tok, err := run(t, "token", "--dir", dir)
	if err != nil {
		t.Fatal(err)
	}
	if a := azp(t, strings.TrimSpace(tok)); a != page {
		t.Errorf("gatehouse token: azp %q, want %q", a, page)
	}
	if code := getMe(strings.TrimSpace(tok)); code != 200 {
		t.Errorf("GET /v1/me with gatehouse token's token: %d", code)
	}
}

// TestDevWithNoOriginListed: a CLERK_AUTHORIZED_PARTIES of separators only
// names no origin, so dev allows its default one.
func TestDevWithNoOriginListed(t *testing.T) {
	banner, _, _ := startDev(t, map[string]string{"CLERK_AUTHORIZED_PARTIES": " , "})
	if got := azp(t, bannerToken(t, banner)); got != "http://localhost:3000" {
		t.Errorf("the banner's token has azp %q, want the default origin", got)
	}
}

func TestDevRefusesBadOrigins(t *testing.T) {
	env := map[string]string{"CLERK_AUTHORIZED_PARTIES": "not an origin"}
	err := cli.Run(context.Background(), []string{"dev", "--dir", t.TempDir(), "--grpc", "127.0.0.1:0", "--http", "127.0.0.1:0"},
		func(k string) string { return env[k] }, io.Discard, io.Discard)
	if err == nil || !strings.Contains(err.Error(), "CLERK_AUTHORIZED_PARTIES") {
		t.Fatalf("dev with a bad origin: %v", err)
	}
}

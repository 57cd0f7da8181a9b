// Package devstate is how the local tools find a running `gatehouse dev`:
// the layout of the dev directory, and dev.json, the state file the dev
// server writes there while it runs. `gatehouse token --machine`,
// `gatehouse webhook send` and gatehouse-bench read it.
package devstate

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
)

// Dir is the default dev directory. It holds what `gatehouse dev` keeps
// between runs — the emulator's signing key and the SQLite database — and,
// while it runs, the state file.
const Dir = ".gatehouse"

// State is dev.json: where the running dev server listens and what its
// Clerk emulator uses.
type State struct {
	GRPCAddr      string `json:"grpc_addr"`
	HTTPAddr      string `json:"http_addr"`
	EmulatorURL   string `json:"emulator_url"`
	SecretKey     string `json:"secret_key"`
	WebhookSecret string `json:"webhook_secret"`
	Issuer        string `json:"issuer"`
	// AuthorizedParties are the browser origins the dev server allows
	// (CORS) and checks azp against; tokens minted for it carry the first.
	AuthorizedParties []string `json:"authorized_parties,omitempty"`
}

// ErrNotRunning is Read's error when no `gatehouse dev` runs in the
// directory.
var ErrNotRunning = errors.New(`no running "gatehouse dev" found here (start it with: go run ./cmd/gatehouse dev)`)

// Path is the state file in dir.
func Path(dir string) string { return filepath.Join(dir, "dev.json") }

// KeyPath is the Clerk emulator's signing key in dir: `gatehouse dev`
// creates it, and the tools sign session tokens with it.
func KeyPath(dir string) string { return filepath.Join(dir, "emulator-key.pem") }

// DatabasePath is the dev server's SQLite database in dir, used unless
// DATABASE_URL names another.
func DatabasePath(dir string) string { return filepath.Join(dir, "gatehouse.db") }

// Read reads the state of the `gatehouse dev` running in dir;
// ErrNotRunning when there is none.
func Read(dir string) (*State, error) {
	b, err := os.ReadFile(Path(dir))
	if errors.Is(err, os.ErrNotExist) {
		return nil, ErrNotRunning
	}
	if err != nil {
		return nil, err
	}
	var s State
	if err := json.Unmarshal(b, &s); err != nil {
		return nil, fmt.Errorf("%s/dev.json: %w", dir, err)
	}
	return &s, nil
}

// Write writes s as the state file in dir, readable by its owner only: it
// holds the emulator's secrets.
func Write(dir string, s State) error {
	b, err := json.MarshalIndent(s, "", "  ")
	if err != nil {
		return err
	}
	return os.WriteFile(Path(dir), append(b, '\n'), 0o600)
}

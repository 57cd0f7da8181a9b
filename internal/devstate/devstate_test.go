package devstate_test

import (
	"errors"
	"os"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/gatehouse-dev/gatehouse/internal/devstate"
)

func TestWriteThenRead(t *testing.T) {
	dir := t.TempDir()
	if _, err := devstate.Read(dir); !errors.Is(err, devstate.ErrNotRunning) {
		t.Fatalf("Read with no dev.json: %v, want ErrNotRunning", err)
	}
	want := devstate.State{
		GRPCAddr: "127.0.0.1:50051", HTTPAddr: "127.0.0.1:8080", EmulatorURL: "http://127.0.0.1:4000",
		SecretKey: "sk_test_x", WebhookSecret: "whsec_x", Issuer: "https://clerk.test",
	}
	if err := devstate.Write(dir, want); err != nil {
		t.Fatal(err)
	}
	got, err := devstate.Read(dir)
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(want, *got); diff != "" {
		t.Errorf("Read after Write (-want +got):\n%s", diff)
	}
	// It holds the emulator's secrets.
	fi, err := os.Stat(devstate.Path(dir))
	if err != nil {
		t.Fatal(err)
	}
	if perm := fi.Mode().Perm(); perm != 0o600 {
		t.Errorf("dev.json has mode %v, want 0600", perm)
	}
}

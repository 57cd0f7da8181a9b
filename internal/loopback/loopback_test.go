package loopback

import "testing"

func TestIsHost(t *testing.T) {
	tests := []struct {
		host string
		want bool
	}{
		{"localhost", true},
		{"127.0.0.1", true},
		{"127.1.2.3", true},
		{"::1", true},
		{"::ffff:127.0.0.1", true},
		{"[::1]", false}, // brackets belong to host:port, not to the host
		{"0.0.0.0", false},
		{"::", false},
		{"10.0.0.1", false},
		{"localhost.example.com", false},
		{"example.com", false},
		{"", false},
	}
	for _, tt := range tests {
		if got := IsHost(tt.host); got != tt.want {
			t.Errorf("IsHost(%q) = %v, want %v", tt.host, got, tt.want)
		}
	}
}

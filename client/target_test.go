package client

import "testing"

func TestIsLocal(t *testing.T) {
	tests := []struct {
		target string
		want   bool
	}{
		{"127.0.0.1:50051", true},
		{"127.1.2.3:50051", true},
		{"[::1]:50051", true},
		{"localhost:50051", true},
		{"LOCALHOST:50051", true},
		{"localhost", true},
		{"dns:///localhost:50051", true},
		{"dns://8.8.8.8/127.0.0.1:50051", true},
		{"passthrough:///127.0.0.1:50051", true},
		{"unix:///run/gatehouse.sock", true},
		{"unix:gatehouse.sock", true},
		{"gatehouse.internal:443", false},
		{"dns:///gatehouse.internal:443", false},
		{"10.0.0.5:50051", false},
		{"0.0.0.0:50051", false},
		{"localhost.example.com:443", false},
		{"[::]:50051", false},
		{"", false},
	}
	for _, tt := range tests {
		if got := isLocal(tt.target); got != tt.want {
			t.Errorf("isLocal(%q) = %v, want %v", tt.target, got, tt.want)
		}
	}
}

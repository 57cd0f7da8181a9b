package store

import "testing"

func TestParseURL(t *testing.T) {
	tests := []struct {
		in, driver, dsn string
	}{
		{"", "sqlite", "file:gatehouse.db?"},
		{"data/g.db", "sqlite", "file:data/g.db?"},
		{"postgres://u@h:5432/db?sslmode=disable", "postgres", "postgres://u@h:5432/db?binary_parameters=yes&sslmode=disable"},
		{"postgresql://u@h/db?binary_parameters=no", "postgres", "postgresql://u@h/db?binary_parameters=no"},
	}
	for _, tt := range tests {
		driver, dsn, _, err := parseURL(tt.in)
		if err != nil {
			t.Errorf("parseURL(%q): %v", tt.in, err)
			continue
		}
		if driver != tt.driver || len(dsn) < len(tt.dsn) || dsn[:len(tt.dsn)] != tt.dsn {
			t.Errorf("parseURL(%q) = %s %q; want %s %q…", tt.in, driver, dsn, tt.driver, tt.dsn)
		}
	}
	for _, bad := range []string{"mysql://x", "sqlite:"} {
		if _, _, _, err := parseURL(bad); err == nil {
			t.Errorf("parseURL(%q) succeeded", bad)
		}
	}
}

// Package loopback says whether a host is this machine's loopback
// interface: the dev server listens only there, the load tools aim only
// there, and the Go client sends a token without TLS only there.
package loopback

import "net"

// IsHost reports whether host — a host name or an IP address, without a
// port or brackets — is "localhost" or a loopback address (127.0.0.0/8,
// ::1).
func IsHost(host string) bool {
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

package auth

import (
	"context"
	"net"
	"net/netip"
	"strings"
	"testing"

	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/peer"
)

// TestCallerAddress: the peer's address, unless the peer is a trusted proxy:
// then the rightmost address of x-forwarded-for that is not a trusted
// proxy, so that what a client writes into the header itself (further
// left) is never believed.
func TestCallerAddress(t *testing.T) {
	proxies := []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8"), netip.MustParsePrefix("2001:db8:ffff::/48")}
	tests := []struct {
		name    string
		peer    net.Addr
		xff     []string
		trusted []netip.Prefix
		want    string
	}{
		{"no proxies trusted", tcp("10.0.0.1:5000"), []string{"203.0.113.9"}, nil, "10.0.0.1"},
		{"a peer that is not a trusted proxy", tcp("198.51.100.4:5000"), []string{"203.0.113.9"}, proxies, "198.51.100.4"},
		{"a trusted proxy, one hop", tcp("10.0.0.1:5000"), []string{"203.0.113.9"}, proxies, "203.0.113.9"},
		{"the client's own entries are not believed", tcp("10.0.0.1:5000"), []string{"192.0.2.66, 203.0.113.9"}, proxies, "203.0.113.9"},
		{"through two trusted proxies", tcp("10.0.0.1:5000"), []string{"192.0.2.66, 203.0.113.9, 10.2.3.4"}, proxies, "203.0.113.9"},
		{"hops in several values", tcp("10.0.0.1:5000"), []string{"192.0.2.66", "203.0.113.9", "10.2.3.4"}, proxies, "203.0.113.9"},
		{"with ports", tcp("10.0.0.1:5000"), []string{"203.0.113.9:4711"}, proxies, "203.0.113.9"},
		{"IPv6: its /64", tcp("[2001:db8:ffff::1]:5000"), []string{"[2001:db8:1::7]:443"}, proxies, "2001:db8:1::/64"},
		{"IPv6 peer: its /64", tcp("[2001:db8:1:2:3:4:5:6]:5000"), nil, nil, "2001:db8:1:2::/64"},
		{"IPv4 in IPv6", tcp("[::ffff:10.0.0.1]:5000"), []string{"::ffff:203.0.113.9"}, proxies, "203.0.113.9"},
		{"no header: the proxy", tcp("10.0.0.1:5000"), nil, proxies, "10.0.0.1"},
		{"only proxies: the proxy", tcp("10.0.0.1:5000"), []string{"10.9.9.9"}, proxies, "10.0.0.1"},
		{"not an address: the proxy", tcp("10.0.0.1:5000"), []string{"203.0.113.9, unknown"}, proxies, "10.0.0.1"},
		{"empty hop: the proxy", tcp("10.0.0.1:5000"), []string{"203.0.113.9,"}, proxies, "10.0.0.1"},
		{"bracketed IPv6 without a port", tcp("10.0.0.1:5000"), []string{"[2001:db8:1::7]"}, proxies, "2001:db8:1::/64"},
		{"a zone is dropped", tcp("10.0.0.1:5000"), []string{"fe80::1%eth0"}, proxies, "fe80::/64"},
		{"a zoned proxy is still trusted", zoned("fe80::1", "eth0"), []string{"203.0.113.9"},
			[]netip.Prefix{netip.MustParsePrefix("fe80::/64")}, "203.0.113.9"},
		{"16 trusted hops", tcp("10.0.0.1:5000"), []string{"203.0.113.9" + strings.Repeat(", 10.0.0.2", 15)}, proxies, "203.0.113.9"},
		{"more than 16 hops: the proxy", tcp("10.0.0.1:5000"), []string{"203.0.113.9" + strings.Repeat(", 10.0.0.2", 16)}, proxies, "10.0.0.1"},
		{"a huge header: the proxy", tcp("10.0.0.1:5000"), []string{strings.Repeat(",", 60_000)}, proxies, "10.0.0.1"},
		{"no peer", nil, []string{"203.0.113.9"}, proxies, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ctx := context.Background()
			if tt.peer != nil {
				ctx = peer.NewContext(ctx, &peer.Peer{Addr: tt.peer})
			}
			if tt.xff != nil {
				ctx = metadata.NewIncomingContext(ctx, metadata.MD{ForwardedForKey: tt.xff})
			}
			if got := callerAddress(ctx, tt.trusted); got != tt.want {
				t.Errorf("callerAddress = %q, want %q", got, tt.want)
			}
		})
	}
}

func zoned(ip, zone string) net.Addr {
	return &net.TCPAddr{IP: net.ParseIP(ip), Port: 5000, Zone: zone}
}

func tcp(s string) net.Addr {
	return net.TCPAddrFromAddrPort(netip.MustParseAddrPort(s))
}

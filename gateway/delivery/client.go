package delivery

import (
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"syscall"
	"time"
)

// errBlockedAddress marks a dial refused by the private-network guard.
var errBlockedAddress = errors.New("address not allowed")

type blockedError struct{ addr netip.Addr }

func (e *blockedError) Error() string {
	return fmt.Sprintf("refused to connect to %s: a loopback, private, link-local or metadata address (set delivery.allow_private_networks: true to allow)", e.addr)
}

func (e *blockedError) Unwrap() error { return errBlockedAddress }

// blockedPrefixes are ranges no public webhook receiver lives in.
var blockedPrefixes = func() []netip.Prefix {
	var ps []netip.Prefix
	for _, s := range []string{
		"0.0.0.0/8",          // "this" network
		"10.0.0.0/8",         // RFC 1918
		"100.64.0.0/10",      // carrier-grade NAT
		"127.0.0.0/8",        // loopback
		"169.254.0.0/16",     // link-local, cloud metadata (169.254.169.254)
		"172.16.0.0/12",      // RFC 1918
		"192.0.0.0/24",       // IETF protocol assignments
		"192.168.0.0/16",     // RFC 1918
		"198.18.0.0/15",      // benchmarking
		"224.0.0.0/4",        // multicast
		"240.0.0.0/4",        // reserved, broadcast
		"::/128",             // unspecified
		"::1/128",            // loopback
		"64:ff9b::/96",       // NAT64 can reach IPv4 private space
		"fc00::/7",           // unique local (fd00:ec2::254 metadata too)
		"fe80::/10",          // link-local
		"ff00::/8",           // multicast
		"2001:db8::/32",      // documentation
		"100::/64",           // discard
		"::ffff:0:0/96",      // IPv4-mapped (checked after unmapping too)
		"2002::/16",          // 6to4 can embed private IPv4
		"fec0::/10",          // deprecated site-local
		"192.88.99.0/24",     // 6to4 relay anycast
		"198.51.100.0/24",    // documentation
		"203.0.113.0/24",     // documentation
		"192.0.2.0/24",       // documentation
		"255.255.255.255/32", // broadcast
	} {
		ps = append(ps, netip.MustParsePrefix(s))
	}
	return ps
}()

// Blocked reports whether a delivery may not connect to addr when private
// networks are not allowed.
func Blocked(addr netip.Addr) bool {
	addr = addr.Unmap()
	if !addr.IsValid() || addr.IsUnspecified() || addr.IsLoopback() || addr.IsPrivate() ||
		addr.IsLinkLocalUnicast() || addr.IsLinkLocalMulticast() || addr.IsMulticast() {
		return true
	}
	for _, p := range blockedPrefixes {
		if p.Contains(addr) {
			return true
		}
	}
	return false
}

// guard is a net.Dialer Control hook: it runs on the resolved address of
// every connection, so DNS answers (rebinding included) cannot smuggle a
// private address past it.
func guard(_, address string, _ syscall.RawConn) error {
	ap, err := netip.ParseAddrPort(address)
	if err != nil {
		return &blockedError{}
	}
	if Blocked(ap.Addr()) {
		return &blockedError{addr: ap.Addr().Unmap()}
	}
	return nil
}

// MaxResponseBytes caps how much of a receiver's answer is read.
const MaxResponseBytes = 64 << 10

// NewClient returns the HTTP client deliveries use: keep-alive pools per
// destination host, no redirects followed, no proxy from the environment,
// and, unless allowPrivate, connections to private addresses refused at
// dial time. Per-attempt timeouts come from the request's context.
func NewClient(allowPrivate bool) *http.Client {
	dialer := &net.Dialer{Timeout: 10 * time.Second, KeepAlive: 30 * time.Second}
	if !allowPrivate {
		dialer.Control = guard
	}
	tr := &http.Transport{
		DialContext:           dialer.DialContext,
		ForceAttemptHTTP2:     true,
		MaxIdleConns:          1024,
		MaxIdleConnsPerHost:   64,
		IdleConnTimeout:       90 * time.Second,
		TLSHandshakeTimeout:   10 * time.Second,
		ExpectContinueTimeout: time.Second,
		ResponseHeaderTimeout: 0, // the request context bounds the attempt
	}
	return &http.Client{
		Transport: tr,
		CheckRedirect: func(*http.Request, []*http.Request) error {
			return http.ErrUseLastResponse
		},
	}
}

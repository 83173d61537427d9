package carrier

import (
	"strings"
	"testing"
	"time"
)

// TestDefaultPortVariants: URL-signed carriers accept a signature made for
// the URL with its scheme's default port written out when the gateway
// rebuilt it without (and the other way round), and one made without a
// port when the gateway rebuilt it with one (a proxy's X-Forwarded-Port),
// as Twilio's SDKs do; a signature for another port or host is refused.
func TestDefaultPortVariants(t *testing.T) {
	for _, cfg := range []Config{twilioCfg, plivoCfg, messageBirdCfg, birdCfg} {
		for _, c := range []struct {
			signed, seen string
			ok           bool
		}{
			{"https://hooks.example.com:443/hooks/a/b", "https://hooks.example.com/hooks/a/b", true},
			{"https://hooks.example.com/hooks/a/b", "https://hooks.example.com:443/hooks/a/b", true},
			{"http://hooks.example.com:80/hooks/a/b?x=1", "http://hooks.example.com/hooks/a/b?x=1", true},
			{"https://hooks.example.com:8443/hooks/a/b", "https://hooks.example.com/hooks/a/b", false},
			{"https://hooks.example.com/hooks/a/b", "https://hooks.example.com:8443/hooks/a/b", true},
			{"https://hooks.example.com:9443/hooks/a/b", "https://hooks.example.com:8443/hooks/a/b", false},
			{"https://other.example.com/hooks/a/b", "https://hooks.example.com/hooks/a/b", false},
		} {
			now := time.Now()
			req, err := Simulate(cfg, "inbound", SimMessage{}, c.signed, now)
			if err != nil {
				t.Fatalf("%s: %v", cfg.Carrier, err)
			}
			seen := c.seen // with the query the simulator built (a GET callback's fields)
			if req.URL.RawQuery != "" {
				seen = strings.SplitN(seen, "?", 2)[0] + "?" + req.URL.RawQuery
			}
			_, err = mustNew(t, cfg).Verify(fromHTTP(t, req, seen, now))
			ok := c.ok
			if (err == nil) != ok {
				t.Errorf("%s: signed for %s, seen as %s: err = %v, want ok = %v", cfg.Carrier, c.signed, seen, err, ok)
			}
		}
	}
}

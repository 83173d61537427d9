package test

import (
	"context"
	"fmt"
	"net/http"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/switchboard-gw/switchboard/gateway/carrier"
	"github.com/switchboard-gw/switchboard/queue/redistest"
)

// TestSpool: with spool: configured, callbacks sent while Redis is down
// are acknowledged from the local journal; the journal survives a kill -9
// of the gateway (Redis still down); once Redis is back every one of them
// is delivered exactly once. (Without a spool such callbacks get 503:
// TestBackbone.)
func TestSpool(t *testing.T) {
	rs := redistest.Start(t, redistest.WithAOF())
	dest := newDestination(t, nil)
	go func() { // drain the channel the helper fills
		for range dest.received {
		}
	}()
	spoolDir := filepath.Join(t.TempDir(), "spool")
	cfg := fmt.Sprintf(`
server: {listen: "127.0.0.1:0", admin_listen: "127.0.0.1:0"}
redis: {url: %q}
spool: {dir: %q, max_bytes: 1048576}
delivery:
  allow_private_networks: true
  timeout: 1s                      # the killed instance's ordered lease lapses sooner
  retry: {initial: 100ms, max: 1s}
tenants:
  acme:
    sources:
      tw: {carrier: twilio, secret: %s}
    destinations:
      app: {url: %q, secret: %s, ordered: true}
    routes:
      - to: [app]
`, rs.URL(), spoolDir, twilioToken, dest.URL, demoSecret)
	g := startGateway(t, cfg)

	var sids []string
	sendOne := func(g *gatewayProc, text string) {
		t.Helper()
		sid := fmt.Sprintf("SM%032d", len(sids)+1)
		sids = append(sids, sid)
		m := carrier.SimMessage{From: "+15555550100", To: "+15555550199", Text: text, MessageID: sid}
		if code := send(t, g.hookURL("acme", "tw"), "inbound", m, nil); code != http.StatusOK {
			t.Fatalf("callback %s (%s) answered %d, want 200\n%s", sid, text, code, g.log.String())
		}
	}
	deliveredOnce := func() map[string]int {
		n := map[string]int{}
		for _, dv := range dest.deliveries() {
			n[event(t, dv).Data.MessageID]++
		}
		return n
	}

	sendOne(g, "before the outage")
	waitFor(t, 10*time.Second, "the first delivery", func() bool { return len(dest.deliveries()) == 1 })

	rs.Stop()
	waitFor(t, 10*time.Second, "/readyz to report Redis down", func() bool { return readyz(g) == http.StatusServiceUnavailable })
	const n = 8
	for i := range n {
		sendOne(g, fmt.Sprintf("spooled %d", i))
	}
	if !strings.Contains(g.log.String(), "Redis unreachable: spooled callback") {
		t.Errorf("no log line for the spooled callbacks:\n%s", g.log.String())
	}

	// A crash while Redis is still down: the journal must survive it.
	g.kill()
	g = startGatewayFile(t, g.configFile)
	if !strings.Contains(g.log.String(), fmt.Sprintf(`"waiting":%d`, n)) {
		t.Errorf("the restarted gateway does not report the %d callbacks waiting in the journal:\n%s", n, g.log.String())
	}
	for i := range n / 2 {
		sendOne(g, fmt.Sprintf("spooled after the restart %d", i))
	}
	if code := readyz(g); code != http.StatusServiceUnavailable {
		t.Errorf("/readyz with Redis down and callbacks spooled = %d, want 503", code)
	}
	if got := len(dest.deliveries()); got != 1 {
		t.Errorf("%d deliveries while Redis is down, want 1 (the one before)", got)
	}

	rs.Start()
	waitFor(t, 30*time.Second, "every callback delivered", func() bool { return len(deliveredOnce()) == len(sids) })
	waitFor(t, 10*time.Second, "the drain's log line", func() bool {
		return strings.Contains(g.log.String(), fmt.Sprintf(`"msg":"spool drained %d callbacks"`, n+n/2))
	})
	// Every job acknowledged (acks delete them): nothing more can come.
	rdb := rs.Client(t)
	waitFor(t, 10*time.Second, "the streams and retry set to empty", func() bool {
		l, err1 := rdb.XLen(context.Background(), "sb:{acme}:d:app").Result()
		r, err2 := rdb.ZCard(context.Background(), "sb:{acme}:retry").Result()
		return err1 == nil && err2 == nil && l == 0 && r == 0
	})
	got := deliveredOnce()
	for _, sid := range sids {
		if got[sid] != 1 {
			t.Errorf("%s delivered %d times, want exactly once", sid, got[sid])
		}
	}
	for _, dv := range dest.deliveries() {
		verify(t, dv)
	}
	// The journal kept the order: the ordered destination gets the
	// callbacks in the order they were acknowledged.
	var order []string
	for _, dv := range dest.deliveries() {
		order = append(order, event(t, dv).Data.MessageID)
	}
	if strings.Join(order, ",") != strings.Join(sids, ",") {
		t.Errorf("delivery order %v, want %v", order, sids)
	}
	if err, _ := g.stop(); err != nil {
		t.Errorf("exit: %v, want 0", err)
	}
}

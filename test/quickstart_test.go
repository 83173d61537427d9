package test

import (
	"fmt"

	"github.com/switchboard-gw/switchboard/queue/redistest"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func freeAddr(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}

// TestQuickStart follows the README's tour: the example config on the
// embedded store, switchboard sink, switchboard simulate.
func TestQuickStart(t *testing.T) {
	src, err := os.ReadFile("../configs/switchboard.example.yaml")
	if err != nil {
		t.Fatal(err)
	}
	sinkAddr := freeAddr(t)
	cfg := strings.NewReplacer(
		`"127.0.0.1:8080"`, `"127.0.0.1:0"`,
		`"127.0.0.1:9090"`, `"127.0.0.1:0"`,
		"http://127.0.0.1:8081/events", "http://"+sinkAddr+"/events",
	).Replace(string(src))
	if !strings.Contains(cfg, sinkAddr) {
		t.Fatal("the example config no longer delivers to the sink on 127.0.0.1:8081")
	}

	sinkOut := newLogBuffer()
	sink := exec.Command(binary, "sink", "--listen", sinkAddr, "--secret", demoSecret)
	sink.Stdout, sink.Stderr = sinkOut, sinkOut
	if err := sink.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = sink.Process.Kill(); _ = sink.Wait() })

	g := startGateway(t, cfg)
	if !strings.Contains(g.log.String(), "NOTHING SURVIVES A RESTART") {
		t.Errorf("the embedded store is not announced plainly in the log:\n%s", g.log.String())
	}
	waitFor(t, 10*time.Second, "the sink to listen", func() bool {
		c, err := net.Dial("tcp", sinkAddr)
		if err == nil {
			c.Close()
		}
		return err == nil
	})

	url := g.hookURL("acme", "twilio-main")
	out, errOut, code := runCLI(t, "simulate", "--url", url, "--carrier", "twilio", "--secret", "demo_twilio_auth_token", "--text", "Hello tour")
	if code != 0 || !strings.Contains(out, "200") || !strings.Contains(out, "<Response/>") {
		t.Fatalf("simulate: exit %d\n%s\n%s", code, out, errOut)
	}
	waitFor(t, 10*time.Second, "the sink to print the event", func() bool {
		return strings.Contains(sinkOut.String(), "Hello tour")
	})
	lines := jsonLines(t, strings.SplitN(sinkOut.String(), "\n", 2)[1])
	var found bool
	for _, l := range lines {
		if l["verified"] == true && strings.HasPrefix(l["webhook_id"].(string), "evt_") {
			found = true
		}
	}
	if !found {
		t.Errorf("sink printed no verified event: %s", sinkOut.String())
	}

	out, _, code = runCLI(t, "simulate", "--url", url, "--carrier", "twilio", "--secret", "wrong", "--text", "forged")
	if code == 0 || !strings.Contains(out, "401") {
		t.Errorf("simulate with a wrong secret: exit %d, %s; want 401", code, out)
	}

	_, errOut, code = runCLI(t, "dlq", "list", "--config", g.configFile, "--tenant", "acme")
	if code != 1 || !strings.Contains(errOut, "embedded store") {
		t.Errorf("dlq list on the embedded store: exit %d, %q; want 1 and an explanation", code, errOut)
	}
	// The tour's last step: the admin API with the example's demo token.
	out, errOut, code = adminCLI(t, g, "demo_admin_token", "dlq", "list", "--tenant", "acme", "--output", "table")
	if code != 0 || !strings.Contains(out, "DESTINATION") {
		t.Errorf("admin dlq list with the example's token: exit %d, %q %q", code, out, errOut)
	}
}

// TestCheck covers switchboard check's two answers.
func TestCheck(t *testing.T) {
	out, errOut, code := runCLI(t, "check", "--config", "../configs/switchboard.example.yaml")
	if code != 0 || !strings.Contains(out, "1 tenants, 1 sources, 1 destinations, 1 routes") {
		t.Errorf("check example: exit %d, %q %q", code, out, errOut)
	}
	bad := filepath.Join(t.TempDir(), "bad.yaml")
	if err := os.WriteFile(bad, []byte("server:\n  listne: x\ntenants:\n  acme:\n    routes:\n      - to: [nowhere]\n    sources:\n      tl: {carrier: telnyx,\n        public_key: not-base64}\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	out, errOut, code = runCLI(t, "check", "--config", bad)
	if code != 1 {
		t.Errorf("check bad: exit %d, want 1", code)
	}
	// Every problem at once: the unknown key and the missing route target.
	// The carrier's own check of a key comes in the same run, at that key.
	for _, want := range []string{bad + ":2: server.listne: unknown key", bad + `:6: tenants.acme.routes[0].to[0]: destination "nowhere"`,
		bad + ":9: tenants.acme.sources.tl.public_key: telnyx: public_key is not base64"} {
		if !strings.Contains(errOut, want) {
			t.Errorf("check bad printed %q, want a line %q", errOut, want)
		}
	}
	if out != "" {
		t.Errorf("check bad printed %q on stdout, want nothing", out)
	}
	for _, cmd := range [][]string{{"serve", "--help"}, {"check", "--help"}, {"dlq", "list", "--help"}, {"dlq", "replay", "--help"}, {"dlq", "purge", "--help"}, {"simulate", "--help"}, {"sink", "--help"}} {
		out, errOut, code := runCLI(t, cmd...)
		if code != 0 || strings.Count(out, "Usage") != 1 || errOut != "" {
			t.Errorf("%v: exit %d, stdout %q, stderr %q; want the usage once, on stdout", cmd, code, out, errOut)
		}
	}
	out, _, code = runCLI(t, "version")
	if code != 0 || !strings.HasPrefix(out, "switchboard ") {
		t.Errorf("version: exit %d, %q", code, out)
	}
}

// TestSimulateStatusDirection: a simulated status callback is from our
// number to the customer, the other way round from an inbound message.
func TestSimulateStatusDirection(t *testing.T) {
	rs := redistest.Start(t)
	dest := newDestination(t, nil)
	g := startGateway(t, fmt.Sprintf(`
server: {listen: "127.0.0.1:0", admin_listen: "127.0.0.1:0"}
redis: {url: %q}
delivery: {allow_private_networks: true}
tenants:
  acme:
    sources:
      tw: {carrier: twilio, secret: %s}
    destinations:
      app: {url: %q, secret: %s}
    routes:
      - to: [app]
`, rs.URL(), twilioToken, dest.URL, demoSecret))
	for _, kind := range []string{"inbound", "status"} {
		if _, errOut, code := runCLI(t, "simulate", "--url", g.hookURL("acme", "tw"), "--carrier", "twilio", "--secret", twilioToken, "--kind", kind); code != 0 {
			t.Fatalf("simulate %s: exit %d: %s", kind, code, errOut)
		}
		e := event(t, dest.next(t, 10*time.Second))
		from, to := "+15555550100", "+15555550199"
		if kind == "status" {
			from, to = to, from
		}
		if e.Data.From != from || e.Data.To != to {
			t.Errorf("%s: from %s to %s, want from %s to %s", kind, e.Data.From, e.Data.To, from, to)
		}
	}
}

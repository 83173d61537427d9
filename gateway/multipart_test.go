package gateway

import (
	"context"
	"encoding/json"
	"fmt"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	switchboard "github.com/switchboard-gw/switchboard"
	"github.com/switchboard-gw/switchboard/gateway/carrier"
	"github.com/switchboard-gw/switchboard/queue/redistest"
)

var vonageSMS = carrier.Config{Carrier: "vonage-sms", Secret: "vonage-sig-secret", SignatureMethod: "sha256"}

type partsFixture struct {
	g       *Gateway
	url     string
	rdb     *redis.Client
	log     *syncWriter
	cfgText string
}

// multipartGateway serves a tenant with a vonage-sms source, a normalized
// destination app and a raw destination legacy, both routed every event.
func multipartGateway(t *testing.T, window string) *partsFixture {
	t.Helper()
	rs := redistest.Start(t)
	text := `
redis: {url: ` + rs.URL() + `}
tenants:
  acme:
    sources:
      vn:
        carrier: vonage-sms
        secret: vonage-sig-secret
        signature_method: sha256` + window + `
    destinations:
      app: {url: "https://app.example.com/in", secret: whsec_c3dpdGNoYm9hcmQtZGVtby1zZWNyZXQta2V5LTAwMDE=}
      legacy: {url: "https://legacy.example.com/in", secret: whsec_c3dpdGNoYm9hcmQtZGVtby1zZWNyZXQta2V5LTAwMDE=, format: raw}
    routes:
      - to: [app, legacy]
`
	g, srv, rdb, logs := serveGateway(t, rs, text)
	return &partsFixture{g: g, url: srv.URL + "/hooks/acme/vn", rdb: rdb, log: logs, cfgText: text}
}

// send posts part n of total of a message with reference ref; the part's
// carrier message id is msg-n.
func (f *partsFixture) send(t *testing.T, ref, msg string, n, total int, text string) {
	t.Helper()
	sendSimulated(t, vonageSMS, "inbound", carrier.SimMessage{
		Text: text, MessageID: msg + "-" + strconv.Itoa(n), Part: n, Parts: total, PartRef: ref,
	}, f.url)
}

// events returns the events queued for dest.
func (f *partsFixture) events(t *testing.T, dest string) []switchboard.Event {
	t.Helper()
	msgs, err := f.rdb.XRange(context.Background(), "sb:{acme}:d:"+dest, "-", "+").Result()
	if err != nil {
		t.Fatal(err)
	}
	var out []switchboard.Event
	for _, m := range msgs {
		var e switchboard.Event
		if err := json.Unmarshal([]byte(m.Values["b"].(string)), &e); err != nil {
			t.Fatal(err)
		}
		out = append(out, e)
	}
	return out
}

// The parts of a message, in any order and with a part sent twice, become
// one event for a normalized destination, when the last part comes; a raw
// destination gets every callback as the carrier sent it.
func TestMultipartJoined(t *testing.T) {
	f := multipartGateway(t, "")
	f.send(t, "A1", "A1", 3, 3, " and three")
	f.send(t, "A1", "A1", 1, 3, "One,")
	if got := f.events(t, "app"); len(got) != 0 {
		t.Fatalf("app got %d events before the message was whole, want 0", len(got))
	}
	f.send(t, "A1", "A1", 1, 3, "One,") // the carrier sends part 1 again
	f.send(t, "A1", "A1", 2, 3, " two")

	got := f.events(t, "app")
	if len(got) != 1 {
		t.Fatalf("app got %d events, want 1 (the joined message)", len(got))
	}
	d := got[0].Data
	if d.Text != "One, two and three" || d.Segments != 3 || d.MessageID != "A1-1" || got[0].Type != switchboard.TypeReceived {
		t.Errorf("joined event = %+v, want text %q, segments 3, message_id A1-1", d, "One, two and three")
	}
	if d.From != "+15555550100" || d.To != "+15555550199" || got[0].Source != "vn" || got[0].Tenant != "acme" {
		t.Errorf("joined event lost its numbers or origin: %+v", got[0])
	}
	if n := len(f.events(t, "legacy")); n != 3 {
		t.Errorf("raw destination got %d callbacks, want 3 (one per part; the resent part is a duplicate)", n)
	}

	// A part sent again after the message was delivered is a duplicate,
	// not the start of a new message.
	f.send(t, "A1", "A1", 2, 3, " two")
	if n := len(f.events(t, "app")); n != 1 {
		t.Errorf("app got %d events after a late resend, want 1", n)
	}
	if n, _ := f.rdb.ZCard(context.Background(), "sb:{acme}:mp").Result(); n != 0 {
		t.Errorf("%d messages still wait for parts, want 0", n)
	}

	// Another message from the same sender under the same reference (a
	// small number senders reuse) is another message, and the carrier's
	// late resend of the first message's part is still a duplicate.
	f.send(t, "A1", "B2", 1, 2, "Second ")
	f.send(t, "A1", "A1", 3, 3, " and three")
	f.send(t, "A1", "B2", 2, 2, "message")
	if got := f.events(t, "app"); len(got) != 2 || got[1].Data.Text != "Second message" {
		t.Errorf("app events = %d, want the second message joined", len(got))
	}
}

// A message whose parts do not all come within reassembly_window is
// delivered with the parts that came; a part that comes later still
// arrives, as an event of its own.
func TestMultipartSweptWhenIncomplete(t *testing.T) {
	f := multipartGateway(t, "\n        reassembly_window: 1s")
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go f.g.sweepParts(ctx)

	f.send(t, "C3", "C3", 1, 3, "first ")
	f.send(t, "C3", "C3", 3, 3, "third")
	got := waitEvents(t, f, "app", 1)
	if d := got[0].Data; d.Text != "first third" || d.Segments != 3 {
		t.Errorf("swept event = %+v, want text %q and segments 3", d, "first third")
	}
	// The sweeper logs once the event is stored and the parts finished.
	awaitCond(t, "the log to say which parts came and which are missing", func() bool {
		return strings.Contains(f.log.String(), `"parts":"1,3","total":3`) && strings.Contains(f.log.String(), `"missing":"2"`)
	})

	f.send(t, "C3", "C3", 2, 3, "second ") // late: the rest was delivered
	got = waitEvents(t, f, "app", 2)
	if got[1].Data.Text != "second " {
		t.Errorf("late part's event text = %q, want %q", got[1].Data.Text, "second ")
	}
	if n := len(f.events(t, "legacy")); n != 3 {
		t.Errorf("raw destination got %d callbacks, want 3", n)
	}
}

// With reassembly_window: 0s every part is an event of its own.
func TestMultipartOff(t *testing.T) {
	f := multipartGateway(t, "\n        reassembly_window: 0s")
	f.send(t, "D4", "D4", 1, 2, "one ")
	f.send(t, "D4", "D4", 2, 2, "two")
	got := f.events(t, "app")
	if len(got) != 2 || got[0].Data.Text != "one " || got[0].Data.Segments != 2 {
		t.Errorf("app events = %+v, want the two parts as they came", got)
	}
}

// waitEvents waits until dest has n events and returns them.
func waitEvents(t *testing.T, f *partsFixture, dest string, n int) []switchboard.Event {
	t.Helper()
	var got []switchboard.Event
	awaitCond(t, fmt.Sprintf("%d events for %s", n, dest), func() bool {
		got = f.events(t, dest)
		return len(got) >= n
	})
	if len(got) > n {
		t.Fatalf("%s has %d events, want %d", dest, len(got), n)
	}
	return got
}

// awaitCond waits up to 10 s for cond, checking every 20 ms.
func awaitCond(t *testing.T, what string, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(10 * time.Second); !cond(); time.Sleep(20 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("waited 10s for %s", what)
		}
	}
}

package carrier

import (
	"bufio"
	"bytes"
	"encoding/json"
	"flag"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	switchboard "github.com/switchboard-gw/switchboard"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata/")

// Times of the fixtures: inbound ones are signed at 1736937000, the others
// at 1736937065. Requests "arrive" 30 s later.
var (
	inboundNow = time.Unix(1736937030, 0)
	statusNow  = time.Unix(1736937095, 0)
)

// loadFixture reads testdata/<dir>/<kind>.headers.txt (request line,
// headers, "#" comments) and the body beside it (<kind>.json, .form or, for
// a POST, .query) into a Request arriving at the fixture's time.
func loadFixture(t testing.TB, dir, kind string) *Request {
	t.Helper()
	base := filepath.Join("testdata", dir, kind)
	head, err := os.ReadFile(base + ".headers.txt")
	if err != nil {
		t.Fatal(err)
	}
	sc := bufio.NewScanner(bytes.NewReader(head))
	sc.Buffer(nil, 1<<20)
	sc.Scan()
	method, rest, _ := strings.Cut(sc.Text(), " ")
	uri, _, _ := strings.Cut(rest, " ")
	r := &Request{Method: method, Header: http.Header{}}
	for sc.Scan() {
		line := sc.Text()
		if line == "" {
			break
		}
		k, v, _ := strings.Cut(line, ":")
		r.Header.Add(k, strings.TrimSpace(v))
	}
	r.URL = "https://" + r.Header.Get("Host") + uri
	r.Header.Del("Host")
	_, r.RawQuery, _ = strings.Cut(uri, "?")
	if method != http.MethodGet {
		for _, ext := range []string{".json", ".form", ".query"} {
			if b, err := os.ReadFile(base + ext); err == nil {
				r.Body = b
				break
			}
		}
	}
	r.Now = statusNow
	if strings.HasPrefix(kind, "inbound") {
		r.Now = inboundNow
	}
	return r
}

// fixtureKinds lists the <kind>s of testdata/<dir>.
func fixtureKinds(t testing.TB, dir string) []string {
	t.Helper()
	files, err := filepath.Glob(filepath.Join("testdata", dir, "*.headers.txt"))
	if err != nil || len(files) == 0 {
		t.Fatalf("no fixtures in testdata/%s", dir)
	}
	var kinds []string
	for _, f := range files {
		kinds = append(kinds, strings.TrimSuffix(filepath.Base(f), ".headers.txt"))
	}
	return kinds
}

func mustNew(t testing.TB, cfg Config) Carrier {
	t.Helper()
	c, err := New(cfg)
	if err != nil {
		t.Fatalf("New(%s): %v", cfg.Carrier, err)
	}
	return c
}

// golden is what a golden file holds for one captured request.
type golden struct {
	Proof  goldenProof         `json:"proof"`
	Events []switchboard.Event `json:"events"`
	Reply  goldenReply         `json:"reply"`
}

type goldenProof struct {
	Nonce string `json:"nonce,omitempty"`
	TTL   string `json:"ttl,omitempty"`
}

type goldenReply struct {
	Status      int    `json:"status"`
	ContentType string `json:"content_type,omitempty"`
	Body        string `json:"body,omitempty"`
}

// testGolden runs every fixture of testdata/<dir> through Verify, Parse and
// Reply and compares the outcome with testdata/<dir>/<kind>.golden.json,
// rewritten by -update. The gateway's fields get fixed values.
func testGolden(t *testing.T, dir string, cfg Config) {
	c := mustNew(t, cfg)
	for _, kind := range fixtureKinds(t, dir) {
		t.Run(kind, func(t *testing.T) {
			r := loadFixture(t, dir, kind)
			proof, err := c.Verify(r)
			if err != nil {
				t.Fatalf("Verify: %v", err)
			}
			events, err := c.Parse(r)
			if err != nil {
				t.Fatalf("Parse: %v", err)
			}
			for i := range events {
				events[i].ID = "evt_golden"
				events[i].Timestamp = switchboard.NewTime(r.Now)
				events[i].Tenant = "acme"
				events[i].Source = dir + "-main"
				events[i].Carrier = cfg.Carrier
			}
			reply := c.Reply(r, events)
			g := golden{Events: events, Reply: goldenReply{reply.Status, reply.ContentType, string(reply.Body)}}
			if proof.Nonce != "" || proof.TTL != 0 {
				g.Proof = goldenProof{proof.Nonce, proof.TTL.String()}
			}
			var buf bytes.Buffer
			enc := json.NewEncoder(&buf)
			enc.SetEscapeHTML(false)
			enc.SetIndent("", "  ")
			if err := enc.Encode(g); err != nil {
				t.Fatal(err)
			}
			got := buf.Bytes()
			path := filepath.Join("testdata", dir, kind+".golden.json")
			if *update {
				if err := os.WriteFile(path, got, 0o644); err != nil {
					t.Fatal(err)
				}
			}
			want, err := os.ReadFile(path)
			if err != nil {
				t.Fatalf("%v (run go test -update to create it)", err)
			}
			if !bytes.Equal(got, want) {
				t.Errorf("%s differs (go test -update rewrites it)\ngot:\n%s\nwant:\n%s", path, got, want)
			}
		})
	}
}

// fromHTTP turns a simulated *http.Request into the Request the gateway
// would build, with target as the public URL.
func fromHTTP(t testing.TB, req *http.Request, target string, now time.Time) *Request {
	t.Helper()
	var body []byte
	if req.Body != nil {
		b, err := io.ReadAll(req.Body)
		if err != nil {
			t.Fatal(err)
		}
		body = b
	}
	return &Request{
		Method:   req.Method,
		URL:      target,
		Header:   req.Header.Clone(),
		Body:     body,
		RawQuery: req.URL.RawQuery,
		Now:      now,
	}
}

// clone copies r so that a test can change it.
func clone(r *Request) *Request {
	c := *r
	c.Header = r.Header.Clone()
	c.Body = bytes.Clone(r.Body)
	return &c
}

// flipAt returns b with the byte at i changed.
func flipAt(b []byte, i int, x byte) []byte {
	c := bytes.Clone(b)
	c[i] ^= x
	return c
}

func bytesIndex(b []byte, s string) int { return bytes.Index(b, []byte(s)) }

package test

import (
	"bufio"
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/switchboard-gw/switchboard/gateway/carrier"
	"github.com/switchboard-gw/switchboard/queue/redistest"
)

// badCase is one file of testdata/badinput: header lines, "---", the body.
type badCase struct {
	name, source, method, path, query, sign string
	expect, repeat                          int
	headers                                 [][2]string
	body                                    []byte
}

func loadBadCases(t *testing.T) []badCase {
	files, err := filepath.Glob("testdata/badinput/*.txt")
	if err != nil || len(files) < 50 {
		t.Fatalf("bad-input corpus has %d cases, want at least 50 (%v)", len(files), err)
	}
	var out []badCase
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		head, body, ok := bytes.Cut(b, []byte("\n---\n"))
		if !ok {
			t.Fatalf("%s: no --- line", f)
		}
		c := badCase{name: strings.TrimSuffix(filepath.Base(f), ".txt"), method: "POST", body: body}
		sc := bufio.NewScanner(bytes.NewReader(head))
		sc.Buffer(make([]byte, 1<<20), 1<<20)
		for sc.Scan() {
			line := sc.Text()
			if strings.HasPrefix(line, "#") {
				continue
			}
			k, v, _ := strings.Cut(line, ": ")
			switch k {
			case "source":
				c.source = v
			case "expect":
				c.expect, _ = strconv.Atoi(v)
			case "method":
				c.method = v
			case "path":
				c.path = v
			case "query":
				c.query = v
			case "sign":
				c.sign = v
			case "repeat":
				c.repeat, _ = strconv.Atoi(v)
			case "header":
				hk, hv, _ := strings.Cut(v, ": ")
				c.headers = append(c.headers, [2]string{hk, strings.TrimPrefix(hv, " ")})
			default:
				t.Fatalf("%s: unknown line %q", f, line)
			}
		}
		if c.path == "" {
			c.path = "/hooks/acme/" + c.source
		}
		out = append(out, c)
	}
	return out
}

// request builds the case's request against the gateway at addr, signing
// where the case asks for a genuine signature.
func (c badCase) request(t *testing.T, addr string) *http.Request {
	target := "http://" + addr + c.path + c.query
	body := c.body
	if c.repeat > 0 {
		body = bytes.Repeat([]byte("a"), c.repeat)
	}
	chunked := false
	hdr := http.Header{}
	now := strconv.FormatInt(time.Now().Unix(), 10)
	for _, h := range c.headers {
		if h[0] == "X-Chunked" {
			chunked = true
			continue
		}
		hdr.Add(h[0], strings.ReplaceAll(h[1], "NOW", now))
	}
	form, _ := url.ParseQuery(string(body))
	switch c.sign {
	case "":
	case "twilio":
		hdr.Set("X-Twilio-Signature", carrier.TwilioSignature("tw-token", target, form))
	case "twilio-url-only":
		hdr.Set("X-Twilio-Signature", carrier.TwilioSignature("tw-token", target, nil))
	case "twilio-other-url":
		hdr.Set("X-Twilio-Signature", carrier.TwilioSignature("tw-token", "https://other.example.com"+c.path, form))
	case "twilio-forwarded":
		hdr.Set("X-Twilio-Signature", carrier.TwilioSignature("tw-token", "https://evil.example.com"+c.path, form))
	case "twilio-then-tamper":
		hdr.Set("X-Twilio-Signature", carrier.TwilioSignature("tw-token", target, form))
		body = bytes.Replace(body, []byte("Body=hi"), []byte("Body=ho"), 1)
	case "twilio-second-header":
		hdr.Add("X-Twilio-Signature", "AAAAAAAAAAAAAAAAAAAAAAAAAAA=")
		hdr.Add("X-Twilio-Signature", carrier.TwilioSignature("tw-token", target, form))
	case "hmac", "hmac-wrong-prefix":
		m := hmac.New(sha256.New, []byte("hub-secret"))
		m.Write(body)
		prefix := "sha256="
		if c.sign == "hmac-wrong-prefix" {
			prefix = "sha1="
		}
		hdr.Set("X-Hub-Signature-256", prefix+hex.EncodeToString(m.Sum(nil)))
	default:
		t.Fatalf("%s: unknown sign %q", c.name, c.sign)
	}
	var rd io.Reader = bytes.NewReader(body)
	if chunked {
		rd = io.MultiReader(rd) // hides the length: sent chunked
	}
	req, err := http.NewRequest(c.method, target, rd)
	if err != nil {
		t.Fatal(err)
	}
	req.Header = hdr
	return req
}

// TestBadInputCorpus sends every case of testdata/badinput to a gateway
// with every carrier configured: each gets its 4xx (or 503), nothing is
// stored, and the gateway stays healthy and keeps accepting real callbacks.
func TestBadInputCorpus(t *testing.T) {
	rs := redistest.Start(t)
	dest := newDestination(t, nil)
	var sources strings.Builder
	for _, c := range carrierCases(t) {
		fmt.Fprintf(&sources, "      %s:\n        %s\n", c.source, c.yaml)
	}
	sources.WriteString("      aws-sns:\n        carrier: aws-sns\n        topic_arns: [\"arn:aws:sns:us-east-1:123456789012:sms\"]\n")
	cfg := fmt.Sprintf(`
server: {listen: "127.0.0.1:0", admin_listen: "127.0.0.1:0"}
redis: {url: %q}
delivery: {allow_private_networks: true}
tenants:
  acme:
    sources:
%s    destinations:
      app: {url: %q, secret: %s}
    routes:
      - to: [app]
`, rs.URL(), sources.String(), dest.URL, demoSecret)
	g := startGateway(t, cfg)
	client := &http.Client{Timeout: 10 * time.Second}
	for _, c := range loadBadCases(t) {
		t.Run(c.name, func(t *testing.T) {
			resp, err := client.Do(c.request(t, g.Ingress))
			if err != nil {
				t.Fatalf("request failed: %v", err)
			}
			_, _ = io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if resp.StatusCode != c.expect {
				t.Errorf("status = %d, want %d", resp.StatusCode, c.expect)
			}
			if resp.StatusCode == http.StatusServiceUnavailable && resp.Header.Get("Retry-After") == "" {
				t.Error("503 without Retry-After")
			}
		})
	}

	rdb := rs.Client(t)
	ctx := context.Background()
	keys, err := rdb.Keys(ctx, "sb:*").Result()
	if err != nil {
		t.Fatal(err)
	}
	for _, k := range keys {
		typ, _ := rdb.Type(ctx, k).Result()
		if typ == "stream" {
			if n, _ := rdb.XLen(ctx, k).Result(); n > 0 {
				t.Errorf("%s holds %d entries after only bad input", k, n)
			}
			continue
		}
		t.Errorf("bad input left key %s (%s) in Redis", k, typ)
	}
	if n := len(dest.deliveries()); n != 0 {
		t.Errorf("%d deliveries after only bad input", n)
	}

	// Still healthy, still accepting.
	r, err := http.Get("http://" + g.Ingress + "/healthz")
	if err != nil || r.StatusCode != http.StatusOK {
		t.Fatalf("/healthz after the corpus: %v %v", r, err)
	}
	r.Body.Close()
	if code := sendAs(t, "tw-token", g.hookURL("acme", "twilio")); code != http.StatusOK {
		t.Fatalf("a genuine callback after the corpus answered %d", code)
	}
	dest.next(t, 10*time.Second)
}

func sendAs(t *testing.T, token, url string) int {
	req, err := carrier.Simulate(carrier.Config{Carrier: "twilio", Secret: token}, "inbound", carrier.SimMessage{}, url, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	return resp.StatusCode
}

// TestSlowHeaders: a client that never finishes its headers is cut off by
// the server's header timeout (no slowloris), and the gateway keeps serving.
func TestSlowHeaders(t *testing.T) {
	rs := redistest.Start(t)
	g := startGateway(t, fmt.Sprintf(`
server: {listen: "127.0.0.1:0", admin_listen: "127.0.0.1:0"}
redis: {url: %q}
`, rs.URL()))
	conn, err := net.Dial("tcp", g.Ingress)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	if _, err := io.WriteString(conn, "POST /hooks/acme/twilio HTTP/1.1\r\nHost: x\r\nX-Slow: "); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	_ = conn.SetReadDeadline(time.Now().Add(15 * time.Second))
	_, err = io.ReadAll(conn) // returns when the server closes the connection
	if took := time.Since(start); err != nil || took > 10*time.Second {
		t.Errorf("slow-header connection held for %v (err %v), want it closed by the header timeout", took, err)
	}
	r, err := http.Get("http://" + g.Ingress + "/healthz")
	if err != nil || r.StatusCode != http.StatusOK {
		t.Fatalf("/healthz after a slow client: %v %v", r, err)
	}
	r.Body.Close()
}

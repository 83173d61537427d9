package main

import (
	"fmt"
	"io"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/switchboard-gw/switchboard/gateway/carrier"
)

func cmdSimulate(args []string, stdout, stderr io.Writer) int {
	fs := newFlags("simulate", "simulate --url URL --carrier C --secret S [--kind inbound|status] [--from N] [--to N] [--text T] [--status S]", stderr)
	target := fs.String("url", "", "the gateway `URL` of the source, e.g. http://127.0.0.1:8080/hooks/acme/twilio-main")
	simulable := slices.DeleteFunc(carrier.Names(), func(n string) bool { return n == "aws-sns" }) // only Amazon can sign
	name := fs.String("carrier", "twilio", "`carrier` to imitate ("+strings.Join(simulable, ", ")+"; not aws-sns: only Amazon can sign)")
	var cfg carrier.Config
	fs.StringVar(&cfg.Secret, "secret", "", "the source's `secret` (auth token, signing key)")
	fs.StringVar(&cfg.SignatureMethod, "signature-method", "", "vonage-sms signature `method`")
	fs.StringVar(&cfg.PrivateKey, "private-key", "", "telnyx: base64 Ed25519 private `key` (seed) to sign with")
	fs.StringVar(&cfg.Username, "username", "", "basic-auth `username`")
	fs.StringVar(&cfg.Password, "password", "", "basic-auth `password`")
	fs.StringVar(&cfg.URLToken, "url-token", "", "africastalking URL `token`")
	fs.StringVar(&cfg.Header, "header", "", "hmac: signature `header`")
	fs.StringVar(&cfg.Algorithm, "algorithm", "", "hmac: `algorithm`")
	fs.StringVar(&cfg.Encoding, "encoding", "", "hmac: `encoding`")
	fs.StringVar(&cfg.Prefix, "prefix", "", "hmac: signature `prefix`")
	kind := fs.String("kind", "inbound", "`kind` of callback: inbound or status")
	var m carrier.SimMessage
	fs.StringVar(&m.From, "from", "", "sender `number` (default: the customer +15555550100 for inbound, our number +15555550199 for status)")
	fs.StringVar(&m.To, "to", "", "recipient `number` (default: our number for inbound, the customer for status)")
	fs.StringVar(&m.Text, "text", "Hello from switchboard simulate", "message `text` (inbound)")
	fs.StringVar(&m.Status, "status", "delivered", "carrier `status` word (status callbacks)")
	fs.StringVar(&m.MessageID, "message-id", "", "carrier message `id` (default: random, so repeats are not deduplicated)")
	part := fs.String("part", "", "vonage-sms inbound: send part `N/M` of a multipart message (concat-part/concat-total)")
	fs.StringVar(&m.PartRef, "part-ref", "", "vonage-sms: the multipart message's `reference` (concat-ref; default 1), the same for every part")
	if code, ok := parse(fs, args, stdout); !ok {
		return code
	}
	if *part != "" {
		n, total, ok := strings.Cut(*part, "/")
		m.Part, _ = strconv.Atoi(n)
		m.Parts, _ = strconv.Atoi(total)
		if !ok || m.Part < 1 || m.Parts < 2 || m.Part > m.Parts || *name != "vonage-sms" || *kind != "inbound" {
			fmt.Fprintln(stderr, "--part takes N/M with 1 ≤ N ≤ M and M ≥ 2, for --carrier vonage-sms --kind inbound")
			return 2
		}
	}
	if *target == "" {
		fmt.Fprintln(stderr, "--url is required")
		return 2
	}
	if *kind != "inbound" && *kind != "status" {
		fmt.Fprintln(stderr, "--kind must be inbound or status")
		return 2
	}
	cfg.Carrier = *name
	req, err := carrier.Simulate(cfg, *kind, m, *target, time.Now())
	if err != nil {
		fmt.Fprintf(stderr, "simulate: %v\n", err)
		return 2
	}
	client := &http.Client{Timeout: 30 * time.Second}
	resp, err := client.Do(req)
	if err != nil {
		fmt.Fprintf(stderr, "simulate: %v\n", err)
		return 1
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
	fmt.Fprintf(stdout, "%s %s → %s\n", req.Method, *target, resp.Status)
	if len(body) > 0 {
		fmt.Fprintf(stdout, "%s\n", strings.TrimRight(string(body), "\n"))
	}
	if resp.StatusCode >= 300 {
		return 1
	}
	return 0
}

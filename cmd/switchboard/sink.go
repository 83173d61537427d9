package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/signal"
	"sync"
	"syscall"
	"time"

	"github.com/switchboard-gw/switchboard/gateway/webhook"
)

func cmdSink(args []string, stdout, stderr io.Writer) int {
	fs := newFlags("sink", "sink --listen ADDR --secret whsec_… [--status CODE]", stderr)
	listen := fs.String("listen", "127.0.0.1:8081", "`address` to listen on")
	var secrets stringsFlag
	fs.Var(&secrets, "secret", "Standard Webhooks `secret` whsec_… (repeatable)")
	status := fs.Int("status", http.StatusNoContent, "HTTP `code` to answer verified deliveries with (try 500 to see retries)")
	if code, ok := parse(fs, args, stdout); !ok {
		return code
	}
	if len(secrets) == 0 {
		fmt.Fprintln(stderr, "--secret is required")
		return 2
	}
	if *status < 200 || *status > 599 {
		fmt.Fprintf(stderr, "--status %d is not an HTTP status code a delivery can get (200 to 599)\n", *status)
		return 2
	}
	var keys [][]byte
	for _, s := range secrets {
		k, err := webhook.ParseSecret(s)
		if err != nil {
			fmt.Fprintf(stderr, "--secret: %v\n", err)
			return 2
		}
		keys = append(keys, k)
	}
	var mu sync.Mutex
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, 4<<20))
		if err != nil {
			http.Error(w, "cannot read body", http.StatusBadRequest)
			return
		}
		if err := webhook.Verify(keys, r.Header, body, time.Now(), 5*time.Minute); err != nil {
			fmt.Fprintf(stderr, "refused a delivery: %v\n", err)
			http.Error(w, "bad signature", http.StatusUnauthorized)
			return
		}
		line := map[string]any{
			"webhook_id": r.Header.Get(webhook.HeaderID),
			"attempt":    r.Header.Get("Switchboard-Attempt"),
			"verified":   true,
		}
		if json.Valid(body) {
			line["event"] = json.RawMessage(compact(body))
		} else {
			line["content_type"] = r.Header.Get("Content-Type")
			line["body"] = string(body)
		}
		b, _ := json.Marshal(line)
		mu.Lock()
		fmt.Fprintf(stdout, "%s\n", b)
		mu.Unlock()
		w.WriteHeader(*status)
	})
	srv := &http.Server{Addr: *listen, Handler: h, ReadHeaderTimeout: 5 * time.Second}
	fmt.Fprintf(stderr, "sink listening on %s, verifying Standard Webhooks signatures\n", *listen)
	errc := make(chan error, 1)
	go func() { errc <- srv.ListenAndServe() }()
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGINT, syscall.SIGTERM)
	select {
	case err := <-errc:
		fmt.Fprintf(stderr, "sink: %v\n", err)
		return 1
	case <-sig:
		_ = srv.Close()
		return 0
	}
}

func compact(b []byte) []byte {
	var buf bytes.Buffer
	if err := json.Compact(&buf, b); err != nil {
		return b
	}
	return buf.Bytes()
}

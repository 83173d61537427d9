// Command floor is the benchmark's baseline: the least a Go server can do
// for a carrier callback — verify the Twilio signature, normalize, one XADD
// per request — against the same Redis. The gateway's ingest is measured
// against it (make bench).
//
// With -group it does the same work but sends the XADDs of concurrent
// requests to Redis together, one pipeline per batch (group commit, with no
// window): what group commit alone is worth, without the gateway's dedup,
// routing and history.
package main

import (
	"context"
	"encoding/json"
	"flag"
	"io"
	"log"
	"net"
	"net/http"
	"time"

	"github.com/redis/go-redis/v9"

	switchboard "github.com/switchboard-gw/switchboard"
	"github.com/switchboard-gw/switchboard/gateway/carrier"
)

func main() {
	listen := flag.String("listen", "127.0.0.1:0", "address")
	redisURL := flag.String("redis", "redis://127.0.0.1:6379/0", "Redis URL")
	secret := flag.String("secret", "", "Twilio auth token")
	group := flag.Bool("group", false, "pipeline the XADDs of concurrent requests (group commit)")
	flag.Parse()
	opts, err := redis.ParseURL(*redisURL)
	if err != nil {
		log.Fatal(err)
	}
	opts.PoolSize = 128
	rdb := redis.NewClient(opts)
	tw, err := carrier.New(carrier.Config{Carrier: "twilio", Secret: *secret})
	if err != nil {
		log.Fatal(err)
	}
	store := func(ctx context.Context, b []byte) error {
		return rdb.XAdd(ctx, &redis.XAddArgs{Stream: "floor", Values: []any{"e", b}}).Err()
	}
	if *group {
		store = groupCommit(rdb)
	}
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, 1<<20))
		if err != nil {
			http.Error(w, "read", http.StatusBadRequest)
			return
		}
		req := &carrier.Request{Method: r.Method, URL: "http://" + r.Host + r.RequestURI, Header: r.Header, Body: body, Now: time.Now()}
		if _, err := tw.Verify(req); err != nil {
			http.Error(w, "signature", http.StatusUnauthorized)
			return
		}
		events, err := tw.Parse(req)
		if err != nil || len(events) == 0 {
			http.Error(w, "parse", http.StatusBadRequest)
			return
		}
		e := &events[0]
		e.ID = switchboard.NewEventID(req.Now)
		e.Timestamp = switchboard.NewTime(req.Now)
		b, _ := json.Marshal(e)
		if err := store(r.Context(), b); err != nil {
			http.Error(w, "store", http.StatusServiceUnavailable)
			return
		}
		w.Header().Set("Content-Type", "text/xml")
		_, _ = io.WriteString(w, `<?xml version="1.0" encoding="UTF-8"?><Response/>`)
	})
	ln, err := net.Listen("tcp", *listen)
	if err != nil {
		log.Fatal(err)
	}
	log.Printf("floor listening on %s", ln.Addr())
	log.Fatal(http.Serve(ln, h))
}

// groupCommit returns a store function whose calls wait for one pipeline
// that carries every XADD queued while the previous pipeline ran.
func groupCommit(rdb *redis.Client) func(context.Context, []byte) error {
	type job struct {
		body []byte
		done chan error
	}
	jobs := make(chan job, 1024)
	go func() {
		for j := range jobs {
			batch := []job{j}
		more:
			for len(batch) < 256 {
				select {
				case j := <-jobs:
					batch = append(batch, j)
				default:
					break more
				}
			}
			pipe := rdb.Pipeline()
			for _, j := range batch {
				pipe.XAdd(context.Background(), &redis.XAddArgs{Stream: "floor", Values: []any{"e", j.body}})
			}
			_, err := pipe.Exec(context.Background())
			for _, j := range batch {
				j.done <- err
			}
		}
	}()
	return func(_ context.Context, b []byte) error {
		done := make(chan error, 1)
		jobs <- job{b, done}
		return <-done
	}
}

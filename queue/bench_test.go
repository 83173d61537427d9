package queue

import (
	"context"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
)

// benchEntry is a typical inbound SMS for two destinations, one of them
// raw, with a dedup key.
func benchEntry(n int) *Entry {
	id := strconv.Itoa(n)
	return &Entry{
		Tenant:   tenant,
		DedupKey: "twilio-main|message.received|SM" + id + "|+15555550199|",
		EventID:  "evt_" + id,
		Event: []byte(`{"id":"evt_` + id + `","type":"message.received","timestamp":"2026-11-27T10:00:00.123Z",` +
			`"tenant":"acme","source":"twilio-main","carrier":"twilio","data":{"message_id":"SM` + id +
			`","from":"+15555550100","to":"+15555550199","text":"YES","segments":1}}`),
		Raw:          []byte("ToCountry=US&Body=YES&From=%2B15555550100&To=%2B15555550199&MessageSid=SM" + id),
		RawFor:       []string{"legacy"},
		Destinations: []string{"crm", "legacy"},
	}
}

func BenchmarkEnqueue(b *testing.B) {
	s, _, _ := mustStore(b)
	ctx := context.Background()
	b.ReportAllocs()
	n := 0
	for b.Loop() {
		if _, err := s.Enqueue(ctx, time.Hour, benchEntry(n)); err != nil {
			b.Fatal(err)
		}
		n++
	}
}

func BenchmarkEnqueueBatch64(b *testing.B) {
	s, _, _ := mustStore(b)
	ctx := context.Background()
	batch := make([]*Entry, 64)
	b.ReportAllocs()
	n := 0
	for b.Loop() {
		for i := range batch {
			batch[i] = benchEntry(n)
			n++
		}
		if _, err := s.Enqueue(ctx, time.Hour, batch...); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(n), "ns/entry")
}

// BenchmarkEnqueueRedisCPU reports the CPU Redis itself spends per
// enqueued event (INFO cpu), for the ingest's script in batches of 16 as
// group commit sends them, with and without history, beside a bare XADD
// of the same body (the floor server's one command): on a shared 2-core
// box, the part of a callback that Redis's own work costs.
func BenchmarkEnqueueRedisCPU(b *testing.B) {
	one := func(e *Entry) *Entry {
		e.Destinations, e.Raw, e.RawFor = []string{"crm"}, nil, nil
		e.MessageID = "SM" + e.EventID
		return e
	}
	for _, tc := range []struct {
		name    string
		history time.Duration
		bare    bool
	}{{"history", 72 * time.Hour, false}, {"no-history", 0, false}, {"bare-xadd", 0, true}} {
		b.Run(tc.name, func(b *testing.B) {
			s, rdb, _ := mustStore(b)
			ctx := context.Background()
			batch := make([]*Entry, 16)
			n := 0
			cpu0 := redisCPU(b, rdb)
			for b.Loop() {
				for i := range batch {
					batch[i] = one(benchEntry(n))
					batch[i].History = tc.history
					n++
				}
				if tc.bare {
					pipe := rdb.Pipeline()
					for _, e := range batch {
						pipe.XAdd(ctx, &redis.XAddArgs{Stream: "bare", Values: []any{"e", e.Event}})
					}
					if _, err := pipe.Exec(ctx); err != nil {
						b.Fatal(err)
					}
					continue
				}
				if _, err := s.Enqueue(ctx, time.Hour, batch...); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric((redisCPU(b, rdb)-cpu0)*1e6/float64(n), "redis-µs/event")
		})
	}
}

// redisCPU is the CPU time, in seconds, the Redis server has used.
func redisCPU(b *testing.B, rdb *redis.Client) float64 {
	info, err := rdb.Info(context.Background(), "cpu").Result()
	if err != nil {
		b.Fatal(err)
	}
	total := 0.0
	for _, l := range strings.Split(info, "\n") {
		k, v, ok := strings.Cut(strings.TrimSpace(l), ":")
		if ok && (k == "used_cpu_sys" || k == "used_cpu_user") {
			f, _ := strconv.ParseFloat(v, 64)
			total += f
		}
	}
	return total
}

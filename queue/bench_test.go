package queue

import (
	"context"
	"strconv"
	"testing"
	"time"
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

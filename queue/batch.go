package queue

import (
	"context"
	"sync"
	"sync/atomic"
	"time"
)

// Batcher is group commit for ingest: Enqueue calls that arrive together
// are sent to Redis as one pipeline. The first call of a batch waits at most
// Window for company; while a batch is in flight the next one gathers, so
// under load batches grow by themselves and at rest a call waits at most
// Window. Each entry is still stored by its own atomic script, and each
// caller gets its own answer.
type Batcher struct {
	Store *Store
	// Window is how long a batch waits for more calls (default 100µs).
	Window time.Duration
	// Max caps the entries of one batch (default 256).
	Max int
	// Flushers is how many batches may be in flight at once (default 2).
	Flushers int

	once sync.Once
	reqs chan *batchCall
	wg   sync.WaitGroup
	stop chan struct{}
	// pipelines counts the pipelines sent (for tests).
	pipelines atomic.Int64
}

type batchCall struct {
	ttl     time.Duration
	entries []*Entry
	fresh   []bool
	err     error
	done    chan struct{}
}

func (b *Batcher) start() {
	b.once.Do(func() {
		if b.Window <= 0 {
			b.Window = 100 * time.Microsecond
		}
		if b.Max <= 0 {
			b.Max = 256
		}
		if b.Flushers <= 0 {
			b.Flushers = 2
		}
		b.reqs = make(chan *batchCall, 4*b.Max)
		b.stop = make(chan struct{})
		for range b.Flushers {
			b.wg.Add(1)
			go b.loop()
		}
	})
}

// Enqueue stores entries as Store.Enqueue does, batched with concurrent
// callers. ctx bounds only the wait: a batch already sent completes.
func (b *Batcher) Enqueue(ctx context.Context, ttl time.Duration, entries ...*Entry) ([]bool, error) {
	b.start()
	c := &batchCall{ttl: ttl, entries: entries, done: make(chan struct{})}
	select {
	case b.reqs <- c:
	case <-ctx.Done():
		return nil, ctx.Err()
	}
	select {
	case <-c.done:
		return c.fresh, c.err
	case <-ctx.Done():
		// The entries may still be stored; the caller answers 503 and the
		// carrier's retry is deduplicated.
		return nil, ctx.Err()
	}
}

// Close stops the flushers after the calls already queued are sent.
func (b *Batcher) Close() {
	b.start()
	close(b.stop)
	b.wg.Wait()
}

func (b *Batcher) loop() {
	defer b.wg.Done()
	timer := time.NewTimer(time.Hour)
	timer.Stop()
	for {
		var first *batchCall
		select {
		case first = <-b.reqs:
		case <-b.stop:
			// Drain what is queued, then stop.
			for {
				select {
				case c := <-b.reqs:
					b.flush([]*batchCall{c})
				default:
					return
				}
			}
		}
		batch := []*batchCall{first}
		n := len(first.entries)
		timer.Reset(b.Window)
	gather:
		for n < b.Max {
			select {
			case c := <-b.reqs:
				batch = append(batch, c)
				n += len(c.entries)
			case <-timer.C:
				break gather
			}
		}
		if !timer.Stop() {
			select {
			case <-timer.C:
			default:
			}
		}
		b.flush(batch)
	}
}

func (b *Batcher) flush(batch []*batchCall) {
	// Calls with another dedup TTL (a reload changed it) go in their own
	// pipeline.
	for len(batch) > 0 {
		ttl := batch[0].ttl
		same, rest := batch[:0:0], batch[:0:0]
		for _, c := range batch {
			if c.ttl == ttl {
				same = append(same, c)
			} else {
				rest = append(rest, c)
			}
		}
		b.send(ttl, same)
		batch = rest
	}
}

func (b *Batcher) send(ttl time.Duration, batch []*batchCall) {
	all := make([]*Entry, 0, len(batch))
	for _, c := range batch {
		all = append(all, c.entries...)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	b.pipelines.Add(1)
	fresh, err := b.Store.Enqueue(ctx, ttl, all...)
	cancel()
	i := 0
	for _, c := range batch {
		if err != nil {
			c.err = err
		} else {
			c.fresh = fresh[i : i+len(c.entries)]
		}
		i += len(c.entries)
		close(c.done)
	}
}

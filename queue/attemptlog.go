package queue

import (
	"context"
	"strconv"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"
)

// AttemptLog records delivery attempts in the event history off the
// delivery path: Record never waits for Redis, and the attempts of
// concurrent deliveries are written together, one pipeline per batch. The
// history is for operators, so a write that fails is reported to OnError
// and not retried.
type AttemptLog struct {
	store   *Store
	onError func(error)
	ch      chan attemptItem
	done    chan struct{}
	once    sync.Once
}

type attemptItem struct {
	tenant, id string
	a          Attempt
}

// NewAttemptLog starts a log that buffers up to buffer attempts; onError
// may be nil.
func (s *Store) NewAttemptLog(buffer int, onError func(error)) *AttemptLog {
	l := &AttemptLog{store: s, onError: onError, ch: make(chan attemptItem, buffer), done: make(chan struct{})}
	go l.loop()
	return l
}

// Record queues one attempt. When the buffer is full it writes the attempt
// itself, so bursts slow deliveries down rather than lose history.
func (l *AttemptLog) Record(tenant, id string, a Attempt) {
	if a.Time.IsZero() {
		a.Time = time.Now()
	}
	select {
	case l.ch <- attemptItem{tenant, id, a}:
	default:
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		if err := l.store.RecordAttempt(ctx, tenant, id, a); err != nil && l.onError != nil {
			l.onError(err)
		}
	}
}

// Close writes what is queued and stops.
func (l *AttemptLog) Close() {
	l.once.Do(func() { close(l.ch) })
	<-l.done
}

const attemptBatch = 256

func (l *AttemptLog) loop() {
	defer close(l.done)
	batch := make([]attemptItem, 0, attemptBatch)
	for first := range l.ch {
		batch = append(batch[:0], first)
	drain:
		for len(batch) < attemptBatch {
			select {
			case it, ok := <-l.ch:
				if !ok {
					break drain
				}
				batch = append(batch, it)
			default:
				break drain
			}
		}
		if err := l.write(batch); err != nil && l.onError != nil {
			l.onError(err)
		}
	}
}

func (l *AttemptLog) write(batch []attemptItem) error {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	run := func(eval bool) ([]redis.Cmder, error) {
		pipe := l.store.rdb.Pipeline()
		for _, it := range batch {
			b, err := attemptJSON(it.a)
			if err != nil {
				continue
			}
			keys := []string{historyKey(it.tenant, it.id), attemptsKey(it.tenant, it.id)}
			if eval {
				recordAttemptScript.Eval(ctx, pipe, keys, b, strconv.Itoa(-MaxAttemptLog))
			} else {
				recordAttemptScript.EvalSha(ctx, pipe, keys, b, strconv.Itoa(-MaxAttemptLog))
			}
		}
		return pipe.Exec(ctx)
	}
	cmds, err := run(false)
	if err != nil {
		for _, c := range cmds {
			if isNoScript(c.Err()) {
				_, err = run(true)
				break
			}
		}
	}
	if err != nil {
		return unavailable("record attempts", err)
	}
	return nil
}

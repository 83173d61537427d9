package queue

import (
	"context"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"
)

// Acker acknowledges delivered jobs in batches: the Acks of concurrent
// deliveries share one pipeline, each still its own atomic script (XACK +
// XDEL). It does not wait for company: a batch is whatever queued while
// the previous one was in flight, so at rest an Ack costs what Store.Ack
// does and under load round trips are shared.
type Acker struct {
	Store *Store

	once sync.Once
	reqs chan *ackCall
	wg   sync.WaitGroup
}

type ackCall struct {
	j    *Job
	err  error
	done chan struct{}
}

const ackBatch = 256

func (a *Acker) start() {
	a.once.Do(func() {
		a.reqs = make(chan *ackCall, 4*ackBatch)
		for range 2 {
			a.wg.Add(1)
			go a.loop()
		}
	})
}

// Ack acknowledges j as Store.Ack does. Errors wrap
// switchboard.ErrUnavailable; the job then stays pending and is reclaimed.
func (a *Acker) Ack(ctx context.Context, j *Job) error {
	if err := j.check("ack"); err != nil {
		return err
	}
	a.start()
	c := &ackCall{j: j, done: make(chan struct{})}
	select {
	case a.reqs <- c:
	case <-ctx.Done():
		return ctx.Err()
	}
	select {
	case <-c.done:
		return c.err
	case <-ctx.Done():
		return ctx.Err()
	}
}

// Close stops the Acker once the acks queued are written; no Ack may
// follow.
func (a *Acker) Close() {
	a.start()
	close(a.reqs)
	a.wg.Wait()
}

func (a *Acker) loop() {
	defer a.wg.Done()
	batch := make([]*ackCall, 0, ackBatch)
	for first := range a.reqs {
		batch = append(batch[:0], first)
	drain:
		for len(batch) < ackBatch {
			select {
			case c := <-a.reqs:
				batch = append(batch, c)
			default:
				break drain
			}
		}
		a.flush(batch)
	}
}

func (a *Acker) flush(batch []*ackCall) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	run := func(eval bool) []*redis.Cmd {
		pipe := a.Store.rdb.Pipeline()
		cmds := make([]*redis.Cmd, len(batch))
		for i, c := range batch {
			keys := []string{streamKey(c.j.Tenant, c.j.Destination)}
			if eval {
				cmds[i] = ackScript.Eval(ctx, pipe, keys, c.j.ID)
			} else {
				cmds[i] = ackScript.EvalSha(ctx, pipe, keys, c.j.ID)
			}
		}
		_, _ = pipe.Exec(ctx)
		return cmds
	}
	cmds := run(false)
	for _, c := range cmds {
		if isNoScript(c.Err()) {
			cmds = run(true)
			break
		}
	}
	for i, c := range batch {
		if err := cmds[i].Err(); err != nil {
			c.err = unavailable("ack", err)
		}
		close(c.done)
	}
}

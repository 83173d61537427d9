package queue

import (
	"fmt"

	"github.com/alicebob/miniredis/v2"
)

// Embedded is an in-process Redis (miniredis) on a loopback port, for
// running Switchboard without a Redis server. It keeps everything in memory:
// whatever is queued is lost when the process ends. Store works against it
// unchanged; where miniredis differs from Redis 7 the Store's scripts avoid
// the difference (see reclaimScript, enqueueScript).
type Embedded struct {
	m *miniredis.Miniredis
}

// StartEmbedded starts an embedded store on 127.0.0.1 with a free port.
func StartEmbedded() (*Embedded, error) {
	m := miniredis.NewMiniRedis()
	// miniredis expires keys only when told to; let TTLs run with the clock
	// so dedup keys expire as they do in Redis.
	m.ClockTTL(true)
	if err := m.StartAddr("127.0.0.1:0"); err != nil {
		return nil, fmt.Errorf("queue embedded: %w", err)
	}
	return &Embedded{m: m}, nil
}

// Addr is the host:port the embedded store listens on.
func (e *Embedded) Addr() string { return e.m.Addr() }

// Close stops the embedded store and drops its data.
func (e *Embedded) Close() { e.m.Close() }

package load

import (
	"bufio"
	"bytes"
	"fmt"
	"net"
	"sync"
	"sync/atomic"
	"time"
)

// Sink is the end-to-end benchmark's receiver: it answers every request
// 204 over keep-alive connections and counts them, speaking just enough
// HTTP/1.1 itself (request line, headers, a Content-Length or chunked
// body), so that on a machine it shares with the gateway it takes little
// of the CPU it measures (net/http's server took about as much per
// delivery as the gateway's own delivery work). It is no general server:
// only for the gateway's deliveries in the benchmark.
type Sink struct {
	ln    net.Listener
	got   atomic.Int64
	last  atomic.Int64 // unix ns of the latest request
	wg    sync.WaitGroup
	mu    sync.Mutex
	conns map[net.Conn]bool
	err   error // the first protocol error, if any; guarded by mu
}

// StartSink listens on 127.0.0.1 and serves until Close.
func StartSink() (*Sink, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	s := &Sink{ln: ln, conns: map[net.Conn]bool{}}
	s.wg.Add(1)
	go s.accept()
	return s, nil
}

// URL is where to send deliveries.
func (s *Sink) URL() string { return "http://" + s.ln.Addr().String() + "/events" }

// Count is the number of requests answered.
func (s *Sink) Count() int64 { return s.got.Load() }

// Last is when the latest request was answered (zero before the first).
func (s *Sink) Last() time.Time {
	if ns := s.last.Load(); ns != 0 {
		return time.Unix(0, ns)
	}
	return time.Time{}
}

// Err is the first malformed request the sink saw, or nil.
func (s *Sink) Err() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.err
}

// Close stops listening and closes every connection.
func (s *Sink) Close() {
	s.ln.Close()
	s.mu.Lock()
	for c := range s.conns {
		c.Close()
	}
	s.mu.Unlock()
	s.wg.Wait()
}

func (s *Sink) accept() {
	defer s.wg.Done()
	for {
		c, err := s.ln.Accept()
		if err != nil {
			return
		}
		s.mu.Lock()
		s.conns[c] = true
		s.mu.Unlock()
		s.wg.Add(1)
		go s.serve(c)
	}
}

var noContent = []byte("HTTP/1.1 204 No Content\r\n\r\n")

func (s *Sink) serve(c net.Conn) {
	defer s.wg.Done()
	defer func() {
		s.mu.Lock()
		delete(s.conns, c)
		s.mu.Unlock()
		c.Close()
	}()
	br := bufio.NewReaderSize(c, 8192)
	for {
		line, err := br.ReadSlice('\n')
		if err != nil {
			return // the peer closed: normal between requests
		}
		if !bytes.Contains(line, []byte(" HTTP/1.")) {
			s.fail(fmt.Errorf("bad request line %q", line))
			return
		}
		length, chunked, keep, err := readHeaders(br)
		if err == nil {
			err = discardBody(br, length, chunked)
		}
		if err != nil {
			s.fail(err)
			return
		}
		s.got.Add(1)
		s.last.Store(time.Now().UnixNano())
		if _, err := c.Write(noContent); err != nil || !keep {
			return
		}
	}
}

func (s *Sink) fail(err error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.err == nil {
		s.err = err
	}
}

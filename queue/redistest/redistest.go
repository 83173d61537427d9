// Package redistest runs a real redis-server for tests: on a free loopback
// port, with its data in the test's temporary directory, stopped when the
// test ends. A test that needs Redis fails, never skips, when redis-server is
// not installed.
package redistest

import (
	"bufio"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
)

// startTimeout bounds how long Start waits for redis-server to answer PING.
const startTimeout = 15 * time.Second

// Option changes how the server runs.
type Option func(*config)

type config struct {
	aof bool
}

// WithAOF turns on the append-only file (appendonly yes, appendfsync
// everysec), so data written before Stop survives a restart with Start.
// Without it the server persists nothing.
func WithAOF() Option { return func(c *config) { c.aof = true } }

// Server is one redis-server process. Its methods must be called from the
// test's goroutine (they fail the test).
type Server struct {
	// Addr is 127.0.0.1:port; it stays the same across Stop and Start.
	Addr string

	t    testing.TB
	bin  string
	dir  string
	port int
	cfg  config
	cmd  *exec.Cmd
	done chan struct{} // closed when cmd has exited
}

// Start starts redis-server on a free 127.0.0.1 port with its directory in
// t.TempDir(), waits until it answers PING, and stops it when the test ends.
func Start(t testing.TB, opts ...Option) *Server {
	t.Helper()
	bin, err := exec.LookPath("redis-server")
	if err != nil {
		t.Fatalf("redistest: redis-server is not on PATH (install Redis 7, e.g. apt-get install redis-server): %v", err)
	}
	s := &Server{t: t, bin: bin, dir: t.TempDir()}
	for _, o := range opts {
		o(&s.cfg)
	}
	t.Cleanup(s.kill)
	// The free port may be taken between finding and binding it: try again
	// with another one.
	var last error
	for range 5 {
		if s.port, err = freePort(); err != nil {
			t.Fatalf("redistest: %v", err)
		}
		if last = s.start(); last == nil {
			s.Addr = net.JoinHostPort("127.0.0.1", strconv.Itoa(s.port))
			return s
		}
		if !strings.Contains(last.Error(), "in use") {
			break
		}
	}
	t.Fatalf("redistest: %v", last)
	return nil
}

// URL is the server's redis:// URL, database 0.
func (s *Server) URL() string { return "redis://" + s.Addr + "/0" }

// Client returns a client of the server, closed when t ends.
func (s *Server) Client(t testing.TB) *redis.Client {
	t.Helper()
	c := redis.NewClient(&redis.Options{Addr: s.Addr})
	t.Cleanup(func() { _ = c.Close() })
	return c
}

// Stop shuts the server down with SIGTERM (with AOF, what was written is on
// disk) and waits for it to exit.
func (s *Server) Stop() {
	s.t.Helper()
	s.signal(syscall.SIGTERM)
}

// Kill kills the server with SIGKILL, like a crash, and waits for it to exit.
func (s *Server) Kill() {
	s.t.Helper()
	s.signal(syscall.SIGKILL)
}

// Start starts the server again after Stop or Kill, on the same port and
// directory, and waits until it answers PING.
func (s *Server) Start() {
	s.t.Helper()
	if s.running() {
		s.t.Fatal("redistest: Start: server is running")
	}
	if err := s.start(); err != nil {
		s.t.Fatalf("redistest: restart: %v", err)
	}
}

func (s *Server) signal(sig syscall.Signal) {
	s.t.Helper()
	if !s.running() {
		s.t.Fatal("redistest: server is not running")
	}
	if err := s.cmd.Process.Signal(sig); err != nil && !errors.Is(err, os.ErrProcessDone) {
		s.t.Fatalf("redistest: %v: %v", sig, err)
	}
	select {
	case <-s.done:
	case <-time.After(startTimeout):
		s.t.Fatalf("redistest: redis-server did not exit %v after %v", startTimeout, sig)
	}
}

func (s *Server) running() bool {
	if s.cmd == nil {
		return false
	}
	select {
	case <-s.done:
		return false
	default:
		return true
	}
}

// kill is the cleanup: it ends the process whatever state it is in.
func (s *Server) kill() {
	if s.running() {
		_ = s.cmd.Process.Kill()
		<-s.done
	}
}

func (s *Server) start() error {
	appendonly := "no"
	if s.cfg.aof {
		appendonly = "yes"
	}
	logfile := filepath.Join(s.dir, "redis.log")
	args := []string{
		"--port", strconv.Itoa(s.port),
		"--bind", "127.0.0.1",
		"--dir", s.dir,
		"--save", "",
		"--appendonly", appendonly,
		"--appendfsync", "everysec",
		"--daemonize", "no",
		"--logfile", logfile,
	}
	cmd := exec.Command(s.bin, args...)
	setDeathSignal(cmd)
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("start redis-server: %w", err)
	}
	done := make(chan struct{})
	go func() {
		_ = cmd.Wait()
		close(done)
	}()
	s.cmd, s.done = cmd, done

	addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(s.port))
	deadline := time.Now().Add(startTimeout)
	tick := time.NewTicker(5 * time.Millisecond)
	defer tick.Stop()
	for {
		if ping(addr) {
			return nil
		}
		select {
		case <-done:
			return fmt.Errorf("redis-server on port %d exited while starting: %s", s.port, tail(logfile))
		case <-tick.C:
		}
		if time.Now().After(deadline) {
			_ = cmd.Process.Kill()
			<-done
			return fmt.Errorf("redis-server on port %d did not answer PING within %v: %s", s.port, startTimeout, tail(logfile))
		}
	}
}

// ping reports whether a Redis at addr answers PING with PONG (not LOADING).
func ping(addr string) bool {
	c, err := net.DialTimeout("tcp", addr, time.Second)
	if err != nil {
		return false
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(time.Second))
	if _, err := c.Write([]byte("PING\r\n")); err != nil {
		return false
	}
	line, err := bufio.NewReader(c).ReadString('\n')
	return err == nil && strings.HasPrefix(line, "+PONG")
}

func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, fmt.Errorf("find a free port: %w", err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// tail returns the end of the server's log, for error messages.
func tail(path string) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return "(no log: " + err.Error() + ")"
	}
	const n = 2000
	if len(b) > n {
		b = b[len(b)-n:]
	}
	return "log: " + strings.TrimSpace(string(b))
}

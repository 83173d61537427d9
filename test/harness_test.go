// Package test holds black-box tests against the built switchboard binary
// and real redis-server processes.
package test

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/switchboard-gw/switchboard/gateway/webhook"
)

var binary string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "switchboard-e2e")
	if err != nil {
		panic(err)
	}
	binary = filepath.Join(dir, "switchboard")
	cmd := exec.Command("go", "build", "-race", "-o", binary, "../cmd/switchboard")
	cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
	if err := cmd.Run(); err != nil {
		fmt.Fprintln(os.Stderr, "building switchboard:", err)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// demoSecret is the destinations' Standard Webhooks secret in these tests.
const demoSecret = "whsec_c3dpdGNoYm9hcmQtZGVtby1zZWNyZXQta2V5LTAwMDE="

// twilioToken is the Twilio sources' auth token in these tests.
const twilioToken = "test_auth_token_0123456789abcdef"

// logBuffer collects a process's output and lets tests await a line.
type logBuffer struct {
	mu   sync.Mutex
	buf  bytes.Buffer
	cond *sync.Cond
}

func newLogBuffer() *logBuffer {
	l := &logBuffer{}
	l.cond = sync.NewCond(&l.mu)
	return l
}

func (l *logBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.cond.Broadcast()
	return l.buf.Write(p)
}

func (l *logBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.String()
}

// waitFor polls cond every 20ms until it holds or timeout passes.
func waitFor(t *testing.T, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", timeout, what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// gatewayProc is a running `switchboard serve`.
type gatewayProc struct {
	t          *testing.T
	cmd        *exec.Cmd
	log        *logBuffer
	configFile string
	Ingress    string // host:port
	Admin      string
	exited     chan struct{}
	exitErr    error
}

// startGateway writes cfg (YAML) to a file and runs serve on it. The config
// should listen on 127.0.0.1:0; the addresses are read from the log.
func startGateway(t *testing.T, cfg string) *gatewayProc {
	t.Helper()
	file := filepath.Join(t.TempDir(), "switchboard.yaml")
	if err := os.WriteFile(file, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	return startGatewayFile(t, file)
}

// startGatewayFile runs serve on file, with extra flags (e.g. --watch).
func startGatewayFile(t *testing.T, file string, flags ...string) *gatewayProc {
	t.Helper()
	g := &gatewayProc{t: t, log: newLogBuffer(), configFile: file, exited: make(chan struct{})}
	g.cmd = exec.Command(binary, append([]string{"serve", "--config", file}, flags...)...)
	g.cmd.Env = raceEnv()
	g.cmd.Stdout, g.cmd.Stderr = g.log, g.log
	if err := g.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { g.exitErr = g.cmd.Wait(); close(g.exited) }()
	t.Cleanup(func() {
		select {
		case <-g.exited:
		default:
			_ = g.cmd.Process.Kill()
			<-g.exited
		}
		if t.Failed() {
			t.Logf("gateway log:\n%s", g.log.String())
		}
	})
	waitFor(t, 20*time.Second, "the gateway to start", func() bool {
		select {
		case <-g.exited:
			t.Fatalf("gateway exited early: %v\n%s", g.exitErr, g.log.String())
		default:
		}
		for _, line := range strings.Split(g.log.String(), "\n") {
			var m map[string]any
			if json.Unmarshal([]byte(line), &m) == nil && m["msg"] == "switchboard serving" {
				g.Ingress, _ = m["listen"].(string)
				g.Admin, _ = m["admin_listen"].(string)
				return true
			}
		}
		return false
	})
	return g
}

// stop sends SIGTERM and returns the exit error and how long it took.
func (g *gatewayProc) stop() (error, time.Duration) {
	start := time.Now()
	_ = g.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-g.exited:
	case <-time.After(30 * time.Second):
		g.t.Fatal("gateway did not stop within 30s of SIGTERM")
	}
	return g.exitErr, time.Since(start)
}

func (g *gatewayProc) kill() {
	_ = g.cmd.Process.Kill()
	<-g.exited
}

func (g *gatewayProc) hookURL(tenant, source string) string {
	return "http://" + g.Ingress + "/hooks/" + tenant + "/" + source
}

// delivery is one request a destination received.
type delivery struct {
	Header http.Header
	Body   []byte
	At     time.Time
}

// destination is an httptest receiver whose answers the test scripts.
type destination struct {
	*httptest.Server
	mu       sync.Mutex
	got      []delivery
	respond  func(n int, d delivery) int // status for the n-th request (1-based)
	received chan delivery
}

func newDestination(t *testing.T, respond func(n int, d delivery) int) *destination {
	d := &destination{respond: respond, received: make(chan delivery, 1000)}
	d.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		dv := delivery{Header: r.Header.Clone(), Body: body, At: time.Now()}
		d.mu.Lock()
		d.got = append(d.got, dv)
		n := len(d.got)
		d.mu.Unlock()
		code := http.StatusNoContent
		if d.respond != nil {
			code = d.respond(n, dv)
		}
		w.WriteHeader(code)
		d.received <- dv
	}))
	t.Cleanup(d.Close)
	return d
}

func (d *destination) deliveries() []delivery {
	d.mu.Lock()
	defer d.mu.Unlock()
	return append([]delivery(nil), d.got...)
}

// next waits for the next request to the destination.
func (d *destination) next(t *testing.T, timeout time.Duration) delivery {
	t.Helper()
	select {
	case dv := <-d.received:
		return dv
	case <-time.After(timeout):
		t.Fatalf("no delivery within %v", timeout)
	}
	return delivery{}
}

// verify checks a delivery's Standard Webhooks signature.
func verify(t *testing.T, dv delivery) {
	t.Helper()
	key, err := webhook.ParseSecret(demoSecret)
	if err != nil {
		t.Fatal(err)
	}
	if err := webhook.Verify([][]byte{key}, dv.Header, dv.Body, time.Now(), 5*time.Minute); err != nil {
		t.Fatalf("delivery signature does not verify: %v", err)
	}
}

// runCLI runs the binary with args and returns stdout, stderr and the exit code.
func runCLI(t *testing.T, args ...string) (string, string, int) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, binary, args...)
	cmd.Env = raceEnv()
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	code := 0
	if ee, ok := err.(*exec.ExitError); ok {
		code = ee.ExitCode()
	} else if err != nil {
		t.Fatalf("run %v: %v", args, err)
	}
	return out.String(), errb.String(), code
}

// jsonLines decodes one JSON object per line.
func jsonLines(t *testing.T, s string) []map[string]any {
	t.Helper()
	var out []map[string]any
	sc := bufio.NewScanner(strings.NewReader(s))
	for sc.Scan() {
		if strings.TrimSpace(sc.Text()) == "" {
			continue
		}
		var m map[string]any
		if err := json.Unmarshal(sc.Bytes(), &m); err != nil {
			t.Fatalf("not a JSON line: %q: %v", sc.Text(), err)
		}
		out = append(out, m)
	}
	return out
}

// raceEnv is the environment for the race-enabled binary, without the
// race runtime's one-second sleep at every exit.
func raceEnv() []string {
	return append(os.Environ(), "GORACE=atexit_sleep_ms=0")
}

// Command bench is Switchboard's benchmark harness (make bench). In one run
// on one machine it measures the floor server, the gateway's ingest, end to
// end delivery, Redis memory per queued event and the gateway's RSS with a
// backlog, with AOF off and with appendfsync everysec, and prints a markdown
// table. All traffic goes to 127.0.0.1, bounded in count and time.
//
// BENCH_SHORT=1 runs a tiny version (CI keeps the harness alive with it; it
// asserts nothing about timings). BENCH_RUNS sets the runs per figure
// (default 3), BENCH_SECONDS each load window (default 5). BENCH_ONLY (a
// comma-separated subset of floor, floorgc, nogc, nohist, ingest, paced,
// e2e, aof, backlog)
// runs only those figures, for quick iterations. BENCH_PROFILE_DIR makes every
// gateway write a CPU profile there (serve --cpuprofile). BENCH_GATEWAY
// names a prebuilt gateway binary to measure instead of building one.
package main

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/redis/go-redis/v9"

	switchboard "github.com/switchboard-gw/switchboard"
	"github.com/switchboard-gw/switchboard/gateway/carrier"
	"github.com/switchboard-gw/switchboard/queue"
	"github.com/switchboard-gw/switchboard/test/load"
)

const secret = "bench_auth_token_0123456789abcdef"
const whsec = "whsec_c3dpdGNoYm9hcmQtZGVtby1zZWNyZXQta2V5LTAwMDE="

var (
	short   = os.Getenv("BENCH_SHORT") != ""
	runs    = envInt("BENCH_RUNS", 3)
	seconds = envInt("BENCH_SECONDS", 5)
	workdir string
	out     = os.Getenv("BENCH_OUT")
	only    = os.Getenv("BENCH_ONLY")
)

// want reports whether figure f is to be measured (BENCH_ONLY).
func want(f string) bool {
	return only == "" || slices.Contains(strings.Split(only, ","), f)
}

func envInt(k string, def int) int {
	if v, err := strconv.Atoi(os.Getenv(k)); err == nil && v > 0 {
		return v
	}
	return def
}

func main() {
	log.SetFlags(log.Ltime)
	if short {
		runs, seconds = 1, 1
	}
	var err error
	workdir, err = os.MkdirTemp("", "switchboard-bench")
	must(err)
	defer os.RemoveAll(workdir)
	gw := filepath.Join(workdir, "switchboard")
	floor := filepath.Join(workdir, "floor")
	if bin := os.Getenv("BENCH_GATEWAY"); bin != "" {
		gw = bin // a prebuilt gateway, to compare builds (A/B)
	} else {
		build(gw, "./cmd/switchboard")
	}
	build(floor, "./test/floor")

	var rows []row
	for _, aof := range []bool{false, true} {
		label := "AOF off"
		if aof {
			label = "AOF everysec"
			if !want("aof") {
				continue
			}
		}
		var floorR, floorGC, floorGCRedis, ingR, ingNoGC, ingNoHist, ingNoHistRedis, e2eR []float64
		var p50, p99 []float64
		// paced[rate] = floor p50, floor p99, gateway p50, gateway p99
		paced := map[int]*[4][]float64{}
		for _, rate := range pacedRates {
			paced[rate] = &[4][]float64{}
		}
		var floorCPU, floorRedis, floorLoad, gwCPU, gwRedis, gwLoad []float64
		for i := range runs {
			log.Printf("%s: run %d/%d", label, i+1, runs)
			if !aof && want("floor") {
				r := measureFloor(floor, aof, i)
				floorR = append(floorR, r.Rate())
				floorCPU, floorRedis, floorLoad = append(floorCPU, r.serverCPU), append(floorRedis, r.redisCPU), append(floorLoad, r.loadCPU)
			}
			if !aof && want("floorgc") {
				r := measureFloorGroup(floor, i)
				floorGC, floorGCRedis = append(floorGC, r.Rate()), append(floorGCRedis, r.redisCPU)
			}
			if !aof && want("nogc") {
				ingNoGC = append(ingNoGC, measureIngestWindow(gw, aof, i, "0s").Rate())
			}
			if !aof && want("nohist") {
				r := measureIngestWith(gw, aof, i, "100us", 0, "history: {retention: 0s}")
				ingNoHist, ingNoHistRedis = append(ingNoHist, r.Rate()), append(ingNoHistRedis, r.redisCPU)
			}
			if aof || want("ingest") {
				r := measureIngest(gw, aof, i)
				ingR = append(ingR, r.Rate())
				p50 = append(p50, ms(r.P50))
				p99 = append(p99, ms(r.P99))
				gwCPU, gwRedis, gwLoad = append(gwCPU, r.serverCPU), append(gwRedis, r.redisCPU), append(gwLoad, r.loadCPU)
			}
			if !aof && want("paced") {
				for _, rate := range pacedRates {
					f := measureFloorRate(floor, aof, i, float64(rate))
					g := measureIngestRate(gw, aof, i, "100us", float64(rate))
					p := paced[rate]
					p[0], p[1] = append(p[0], ms(f.P50)), append(p[1], ms(f.P99))
					p[2], p[3] = append(p[2], ms(g.P50)), append(p[3], ms(g.P99))
				}
			}
			if aof || want("e2e") {
				e2eR = append(e2eR, measureEndToEnd(gw, aof, i))
			}
		}
		rows = appendRow(rows, "floor server: verify + normalize + 1 XADD (req/s, 64 conns)", label, floorR, "%.0f")
		rows = appendRow(rows, "floor with group commit: its XADDs pipelined (req/s, 64 conns)", label, floorGC, "%.0f")
		rows = appendRow(rows, "gateway ingest without group commit (req/s, 64 conns)", label, ingNoGC, "%.0f")
		rows = appendRow(rows, "gateway ingest, history off (req/s, 64 conns)", label, ingNoHist, "%.0f")
		rows = appendRow(rows, "gateway ingest (req/s, 64 conns)", label, ingR, "%.0f")
		rows = appendRow(rows, "gateway ingest p50 (ms)", label, p50, "%.2f")
		rows = appendRow(rows, "gateway ingest p99 (ms)", label, p99, "%.2f")
		for _, rate := range pacedRates {
			at, p := fmt.Sprintf("at %d req/s paced (ms, 64 conns)", rate), paced[rate]
			for i, who := range []string{"floor p50 ", "floor p99 ", "gateway ingest p50 ", "gateway ingest p99 "} {
				rows = appendRow(rows, who+at, label, p[i], "%.2f")
			}
		}
		rows = appendRow(rows, "end to end delivered into a local sink (events/s)", label, e2eR, "%.0f")
		rows = appendRow(rows, "CPU per request: floor server (µs)", label, floorCPU, "%.1f")
		rows = appendRow(rows, "CPU per request: Redis behind the floor (µs)", label, floorRedis, "%.1f")
		rows = appendRow(rows, "CPU per request: load generator, floor runs (µs)", label, floorLoad, "%.1f")
		rows = appendRow(rows, "CPU per request: Redis behind the floor with group commit (µs)", label, floorGCRedis, "%.1f")
		rows = appendRow(rows, "CPU per callback: gateway (µs)", label, gwCPU, "%.1f")
		rows = appendRow(rows, "CPU per callback: Redis behind the gateway (µs)", label, gwRedis, "%.1f")
		rows = appendRow(rows, "CPU per request: load generator, gateway runs (µs)", label, gwLoad, "%.1f")
		rows = appendRow(rows, "CPU per callback: Redis behind the gateway, history off (µs)", label, ingNoHistRedis, "%.1f")
	}
	sizes := []int{100_000, 1_000_000}
	if short {
		sizes = []int{2_000}
	}
	var rawSize int
	type backlog struct {
		n       int
		history bool
	}
	backlogs := []backlog{{sizes[0], true}, {sizes[len(sizes)-1], true}, {sizes[len(sizes)-1], false}}
	if short {
		backlogs = backlogs[1:]
	}
	if !want("backlog") {
		backlogs = nil
	}
	for _, bl := range backlogs {
		var perEvent, rss []float64
		for i := range runs {
			log.Printf("backlog %d (history %v): run %d/%d", bl.n, bl.history, i+1, runs)
			pe, r, rs := measureBacklog(gw, bl.n, bl.history)
			perEvent = append(perEvent, pe)
			rss = append(rss, r)
			rawSize = rs
		}
		label := "history 72h (default)"
		if !bl.history {
			label = "history off"
		}
		rows = append(rows,
			row{fmt.Sprintf("Redis memory per queued event, %s queued, %s (bytes)", human(bl.n), label), "AOF off", perEvent, "%.0f"},
			row{fmt.Sprintf("gateway RSS with %s queued, %s (MiB)", human(bl.n), label), "AOF off", rss, "%.1f"},
		)
	}
	report(rows, rawSize)
}

func human(n int) string {
	if n >= 1_000_000 {
		return fmt.Sprintf("%dM", n/1_000_000)
	}
	return fmt.Sprintf("%dk", n/1000)
}

// appendRow adds a row if the figure was measured.
func appendRow(rows []row, name, mode string, vals []float64, format string) []row {
	if len(vals) == 0 {
		return rows
	}
	return append(rows, row{name, mode, vals, format})
}

type row struct {
	name, mode string
	vals       []float64
	format     string
}

func (r row) median() float64 {
	v := slices.Clone(r.vals)
	slices.Sort(v)
	return v[len(v)/2]
}

func report(rows []row, rawSize int) {
	var b strings.Builder
	host, _ := os.Hostname()
	cpu := cpuModel()
	fmt.Fprintf(&b, "Measured %s on %s (%d cores, %s, %s), load generator on the same machine; median of %d run(s), min–max in brackets.\n\n",
		time.Now().UTC().Format("2006-01-02"), host, runtime.NumCPU(), cpu, runtime.Version(), runs)
	fmt.Fprintf(&b, "| figure | Redis | median | min–max |\n|---|---|---|---|\n")
	med := map[string]float64{}
	for _, r := range rows {
		mn, mx := slices.Min(r.vals), slices.Max(r.vals)
		fmt.Fprintf(&b, "| %s | %s | "+r.format+" | "+r.format+"–"+r.format+" |\n", r.name, r.mode, r.median(), mn, mx)
		med[r.name+"|"+r.mode] = r.median()
	}
	floor := med["floor server: verify + normalize + 1 XADD (req/s, 64 conns)|AOF off"]
	ing := med["gateway ingest (req/s, 64 conns)|AOF off"]
	e2e := med["end to end delivered into a local sink (events/s)|AOF off"]
	p99 := med["gateway ingest p99 (ms)|AOF off"]
	verdict := func(ok bool) string {
		if ok {
			return "met"
		}
		return "not met"
	}
	fmt.Fprintf(&b, "\nTargets, this run (AOF off):\n")
	if floor > 0 && ing > 0 {
		fmt.Fprintf(&b, "- ingest / floor = %.2f (target ≥ 1.25: %s)\n", ing/floor, verdict(ing/floor >= 1.25))
	}
	floorGC := med["floor with group commit: its XADDs pipelined (req/s, 64 conns)|AOF off"]
	noHist := med["gateway ingest, history off (req/s, 64 conns)|AOF off"]
	if floor > 0 && (floorGC > 0 || noHist > 0) {
		fmt.Fprintf(&b, "  (for comparison, not targets: floor with group commit / floor = %.2f; gateway with history off / floor = %.2f)\n",
			floorGC/floor, noHist/floor)
	}
	if p99 > 0 {
		fmt.Fprintf(&b, "- p99 at 64 connections = %.2f ms (target ≤ 10 ms: %s)\n", p99, verdict(p99 <= 10))
	}
	if ing > 0 && e2e > 0 {
		fmt.Fprintf(&b, "- end to end / ingest = %.2f (target ≥ 0.5: %s)\n", e2e/ing, verdict(e2e/ing >= 0.5))
	}
	for _, r := range rows {
		if rawSize > 0 && strings.HasPrefix(r.name, "Redis memory per queued event") {
			fmt.Fprintf(&b, "- %s = %.0f bytes; raw callback %d bytes (target ≤ %d: %s)\n",
				strings.TrimSuffix(strings.TrimPrefix(r.name, "Redis memory per queued event, "), " (bytes)"),
				r.median(), rawSize, 2*rawSize, verdict(r.median() <= float64(2*rawSize)))
		}
		if strings.HasPrefix(r.name, "gateway RSS with 1M") {
			fmt.Fprintf(&b, "- %s = %.1f MiB (target < 150 MiB: %s)\n", strings.TrimSuffix(r.name, " (MiB)"), r.median(), verdict(r.median() < 150))
		}
	}
	fmt.Print(b.String())
	if out != "" {
		must(os.WriteFile(out, []byte(b.String()), 0o644))
	}
}

func cpuModel() string {
	b, err := os.ReadFile("/proc/cpuinfo")
	if err != nil {
		return runtime.GOARCH
	}
	for _, l := range strings.Split(string(b), "\n") {
		if strings.HasPrefix(l, "model name") {
			return strings.TrimSpace(strings.SplitN(l, ":", 2)[1])
		}
	}
	return runtime.GOARCH
}

func must(err error) {
	if err != nil {
		log.Fatal(err)
	}
}

func build(out, pkg string) {
	cmd := exec.Command("go", "build", "-o", out, pkg)
	cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
	must(cmd.Run())
}

func freePort() string {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	must(err)
	defer l.Close()
	return l.Addr().String()
}

// redisProc is a redis-server of the harness's own.
type redisProc struct {
	cmd  *exec.Cmd
	addr string
	rdb  *redis.Client
}

func startRedis(aof bool) *redisProc {
	addr := freePort()
	_, port, _ := net.SplitHostPort(addr)
	dir, err := os.MkdirTemp(workdir, "redis")
	must(err)
	args := []string{"--port", port, "--bind", "127.0.0.1", "--dir", dir, "--save", "", "--appendonly", "no"}
	if aof {
		args = []string{"--port", port, "--bind", "127.0.0.1", "--dir", dir, "--save", "", "--appendonly", "yes", "--appendfsync", "everysec"}
	}
	cmd := exec.Command("redis-server", args...)
	must(cmd.Start())
	rdb := redis.NewClient(&redis.Options{Addr: addr, PoolSize: 16})
	deadline := time.Now().Add(10 * time.Second)
	for rdb.Ping(context.Background()).Err() != nil {
		if time.Now().After(deadline) {
			log.Fatal("redis-server did not start")
		}
		time.Sleep(20 * time.Millisecond)
	}
	return &redisProc{cmd: cmd, addr: addr, rdb: rdb}
}

func (r *redisProc) stop() {
	r.rdb.Close()
	_ = r.cmd.Process.Signal(syscall.SIGTERM)
	_ = r.cmd.Wait()
}

// proc is a started server whose log announced its address.
type proc struct {
	cmd  *exec.Cmd
	addr string
}

func startProc(bin string, args []string, ready func(line string) (string, bool)) *proc {
	cmd := exec.Command(bin, args...)
	stderr, err := cmd.StderrPipe()
	must(err)
	cmd.Stdout = io.Discard
	must(cmd.Start())
	found := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(stderr)
		sc.Buffer(make([]byte, 1<<20), 1<<20)
		sent := false
		for sc.Scan() {
			if !sent {
				if a, ok := ready(sc.Text()); ok {
					found <- a
					sent = true
				}
			}
		}
	}()
	select {
	case a := <-found:
		return &proc{cmd: cmd, addr: a}
	case <-time.After(30 * time.Second):
		_ = cmd.Process.Kill()
		log.Fatalf("%s did not start", bin)
	}
	return nil
}

func (p *proc) stop() {
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	done := make(chan struct{})
	go func() { _ = p.cmd.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(20 * time.Second):
		_ = p.cmd.Process.Kill()
		<-done
	}
}

// cpuTime is the user+system CPU time process pid has used so far.
func cpuTime(pid int) time.Duration {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0
	}
	// Fields after the command name (which may hold spaces) in parentheses.
	f := strings.Fields(string(b[strings.LastIndexByte(string(b), ')')+1:]))
	if len(f) < 13 {
		return 0
	}
	ut, _ := strconv.ParseInt(f[11], 10, 64)
	st, _ := strconv.ParseInt(f[12], 10, 64)
	return time.Duration(ut+st) * time.Second / 100 // USER_HZ
}

// selfCPU is the CPU time this process has used so far.
func selfCPU() time.Duration {
	var ru syscall.Rusage
	if syscall.Getrusage(syscall.RUSAGE_SELF, &ru) != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

func (p *proc) rssMiB() float64 {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", p.cmd.Process.Pid))
	must(err)
	for _, l := range strings.Split(string(b), "\n") {
		if strings.HasPrefix(l, "VmRSS:") {
			f := strings.Fields(l)
			kb, _ := strconv.ParseFloat(f[1], 64)
			return kb / 1024
		}
	}
	return 0
}

func startGateway(bin string, cfg string) *proc {
	file := filepath.Join(workdir, fmt.Sprintf("sb-%d.yaml", time.Now().UnixNano()))
	must(os.WriteFile(file, []byte(cfg), 0o600))
	args := []string{"serve", "--config", file}
	if dir := os.Getenv("BENCH_PROFILE_DIR"); dir != "" {
		must(os.MkdirAll(dir, 0o755)) // the gateway would not start without it
		args = append(args, "--cpuprofile", filepath.Join(dir, fmt.Sprintf("gateway-%d.pprof", time.Now().UnixNano())))
	}
	return startProc(bin, args, func(line string) (string, bool) {
		var m map[string]any
		if json.Unmarshal([]byte(line), &m) == nil && m["msg"] == "switchboard serving" {
			a, _ := m["listen"].(string)
			return a, true
		}
		return "", false
	})
}

// gatewayConfig: one tenant, one Twilio source, one destination. held
// limits the destination to a trickle so events stay queued.
func gatewayConfig(redisAddr, destURL string, held bool) string {
	return gatewayConfigWindow(redisAddr, destURL, held, "100us")
}

func gatewayConfigWindow(redisAddr, destURL string, held bool, window string) string {
	return gatewayConfigWith(redisAddr, destURL, held, window, "")
}

// gatewayConfigWith adds extra, top-level YAML, to the configuration.
func gatewayConfigWith(redisAddr, destURL string, held bool, window, extra string) string {
	rate := ""
	if held {
		rate = "\n        rate: {per_second: 0.001, burst: 1}"
	}
	return fmt.Sprintf(`
server: {listen: "127.0.0.1:0", admin_listen: "127.0.0.1:0"}
redis: {url: "redis://%s/0", group_commit_window: %s}
delivery: {allow_private_networks: true, timeout: 5s, max_in_flight: 64}
%s
tenants:
  bench:
    sources:
      tw: {carrier: twilio, secret: %s}
    destinations:
      app:
        url: %q
        secret: %s%s
    routes:
      - to: [app]
`, redisAddr, window, extra, secret, destURL, whsec, rate)
}

// pacedRates are the offered loads of the paced latency figures: about a
// quarter and a half of what this kind of 2-core machine sustains, so that
// they show the latency of a callback on a busy but not saturated gateway,
// where the closed-loop figures show it at saturation (64 connections as
// fast as they go, where latency is 64 / rate).
var pacedRates = []int{2500, 5000}

func ms(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }

// loadFor sends the load to url and logs, besides the result, the CPU time
// each process spent per request: the server, Redis (pids) and this
// process (the load generator, and the sink of an end-to-end run).
func loadFor(url, prefix string, pids ...int) measured {
	return loadAt(url, prefix, 0, pids...)
}

// loadAt is loadFor paced at rate requests/s (0: as fast as they go).
func loadAt(url, prefix string, rate float64, pids ...int) measured {
	n := 40_000 * seconds
	if short {
		n = 2_000
	}
	cbs := load.Prepare(url, secret, prefix, n)
	before := make([]time.Duration, len(pids))
	for i, pid := range pids {
		before[i] = cpuTime(pid)
	}
	self := selfCPU()
	r := load.Run(context.Background(), load.Config{URL: url, Conns: 64, Duration: time.Duration(seconds) * time.Second, Rate: rate}, cbs)
	log.Printf("  %s", r)
	m := measured{Result: r}
	if r.Requests > 0 {
		per := func(d time.Duration) float64 { return float64(d.Nanoseconds()) / 1000 / float64(r.Requests) }
		cpu := make([]float64, len(pids))
		for i, pid := range pids {
			cpu[i] = per(cpuTime(pid) - before[i])
		}
		m.serverCPU, m.redisCPU, m.loadCPU = cpu[0], cpu[1], per(selfCPU()-self)
		log.Printf("  CPU per request: server %.1fµs, redis %.1fµs, load generator %.1fµs", m.serverCPU, m.redisCPU, m.loadCPU)
	}
	if r.Errors > 0 {
		log.Printf("  warning: %d errors", r.Errors)
	}
	return m
}

// measured is a load run with the CPU time each process spent per request
// (µs): the server, its Redis, and the load generator.
type measured struct {
	load.Result
	serverCPU, redisCPU, loadCPU float64
}

func measureFloor(bin string, aof bool, run int) measured {
	return measureFloorRate(bin, aof, run, 0)
}

// measureFloorGroup measures the floor with group commit (floor -group).
func measureFloorGroup(bin string, run int) measured {
	return measureFloorArgs(bin, false, run, 0, "-group")
}

func measureFloorRate(bin string, aof bool, run int, rate float64) measured {
	return measureFloorArgs(bin, aof, run, rate)
}

func measureFloorArgs(bin string, aof bool, run int, rate float64, extra ...string) measured {
	rs := startRedis(aof)
	defer rs.stop()
	p := startProc(bin, append([]string{"--redis", "redis://" + rs.addr + "/0", "--secret", secret}, extra...), func(line string) (string, bool) {
		if i := strings.Index(line, "floor listening on "); i >= 0 {
			return strings.TrimSpace(line[i+len("floor listening on "):]), true
		}
		return "", false
	})
	defer p.stop()
	return loadAt("http://"+p.addr+"/hooks/bench/tw", fmt.Sprintf("F%d", run), rate, p.cmd.Process.Pid, rs.cmd.Process.Pid)
}

func measureIngest(bin string, aof bool, run int) measured {
	return measureIngestWindow(bin, aof, run, "100us")
}

func measureIngestWindow(bin string, aof bool, run int, window string) measured {
	return measureIngestRate(bin, aof, run, window, 0)
}

func measureIngestRate(bin string, aof bool, run int, window string, rate float64) measured {
	return measureIngestWith(bin, aof, run, window, rate, "")
}

// measureIngestWith is measureIngestRate with extra top-level YAML in the
// gateway's configuration.
func measureIngestWith(bin string, aof bool, run int, window string, rate float64, extra string) measured {
	rs := startRedis(aof)
	defer rs.stop()
	p := startGateway(bin, gatewayConfigWith(rs.addr, "http://127.0.0.1:9/never", true, window, extra))
	defer p.stop()
	return loadAt("http://"+p.addr+"/hooks/bench/tw", fmt.Sprintf("I%d", run), rate, p.cmd.Process.Pid, rs.cmd.Process.Pid)
}

// measureEndToEnd sends a load and counts deliveries at a local sink until
// every accepted callback has arrived; the rate is delivered events over the
// time from the first callback to the last delivery.
func measureEndToEnd(bin string, aof bool, run int) float64 {
	rs := startRedis(aof)
	defer rs.stop()
	sink, err := load.StartSink() // lean, like the load generator: it shares the cores
	must(err)
	defer sink.Close()
	p := startGateway(bin, gatewayConfig(rs.addr, sink.URL(), false))
	defer p.stop()
	r := loadFor("http://"+p.addr+"/hooks/bench/tw", fmt.Sprintf("E%d", run), p.cmd.Process.Pid, rs.cmd.Process.Pid)
	accepted := int64(r.Requests - r.Errors)
	atEnd, endAt := sink.Count(), time.Now()
	deadline := time.Now().Add(120 * time.Second)
	for sink.Count() < accepted && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	if err := sink.Err(); err != nil {
		log.Fatalf("the sink could not read a delivery: %v", err)
	}
	// From the first callback sent (not from the preparing of the signed
	// callbacks, which precedes it) to the last delivery.
	got, last := sink.Count(), sink.Last()
	elapsed := last.Sub(r.Start)
	rate := float64(got) / elapsed.Seconds()
	drain := 0.0 // deliveries per second after the load ended, if any came then
	if tail := last.Sub(endAt); tail > 0 {
		drain = float64(got-atEnd) / tail.Seconds()
	}
	log.Printf("  delivered %d of %d accepted in %v: %.0f/s (%d while the load ran, then %.0f/s)", got, accepted,
		elapsed.Round(time.Millisecond), rate, atEnd, drain)
	return rate
}

// measureBacklog fills Redis with n events exactly as the gateway stores
// them (the Twilio parser, the normalized event, the dedup key), measures
// Redis memory per event, then starts a gateway whose destination is held
// and reads its RSS.
func measureBacklog(bin string, n int, history bool) (perEvent, rss float64, rawSize int) {
	rs := startRedis(false)
	defer rs.stop()
	ctx := context.Background()
	before := usedMemory(rs.rdb)
	store := queue.New(rs.rdb)
	tw, err := carrier.New(carrier.Config{Carrier: "twilio", Secret: secret})
	must(err)
	target := "http://127.0.0.1/hooks/bench/tw"
	tmpl := load.Prepare(target, secret, "M", 1)[0]
	rawSize = len(tmpl.Body)
	const batch = 512
	now := time.Now()
	for i := 0; i < n; i += batch {
		entries := make([]*queue.Entry, 0, batch)
		for j := i; j < min(n, i+batch); j++ {
			body := load.Prepare(target, secret, fmt.Sprintf("M%d-", j), 1)[0].Body
			req := &carrier.Request{Method: http.MethodPost, URL: target, Body: body, Now: now}
			req.Header = http.Header{"Content-Type": {"application/x-www-form-urlencoded"}}
			events, err := tw.Parse(req)
			must(err)
			e := &events[0]
			e.ID = switchboard.NewEventID(now)
			e.Timestamp = switchboard.NewTime(now)
			e.Tenant, e.Source, e.Carrier = "bench", "tw", "twilio"
			b, _ := json.Marshal(e)
			// Exactly what the gateway stores: the job, the dedup key and
			// the event history (72h by default).
			entry := &queue.Entry{Tenant: "bench", DedupKey: e.DedupKey(), EventID: e.ID, Event: b,
				Destinations: []string{"app"}, Now: now, MessageID: e.Data.MessageID}
			if history {
				entry.History = 72 * time.Hour
			}
			entries = append(entries, entry)
		}
		_, err := store.Enqueue(ctx, 24*time.Hour, entries...)
		must(err)
	}
	xlen, err := rs.rdb.XLen(ctx, "sb:{bench}:d:app").Result()
	must(err)
	if int(xlen) != n {
		log.Fatalf("backlog holds %d events, want %d", xlen, n)
	}
	perEvent = float64(usedMemory(rs.rdb)-before) / float64(n)
	p := startGateway(bin, gatewayConfig(rs.addr, "http://127.0.0.1:9/never", true))
	defer p.stop()
	time.Sleep(3 * time.Second) // let the workers settle on the backlog
	rss = p.rssMiB()
	log.Printf("  %d queued: %.0f bytes per event in Redis (raw callback %d bytes), gateway RSS %.1f MiB", n, perEvent, rawSize, rss)
	return perEvent, rss, rawSize
}

func usedMemory(rdb *redis.Client) int64 {
	info, err := rdb.Info(context.Background(), "memory").Result()
	must(err)
	for _, l := range strings.Split(info, "\r\n") {
		if v, ok := strings.CutPrefix(l, "used_memory:"); ok {
			n, _ := strconv.ParseInt(v, 10, 64)
			return n
		}
	}
	return 0
}

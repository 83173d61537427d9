// Command switchboard is the gateway's one binary: serve, check, dlq,
// admin, simulate, sink and version. It parses flags and wires; the work is done
// by the gateway, queue and policy packages.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"runtime/debug"
	"runtime/pprof"
	"strings"
	"syscall"
	"time"

	"github.com/redis/go-redis/v9"
	"golang.org/x/time/rate"

	"github.com/switchboard-gw/switchboard/gateway"
	"github.com/switchboard-gw/switchboard/gateway/delivery"
	"github.com/switchboard-gw/switchboard/policy"
)

// version is set at build time with -ldflags "-X main.version=…".
var version = ""

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

const usage = `switchboard — a webhook relay gateway for messaging carriers

Usage:
  switchboard serve    --config FILE          run the gateway
  switchboard check    --config FILE          validate a configuration
  switchboard dlq list|replay|purge …         inspect and replay dead letters (via Redis)
  switchboard admin COMMAND …                 the admin API: stats, dead letters, events, recover
  switchboard simulate --url URL --carrier C --secret S …
                                              send a correctly signed carrier callback
  switchboard sink     --listen ADDR --secret whsec_…
                                              receive and verify deliveries, print them
  switchboard version                         print the version

Run "switchboard COMMAND --help" for a command's flags.
`

func run(args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		fmt.Fprint(stderr, usage)
		return 2
	}
	cmd, rest := args[0], args[1:]
	switch cmd {
	case "serve":
		return cmdServe(rest, stdout, stderr)
	case "check":
		return cmdCheck(rest, stdout, stderr)
	case "dlq":
		return cmdDLQ(rest, stdout, stderr)
	case "admin":
		return cmdAdmin(rest, stdout, stderr)
	case "simulate":
		return cmdSimulate(rest, stdout, stderr)
	case "sink":
		return cmdSink(rest, stdout, stderr)
	case "version", "--version", "-version":
		fmt.Fprintf(stdout, "switchboard %s\n", versionString())
		return 0
	case "help", "--help", "-help", "-h":
		fmt.Fprint(stdout, usage)
		return 0
	}
	fmt.Fprintf(stderr, "switchboard: unknown command %q\n\n%s", cmd, usage)
	return 2
}

func versionString() string {
	if version != "" {
		return version
	}
	if bi, ok := debug.ReadBuildInfo(); ok && bi.Main.Version != "" && bi.Main.Version != "(devel)" {
		return bi.Main.Version
	}
	return "dev"
}

// newFlags returns a flag set whose --help prints the command's usage to
// stdout and exits 0, and whose errors print to stderr.
func newFlags(name, synopsis string, stderr io.Writer) *flag.FlagSet {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprintf(fs.Output(), "Usage: switchboard %s\n\nFlags:\n", synopsis)
		fs.PrintDefaults()
	}
	return fs
}

// parse parses flags; it returns (exit code, false) when the command must
// stop: 0 after --help, 2 after a bad flag.
func parse(fs *flag.FlagSet, args []string, stdout io.Writer) (int, bool) {
	// Parse would print the usage itself, to stderr; it is printed once,
	// here: to stdout when asked for, to stderr after a bad flag.
	usage := fs.Usage
	fs.Usage = func() {}
	err := fs.Parse(args)
	fs.Usage = usage
	if err != nil {
		if errors.Is(err, flag.ErrHelp) {
			fs.SetOutput(stdout)
			fs.Usage()
			return 0, false
		}
		fs.Usage()
		return 2, false
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(fs.Output(), "unexpected arguments: %s\n", strings.Join(fs.Args(), " "))
		fs.Usage()
		return 2, false
	}
	// A missing --config is a usage error, exit code 2, in every command.
	if f := fs.Lookup("config"); f != nil && f.Value.String() == "" {
		fmt.Fprintln(fs.Output(), "--config is required")
		fs.Usage()
		return 2, false
	}
	return 0, true
}

// loadConfig loads and fully validates a config, carriers included (the
// gateway package sets policy.SourceCheck), printing every problem as
// FILE:LINE: key.path: problem.
func loadConfig(file string, stderr io.Writer) (*policy.Config, bool) {
	cfg, err := policy.Load(file)
	if err != nil {
		var errs policy.Errors
		if errors.As(err, &errs) {
			for _, e := range errs {
				fmt.Fprintln(stderr, e.Error())
			}
		} else {
			fmt.Fprintf(stderr, "%s: %v\n", file, err)
		}
		return nil, false
	}
	return cfg, true
}

func cmdCheck(args []string, stdout, stderr io.Writer) int {
	fs := newFlags("check", "check --config FILE", stderr)
	file := fs.String("config", "", "configuration `file` to validate")
	if code, ok := parse(fs, args, stdout); !ok {
		return code
	}
	cfg, ok := loadConfig(*file, stderr)
	if !ok {
		return 1
	}
	t, s, d, r := cfg.Counts()
	fmt.Fprintf(stdout, "%s: ok: %d tenants, %d sources, %d destinations, %d routes\n", *file, t, s, d, r)
	if t == 0 {
		fmt.Fprintf(stderr, "%s: note: no tenant is configured, so a gateway serving it takes no callback (is this the right file?)\n", *file)
	}
	return 0
}

// serveGCPercent is serve's garbage collection target unless GOGC is set.
const serveGCPercent = 400

func cmdServe(args []string, stdout, stderr io.Writer) int {
	fs := newFlags("serve", "serve --config FILE [--watch]", stderr)
	file := fs.String("config", "", "configuration `file`")
	watch := fs.Bool("watch", false, "reload the configuration when the file (or its tenants_dir) changes; SIGHUP reloads it too")
	every := fs.Duration("watch-interval", time.Second, "how often --watch checks the files")
	cpuProfile := fs.String("cpuprofile", "", "write a CPU profile (go tool pprof) of the whole run to `file`")
	var level slog.Level
	fs.TextVar(&level, "log-level", slog.LevelInfo, "least `level` logged: debug, info, warn or error (warn leaves out the line per callback and per delivery attempt)")
	if code, ok := parse(fs, args, stdout); !ok {
		return code
	}
	if os.Getenv("GOGC") == "" {
		// The live heap is small (the backlog lives in Redis): collecting
		// at 5x it rather than 2x cut the gateway's CPU per callback by
		// 14% in make bench, for some tens of MiB. GOGC overrides.
		debug.SetGCPercent(serveGCPercent)
	}
	lw := newLogWriter(stderr) // one write for many lines under load
	defer lw.Close()
	log := newLoggerFor(stderr, lw, level)
	if *cpuProfile != "" {
		f, err := os.Create(*cpuProfile)
		if err == nil {
			err = pprof.StartCPUProfile(f)
		}
		if err != nil {
			log.Error("cannot write the CPU profile", "err", err.Error())
			return 1
		}
		defer f.Close()
		defer pprof.StopCPUProfile()
	}
	cfg, ok := loadConfig(*file, stderr)
	if !ok {
		return 1
	}
	redis.SetLogger(&redisLog{log: log, every: rate.Sometimes{First: 3, Interval: 10 * time.Second}})
	delivery.UserAgent = "Switchboard/" + versionString()
	srv, err := gateway.Start(cfg, log, gateway.Options{})
	if err != nil {
		log.Error("cannot start", "err", err.Error())
		return 1
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	// SIGHUP reloads (it would otherwise end the process).
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)
	go func() {
		for {
			select {
			case <-ctx.Done():
				return
			case <-hup:
				log.Info("SIGHUP: reloading the configuration", "file", *file)
				_ = srv.ReloadFile(*file)
			}
		}
	}()
	if *watch {
		go srv.Watch(ctx, *file, max(*every, 10*time.Millisecond))
	}
	if err := srv.Serve(ctx); err != nil {
		log.Error("stopped with an error", "err", err.Error())
		return 1
	}
	return 0
}

// redisLog passes go-redis's own messages (a failing dial during an
// outage, every few hundred milliseconds) into the structured log, a few
// at first and then one per interval, so that an outage neither breaks the
// JSON log nor floods it; the gateway logs the outage itself.
type redisLog struct {
	log   *slog.Logger
	every rate.Sometimes
}

func (l *redisLog) Printf(_ context.Context, format string, v ...any) {
	l.every.Do(func() { l.log.Warn("redis client", "detail", fmt.Sprintf(format, v...)) })
}

// newLogger logs JSON, or text when stderr is a terminal.
func newLogger(w io.Writer) *slog.Logger { return newLoggerFor(w, w, slog.LevelInfo) }

// newLoggerFor logs lines of level and above to out, as JSON or, when w is
// a terminal, as text.
func newLoggerFor(w, out io.Writer, level slog.Level) *slog.Logger {
	opts := &slog.HandlerOptions{Level: level}
	if f, ok := w.(*os.File); ok {
		if st, err := f.Stat(); err == nil && st.Mode()&os.ModeCharDevice != 0 {
			return slog.New(slog.NewTextHandler(out, opts))
		}
	}
	return slog.New(slog.NewJSONHandler(out, opts))
}

package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/switchboard-gw/switchboard/queue"
)

// stringsFlag is a repeatable string flag.
type stringsFlag []string

func (s *stringsFlag) String() string     { return strings.Join(*s, ",") }
func (s *stringsFlag) Set(v string) error { *s = append(*s, v); return nil }

// deadLetterLine is one line of `dlq list`.
type deadLetterLine struct {
	ID          string `json:"id"`
	Destination string `json:"destination"`
	EventID     string `json:"event_id"`
	Attempts    int    `json:"attempts"`
	LastError   string `json:"last_error"`
	FailedAt    string `json:"failed_at"`
}

func cmdDLQ(args []string, stdout, stderr io.Writer) int {
	const sub = "dlq list|replay|purge --config FILE --tenant T [--destination D] [--id ID …|--all]"
	if len(args) == 0 || (args[0] != "list" && args[0] != "replay" && args[0] != "purge") {
		if len(args) > 0 && (args[0] == "--help" || args[0] == "-h" || args[0] == "help") {
			fmt.Fprintf(stdout, "Usage: switchboard %s\n", sub)
			return 0
		}
		fmt.Fprintf(stderr, "Usage: switchboard %s\n", sub)
		return 2
	}
	action := args[0]
	synopsis := "dlq list --config FILE --tenant T [--destination D] [--limit N]"
	if action != "list" {
		synopsis = "dlq " + action + " --config FILE --tenant T (--id ID [--id ID…] | --all) [--destination D]"
	}
	fs := newFlags("dlq "+action, synopsis, stderr)
	file := fs.String("config", "", "configuration `file` (its redis.url is used)")
	tenantID := fs.String("tenant", "", "`tenant` whose dead letters to use")
	dest := fs.String("destination", "", "only this `destination`")
	var ids stringsFlag
	all := false
	limit := 0
	if action == "list" {
		fs.IntVar(&limit, "limit", 0, "at most `N` entries, oldest first (0: every one)")
	} else {
		fs.Var(&ids, "id", "dead-letter entry `ID` (repeatable)")
		fs.BoolVar(&all, "all", false, "every entry (of --destination when given)")
	}
	if code, ok := parse(fs, args[1:], stdout); !ok {
		return code
	}
	if *tenantID == "" {
		fmt.Fprintln(stderr, "--tenant is required")
		return 2
	}
	if limit < 0 {
		fmt.Fprintln(stderr, "--limit must be 0 (every entry) or more")
		return 2
	}
	if action != "list" && (len(ids) == 0) == !all {
		fmt.Fprintln(stderr, "give either --id (one or more) or --all")
		return 2
	}
	cfg, ok := loadConfig(*file, stderr)
	if !ok {
		return 1
	}
	// A tenant or destination removed from the configuration keeps its jobs
	// in Redis: say so, and still show (or replay, or purge) them.
	if t, ok := cfg.Tenants[*tenantID]; !ok {
		fmt.Fprintf(stderr, "warning: tenant %q is not in %s (removed?); using what Redis holds for it\n", *tenantID, *file)
	} else if _, ok := t.Destinations[*dest]; *dest != "" && !ok {
		fmt.Fprintf(stderr, "warning: destination %q is not in tenant %s (removed?); using what Redis holds for it\n", *dest, *tenantID)
	}
	if strings.ContainsAny(*tenantID, "{}") || *tenantID == "" {
		fmt.Fprintf(stderr, "tenant %q is not a tenant name\n", *tenantID)
		return 1
	}
	if cfg.Redis.URL == "" {
		fmt.Fprintln(stderr, "redis.url is empty: the embedded store lives inside `switchboard serve` and cannot be reached from here; use the admin API (switchboard admin dlq …) or configure redis.url")
		return 1
	}
	opts, err := redis.ParseURL(cfg.Redis.URL)
	if err != nil {
		fmt.Fprintln(stderr, "redis.url: cannot parse it")
		return 1
	}
	rdb := redis.NewClient(opts)
	defer rdb.Close()
	store := queue.New(rdb)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()

	switch action {
	case "list":
		entries, err := store.DLQList(ctx, *tenantID, *dest, limit)
		if err != nil {
			fmt.Fprintf(stderr, "dlq list: %v\n", err)
			return 1
		}
		enc := json.NewEncoder(stdout)
		for _, e := range entries {
			_ = enc.Encode(deadLetterLine{
				ID: e.ID, Destination: e.Destination, EventID: e.EventID, Attempts: e.Attempts,
				LastError: e.LastError, FailedAt: e.FailedAt.UTC().Format(time.RFC3339),
			})
		}
	case "replay":
		n, err := store.DLQReplay(ctx, *tenantID, *dest, ids, all, time.Now())
		if err != nil {
			fmt.Fprintf(stderr, "dlq replay: %v\n", err)
			return 1
		}
		fmt.Fprintf(stdout, "replayed %d\n", n)
	case "purge":
		n, err := store.DLQPurge(ctx, *tenantID, *dest, ids, all)
		if err != nil {
			fmt.Fprintf(stderr, "dlq purge: %v\n", err)
			return 1
		}
		fmt.Fprintf(stdout, "purged %d\n", n)
	}
	return 0
}

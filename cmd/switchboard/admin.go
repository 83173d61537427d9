package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"
)

// The admin CLI talks to the admin API, so operators need no Redis
// credentials: the server from --server (default $SWITCHBOARD_ADMIN_URL,
// else http://127.0.0.1:9090), the token from $SWITCHBOARD_ADMIN_TOKEN
// (never a flag: command lines end up in shell histories and ps).

// Environment variables the admin CLI reads.
const (
	envAdminToken = "SWITCHBOARD_ADMIN_TOKEN"
	envAdminURL   = "SWITCHBOARD_ADMIN_URL"
)

const adminUsage = `Usage: switchboard admin COMMAND [flags]

Commands (each takes --server URL and --output json|table):
  tenants                                             tenants, sources and destinations
  stats       --tenant T                              queue numbers per destination
  dlq list    --tenant T [--destination D] [--limit N]
  dlq replay  --tenant T (--id ID … | --all) [--destination D]
  dlq purge   --tenant T (--id ID … | --all) [--destination D]
  events get  --tenant T --id EVENT_ID                an event and its delivery attempts
  events find --tenant T --message-id ID              events by carrier message id
  recover     --tenant T --destination D --since TIME [--until TIME]
                                                      re-send a time window (RFC 3339)

The token comes from $SWITCHBOARD_ADMIN_TOKEN; the server from --server,
$SWITCHBOARD_ADMIN_URL or http://127.0.0.1:9090. --output json (the default)
prints one JSON object per line; table prints aligned columns.
`

// adminCmd is one parsed admin command.
type adminCmd struct {
	server, output string
	tenant         string
	stdout, stderr io.Writer
	client         *http.Client
	token          string
}

func cmdAdmin(args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		fmt.Fprint(stderr, adminUsage)
		return 2
	}
	name := args[0]
	if name == "help" || name == "--help" || name == "-h" || name == "-help" {
		fmt.Fprint(stdout, adminUsage)
		return 0
	}
	rest := args[1:]
	if name == "dlq" || name == "events" {
		if len(rest) == 0 || strings.HasPrefix(rest[0], "-") {
			fmt.Fprintf(stderr, "switchboard admin %s: which one?\n\n%s", name, adminUsage)
			return 2
		}
		name, rest = name+" "+rest[0], rest[1:]
	}
	run, ok := adminCommands[name]
	if !ok {
		fmt.Fprintf(stderr, "switchboard admin: unknown command %q\n\n%s", name, adminUsage)
		return 2
	}
	return run(rest, stdout, stderr)
}

var adminCommands map[string]func(args []string, stdout, stderr io.Writer) int

func init() {
	adminCommands = map[string]func([]string, io.Writer, io.Writer) int{
		"tenants":     adminTenants,
		"stats":       adminStats,
		"dlq list":    adminDLQList,
		"dlq replay":  func(a []string, o, e io.Writer) int { return adminDLQAct("replay", a, o, e) },
		"dlq purge":   func(a []string, o, e io.Writer) int { return adminDLQAct("purge", a, o, e) },
		"events get":  adminEventsGet,
		"events find": adminEventsFind,
		"recover":     adminRecover,
	}
}

// adminFlags returns the command's flag set with the common flags bound to c.
func adminFlags(c *adminCmd, name, synopsis string, tenant bool, stderr io.Writer) *flag.FlagSet {
	fs := newFlags("admin "+name, "admin "+synopsis, stderr)
	def := os.Getenv(envAdminURL)
	if def == "" {
		def = "http://127.0.0.1:9090"
	}
	fs.StringVar(&c.server, "server", def, "admin API `URL` (server.admin_listen)")
	fs.StringVar(&c.output, "output", "json", "output `format`: json (one object per line) or table")
	if tenant {
		fs.StringVar(&c.tenant, "tenant", "", "`tenant` id")
	}
	return fs
}

// ready checks the common flags after parsing; false means exit 2.
func (c *adminCmd) ready(needTenant bool) bool {
	if c.output != "json" && c.output != "table" {
		fmt.Fprintln(c.stderr, "--output must be json or table")
		return false
	}
	if needTenant && c.tenant == "" {
		fmt.Fprintln(c.stderr, "--tenant is required")
		return false
	}
	c.token = os.Getenv(envAdminToken)
	if c.token == "" {
		fmt.Fprintf(c.stderr, "set %s to an admin token (server.admin_token or the tenant's admin_token)\n", envAdminToken)
		return false
	}
	if !strings.Contains(c.server, "://") {
		c.server = "http://" + c.server
	}
	c.server = strings.TrimRight(c.server, "/")
	if u, err := url.Parse(c.server); err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		fmt.Fprintf(c.stderr, "--server %q is not an http(s) URL\n", c.server)
		return false
	}
	c.client = &http.Client{Timeout: 60 * time.Second}
	return true
}

// call sends one request and decodes a 2xx JSON answer into out. Errors
// carry the API's message.
func (c *adminCmd) call(method, path string, query url.Values, body, out any) error {
	u := c.server + path
	if len(query) > 0 {
		u += "?" + query.Encode()
	}
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			return err
		}
		rd = bytes.NewReader(b)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, method, u, rd)
	if err != nil {
		return fmt.Errorf("--server: %v", err)
	}
	req.Header.Set("Authorization", "Bearer "+c.token)
	req.Header.Set("Accept", "application/json")
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := c.client.Do(req)
	if err != nil {
		return fmt.Errorf("cannot reach the admin API at %s: %v", c.server, errors.Unwrap(err))
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, 64<<20))
	if err != nil {
		return fmt.Errorf("reading the answer: %v", err)
	}
	if resp.StatusCode/100 != 2 {
		var e struct {
			Error string `json:"error"`
		}
		msg := strings.TrimSpace(string(b))
		if json.Unmarshal(b, &e) == nil && e.Error != "" {
			msg = e.Error
		}
		if resp.StatusCode == http.StatusNotFound && !strings.HasPrefix(resp.Header.Get("Content-Type"), "application/json") {
			msg = "the admin API is off on this server (no admin token configured), or this is not a Switchboard admin listener"
		}
		if resp.StatusCode == http.StatusUnauthorized {
			msg += " (check " + envAdminToken + ")"
		}
		return fmt.Errorf("%s %s: %d %s", method, path, resp.StatusCode, msg)
	}
	if out == nil {
		return nil
	}
	if err := json.Unmarshal(b, out); err != nil {
		return fmt.Errorf("%s %s: unexpected answer: %v", method, path, err)
	}
	return nil
}

func (c *adminCmd) fail(err error) int {
	fmt.Fprintf(c.stderr, "switchboard admin: %v\n", err)
	return 1
}

func tenantPath(tenant, rest string) string {
	return "/admin/v1/tenants/" + url.PathEscape(tenant) + rest
}

// lines prints each value as one JSON line.
func (c *adminCmd) lines(vs ...any) {
	enc := json.NewEncoder(c.stdout)
	enc.SetEscapeHTML(false)
	for _, v := range vs {
		_ = enc.Encode(v)
	}
}

// table prints a header and rows as aligned columns.
func (c *adminCmd) table(header []string, rows [][]string) {
	tw := tabwriter.NewWriter(c.stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, strings.Join(header, "\t"))
	for _, r := range rows {
		fmt.Fprintln(tw, strings.Join(r, "\t"))
	}
	_ = tw.Flush()
}

func newAdminCmd(stdout, stderr io.Writer) *adminCmd {
	return &adminCmd{stdout: stdout, stderr: stderr}
}

// The API's shapes, as far as the CLI needs them.

type apiTenant struct {
	ID      string `json:"id"`
	Sources []struct {
		ID      string `json:"id"`
		Carrier string `json:"carrier"`
	} `json:"sources"`
	Destinations []struct {
		ID     string `json:"id"`
		Format string `json:"format"`
	} `json:"destinations"`
}

type apiStats struct {
	Tenant       string `json:"tenant"`
	Destinations []struct {
		Destination string  `json:"destination"`
		Queued      int64   `json:"queued"`
		InFlight    int64   `json:"in_flight"`
		Retrying    int64   `json:"retrying"`
		Dead        int64   `json:"dead"`
		OldestAge   float64 `json:"oldest_age_seconds"`
		Breaker     string  `json:"breaker"`
		Rate        struct {
			PerSecond float64 `json:"per_second"`
			Burst     int     `json:"burst"`
		} `json:"rate"`
	} `json:"destinations"`
}

type apiEvent struct {
	ID           string          `json:"id"`
	ReceivedAt   string          `json:"received_at"`
	Destinations []string        `json:"destinations"`
	Event        json.RawMessage `json:"event"`
	Attempts     []struct {
		Time        string  `json:"time"`
		Destination string  `json:"destination"`
		Attempt     int     `json:"attempt"`
		StatusCode  int     `json:"status_code"`
		LatencyMS   float64 `json:"latency_ms"`
		Outcome     string  `json:"outcome"`
		Error       string  `json:"error,omitempty"`
	} `json:"attempts"`
}

func adminTenants(args []string, stdout, stderr io.Writer) int {
	c := newAdminCmd(stdout, stderr)
	fs := adminFlags(c, "tenants", "tenants [--server URL] [--output json|table]", false, stderr)
	if code, ok := parse(fs, args, stdout); !ok {
		return code
	}
	if !c.ready(false) {
		return 2
	}
	var out struct {
		Tenants []json.RawMessage `json:"tenants"`
	}
	if err := c.call(http.MethodGet, "/admin/v1/tenants", nil, nil, &out); err != nil {
		return c.fail(err)
	}
	if c.output == "json" {
		for _, t := range out.Tenants {
			c.lines(t)
		}
		return 0
	}
	var rows [][]string
	for _, raw := range out.Tenants {
		var t apiTenant
		_ = json.Unmarshal(raw, &t)
		var src, dst []string
		for _, s := range t.Sources {
			src = append(src, s.ID+"("+s.Carrier+")")
		}
		for _, d := range t.Destinations {
			dst = append(dst, d.ID+"("+d.Format+")")
		}
		rows = append(rows, []string{t.ID, strings.Join(src, ","), strings.Join(dst, ",")})
	}
	c.table([]string{"TENANT", "SOURCES", "DESTINATIONS"}, rows)
	return 0
}

func adminStats(args []string, stdout, stderr io.Writer) int {
	c := newAdminCmd(stdout, stderr)
	fs := adminFlags(c, "stats", "stats --tenant T [--server URL] [--output json|table]", true, stderr)
	if code, ok := parse(fs, args, stdout); !ok {
		return code
	}
	if !c.ready(true) {
		return 2
	}
	var raw struct {
		Destinations []map[string]any `json:"destinations"`
	}
	var st apiStats
	var body json.RawMessage
	if err := c.call(http.MethodGet, tenantPath(c.tenant, "/stats"), nil, nil, &body); err != nil {
		return c.fail(err)
	}
	_ = json.Unmarshal(body, &raw)
	_ = json.Unmarshal(body, &st)
	if c.output == "json" {
		for _, d := range raw.Destinations {
			d["tenant"] = c.tenant
			c.lines(d)
		}
		return 0
	}
	var rows [][]string
	for _, d := range st.Destinations {
		rate := "unlimited"
		if d.Rate.PerSecond > 0 {
			rate = fmt.Sprintf("%g/s burst %d", d.Rate.PerSecond, d.Rate.Burst)
		}
		oldest := (time.Duration(d.OldestAge * float64(time.Second))).Round(time.Millisecond).String()
		rows = append(rows, []string{d.Destination, itoa(d.Queued), itoa(d.InFlight), itoa(d.Retrying),
			itoa(d.Dead), oldest, d.Breaker, rate})
	}
	c.table([]string{"DESTINATION", "QUEUED", "IN_FLIGHT", "RETRYING", "DEAD", "OLDEST", "BREAKER", "RATE"}, rows)
	return 0
}

func itoa(n int64) string { return strconv.FormatInt(n, 10) }

func adminDLQList(args []string, stdout, stderr io.Writer) int {
	c := newAdminCmd(stdout, stderr)
	fs := adminFlags(c, "dlq list", "dlq list --tenant T [--destination D] [--limit N] [--server URL] [--output json|table]", true, stderr)
	dest := fs.String("destination", "", "only this `destination`")
	limit := fs.Int("limit", 1000, "at most `N` entries, oldest first (1 to 10000)")
	if code, ok := parse(fs, args, stdout); !ok {
		return code
	}
	if *limit < 1 || *limit > 10000 {
		// Unlike the local dlq list's, where 0 is every one: the API's
		// answers are bounded.
		fmt.Fprintln(stderr, "--limit must be from 1 to 10000")
		return 2
	}
	if !c.ready(true) {
		return 2
	}
	q := url.Values{"limit": {strconv.Itoa(*limit)}}
	if *dest != "" {
		q.Set("destination", *dest)
	}
	var out struct {
		Entries []deadLetterLine `json:"entries"`
	}
	if err := c.call(http.MethodGet, tenantPath(c.tenant, "/dlq"), q, nil, &out); err != nil {
		return c.fail(err)
	}
	if c.output == "json" {
		for _, e := range out.Entries {
			c.lines(e)
		}
		return 0
	}
	var rows [][]string
	for _, e := range out.Entries {
		rows = append(rows, []string{e.ID, e.Destination, e.EventID, strconv.Itoa(e.Attempts), e.FailedAt, e.LastError})
	}
	c.table([]string{"ID", "DESTINATION", "EVENT_ID", "ATTEMPTS", "FAILED_AT", "LAST_ERROR"}, rows)
	return 0
}

func adminDLQAct(action string, args []string, stdout, stderr io.Writer) int {
	c := newAdminCmd(stdout, stderr)
	fs := adminFlags(c, "dlq "+action, "dlq "+action+" --tenant T (--id ID [--id ID…] | --all) [--destination D] [--server URL]", true, stderr)
	dest := fs.String("destination", "", "only this `destination`'s entries")
	var ids stringsFlag
	fs.Var(&ids, "id", "dead-letter entry `ID` (repeatable)")
	all := fs.Bool("all", false, "every entry (of --destination when given)")
	if code, ok := parse(fs, args, stdout); !ok {
		return code
	}
	if !c.ready(true) {
		return 2
	}
	if (len(ids) == 0) == !*all {
		fmt.Fprintln(stderr, "give either --id (one or more) or --all")
		return 2
	}
	var out map[string]int
	var err error
	key := "replayed"
	if action == "replay" {
		body := map[string]any{"destination": *dest}
		if *all {
			body["all"] = true
		} else {
			body["ids"] = []string(ids)
		}
		err = c.call(http.MethodPost, tenantPath(c.tenant, "/dlq/replay"), nil, body, &out)
	} else {
		key = "purged"
		q := url.Values{}
		if *dest != "" {
			q.Set("destination", *dest)
		}
		if *all {
			q.Set("all", "true")
		}
		for _, id := range ids {
			q.Add("id", id)
		}
		err = c.call(http.MethodDelete, tenantPath(c.tenant, "/dlq"), q, nil, &out)
	}
	if err != nil {
		return c.fail(err)
	}
	c.count(key, out[key])
	return 0
}

// count prints {"key": n} or, as a table, "key n".
func (c *adminCmd) count(key string, n int) {
	if c.output == "json" {
		c.lines(map[string]int{key: n})
		return
	}
	fmt.Fprintf(c.stdout, "%s %d\n", key, n)
}

func adminEventsGet(args []string, stdout, stderr io.Writer) int {
	c := newAdminCmd(stdout, stderr)
	fs := adminFlags(c, "events get", "events get --tenant T --id EVENT_ID [--server URL] [--output json|table]", true, stderr)
	id := fs.String("id", "", "event `id` (evt_…, the webhook-id)")
	if code, ok := parse(fs, args, stdout); !ok {
		return code
	}
	if !c.ready(true) {
		return 2
	}
	if *id == "" {
		fmt.Fprintln(stderr, "--id is required")
		return 2
	}
	var raw json.RawMessage
	if err := c.call(http.MethodGet, tenantPath(c.tenant, "/events/"+url.PathEscape(*id)), nil, nil, &raw); err != nil {
		return c.fail(err)
	}
	if c.output == "json" {
		c.lines(raw)
		return 0
	}
	var e apiEvent
	_ = json.Unmarshal(raw, &e)
	c.eventTable([]apiEvent{e})
	if len(e.Attempts) > 0 {
		fmt.Fprintln(c.stdout)
		var rows [][]string
		for _, a := range e.Attempts {
			rows = append(rows, []string{a.Time, a.Destination, strconv.Itoa(a.Attempt), strconv.Itoa(a.StatusCode),
				strconv.FormatFloat(a.LatencyMS, 'f', 1, 64), a.Outcome, a.Error})
		}
		c.table([]string{"TIME", "DESTINATION", "ATTEMPT", "STATUS", "LATENCY_MS", "OUTCOME", "ERROR"}, rows)
	}
	return 0
}

// eventTable prints one row per event: no message text, no numbers.
func (c *adminCmd) eventTable(evs []apiEvent) {
	var rows [][]string
	for _, e := range evs {
		var ev struct {
			Type string `json:"type"`
			Data struct {
				MessageID string `json:"message_id"`
				Status    string `json:"status"`
			} `json:"data"`
		}
		_ = json.Unmarshal(e.Event, &ev)
		last := "-"
		if n := len(e.Attempts); n > 0 {
			last = e.Attempts[n-1].Outcome
		}
		rows = append(rows, []string{e.ID, e.ReceivedAt, ev.Type, ev.Data.MessageID, ev.Data.Status,
			strings.Join(e.Destinations, ","), strconv.Itoa(len(e.Attempts)), last})
	}
	c.table([]string{"EVENT_ID", "RECEIVED_AT", "TYPE", "MESSAGE_ID", "STATUS", "DESTINATIONS", "ATTEMPTS", "LAST_OUTCOME"}, rows)
}

func adminEventsFind(args []string, stdout, stderr io.Writer) int {
	c := newAdminCmd(stdout, stderr)
	fs := adminFlags(c, "events find", "events find --tenant T --message-id ID [--server URL] [--output json|table]", true, stderr)
	msg := fs.String("message-id", "", "the carrier's message `id` (data.message_id)")
	if code, ok := parse(fs, args, stdout); !ok {
		return code
	}
	if !c.ready(true) {
		return 2
	}
	if *msg == "" {
		fmt.Fprintln(stderr, "--message-id is required")
		return 2
	}
	var out struct {
		Events []json.RawMessage `json:"events"`
	}
	if err := c.call(http.MethodGet, tenantPath(c.tenant, "/events"), url.Values{"message_id": {*msg}}, nil, &out); err != nil {
		return c.fail(err)
	}
	if c.output == "json" {
		for _, e := range out.Events {
			c.lines(e)
		}
		return 0
	}
	evs := make([]apiEvent, len(out.Events))
	for i, raw := range out.Events {
		_ = json.Unmarshal(raw, &evs[i])
	}
	c.eventTable(evs)
	return 0
}

func adminRecover(args []string, stdout, stderr io.Writer) int {
	c := newAdminCmd(stdout, stderr)
	fs := adminFlags(c, "recover", "recover --tenant T --destination D --since TIME [--until TIME] [--server URL]", true, stderr)
	dest := fs.String("destination", "", "the `destination` to re-send to")
	since := fs.String("since", "", "start of the window, RFC 3339 (e.g. 2026-11-27T09:00:00Z)")
	until := fs.String("until", "", "end of the window, RFC 3339 (default: now)")
	if code, ok := parse(fs, args, stdout); !ok {
		return code
	}
	if !c.ready(true) {
		return 2
	}
	if *dest == "" || *since == "" {
		fmt.Fprintln(stderr, "--destination and --since are required")
		return 2
	}
	for _, v := range []string{*since, *until} {
		if _, err := time.Parse(time.RFC3339Nano, v); v != "" && err != nil {
			fmt.Fprintf(stderr, "%q is not an RFC 3339 time (e.g. 2026-11-27T09:00:00Z)\n", v)
			return 2
		}
	}
	body := map[string]string{"destination": *dest, "since": *since}
	if *until != "" {
		body["until"] = *until
	}
	var out map[string]int
	if err := c.call(http.MethodPost, tenantPath(c.tenant, "/recover"), nil, body, &out); err != nil {
		return c.fail(err)
	}
	c.count("replayed", out["replayed"])
	return 0
}

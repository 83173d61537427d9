package carrier

import (
	"errors"
	"net/http"
	"time"

	switchboard "github.com/switchboard-gw/switchboard"
)

func init() { register("basic", newBasic) }

// Basic accepts callbacks that carry HTTP Basic credentials and nothing
// else. The body is a normalized event or an array of them (see
// parseNormalized). Nothing is signed, so use it over HTTPS only.
//
// Config: Username and Password, both required.
type Basic struct {
	user, pass string
}

func newBasic(cfg Config) (Carrier, error) {
	if cfg.Username == "" || cfg.Password == "" {
		return nil, errors.New("basic: username and password are required")
	}
	return &Basic{user: cfg.Username, pass: cfg.Password}, nil
}

// Verify checks Authorization: Basic in constant time.
func (c *Basic) Verify(r *Request) (Proof, error) {
	return Proof{}, checkBasic("basic", r.Header, c.user, c.pass)
}

// Parse reads the body as normalized events.
func (c *Basic) Parse(r *Request) ([]switchboard.Event, error) {
	return parseNormalized("basic", r.Body)
}

// Reply is an empty 200.
func (c *Basic) Reply(*Request, []switchboard.Event) Response { return replyOK() }

func (c *Basic) simulate(kind string, m SimMessage, target string, now time.Time) (*http.Request, error) {
	req, err := newSimRequest(http.MethodPost, target, simNormalized(kind, m, now))
	if err != nil {
		return nil, err
	}
	req.Header.Set("Content-Type", "application/json")
	req.SetBasicAuth(c.user, c.pass)
	return req, nil
}

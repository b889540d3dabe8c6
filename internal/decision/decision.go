// Package decision lets programs on the same host ask the running Legate for
// a login decision: `legate checkpassword`, which Dovecot's checkpassword
// passdb runs, connects to a dedicated unix socket (listen.decision, mode
// 0660, group decision.socket_group) — never the admin socket, never the
// store. The daemon answers with the same auth.Service.Login the front-ends
// call: the same decision, audit record and throttling (docs/contract.md §9).
//
// The protocol is one JSON request and one JSON answer per connection, each
// a single line, decoded strictly and bounded in size and time.
package decision

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"time"

	"github.com/legate-proxy/legate/policy"
)

// Request is one login to decide, as Dovecot described it.
type Request struct {
	User     string `json:"user"`
	Password string `json:"password"`
	// Service is Dovecot's service name (SERVICE: imap, submission, smtp for
	// Postfix through Dovecot SASL, ...).
	Service string `json:"service"`
	// IP is the client's address (TCPREMOTEIP); empty when Dovecot did not
	// know it.
	IP string `json:"ip,omitempty"`
	// Secured says Dovecot considered the connection secured (TLS, or a
	// loopback/trusted client): AUTH_SECURED.
	Secured bool `json:"secured,omitempty"`
}

// Answer is the decision.
type Answer struct {
	Allow bool `json:"allow"`
	// User is the canonical name of the proven user (on allow).
	User string `json:"user,omitempty"`
	// Outcome and Rule are policy's (for logs, never secret).
	Outcome string `json:"outcome"`
	Rule    string `json:"rule,omitempty"`
}

// Limits of the protocol.
const (
	// MaxRequest bounds a request line (Dovecot sends at most 512 bytes of
	// user and password).
	MaxRequest = 2048
	// Timeout bounds a whole exchange, throttle delay included.
	Timeout = 30 * time.Second
)

// Protocol maps Dovecot's service name onto the protocol Legate's policy
// knows; ok is false for services Legate does not decide for (pop3, sieve,
// ...), which are refused.
func Protocol(service string) (string, bool) {
	switch service {
	case "imap":
		return policy.IMAP, true
	case "submission", "smtp":
		return policy.SMTP, true
	}
	return "", false
}

// ErrUnavailable: the daemon could not be asked (no socket, refused,
// timeout, a malformed answer). Checkpassword exits 111 on it.
var ErrUnavailable = errors.New("decision: legate cannot be asked")

// Ask sends req to the decision socket at path and returns the answer.
func Ask(ctx context.Context, path string, req Request) (Answer, error) {
	var d net.Dialer
	ctx, cancel := context.WithTimeout(ctx, Timeout)
	defer cancel()
	c, err := d.DialContext(ctx, "unix", path)
	if err != nil {
		return Answer{}, fmt.Errorf("%w: %w", ErrUnavailable, err)
	}
	defer c.Close()
	if dl, ok := ctx.Deadline(); ok {
		_ = c.SetDeadline(dl)
	}
	line, err := json.Marshal(req)
	if err != nil || len(line) >= MaxRequest {
		return Answer{}, fmt.Errorf("%w: request too long", ErrUnavailable)
	}
	if _, err := c.Write(append(line, '\n')); err != nil {
		return Answer{}, fmt.Errorf("%w: %w", ErrUnavailable, err)
	}
	var a Answer
	if err := readLine(c, &a); err != nil {
		return Answer{}, fmt.Errorf("%w: %w", ErrUnavailable, err)
	}
	return a, nil
}

// readLine reads one bounded JSON line into v, strictly: unknown fields
// and trailing data are errors.
func readLine(r io.Reader, v any) error {
	br := bufio.NewReaderSize(io.LimitReader(r, MaxRequest), MaxRequest)
	line, err := br.ReadSlice('\n')
	if err != nil {
		return fmt.Errorf("read: %w", err)
	}
	dec := json.NewDecoder(bytes.NewReader(line))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return fmt.Errorf("decode: %w", err)
	}
	if dec.More() {
		return errors.New("decode: trailing data")
	}
	return nil
}

// parseIP reads TCPREMOTEIP; an invalid or missing one is the zero Addr.
func parseIP(s string) netip.Addr {
	a, err := netip.ParseAddr(s)
	if err != nil {
		return netip.Addr{}
	}
	return a.Unmap()
}

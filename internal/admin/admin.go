// Package admin is the admin socket: a unix socket (mode 0600) on which a
// running `legate serve` answers the CLI. One JSON request per connection,
// one JSON response:
//
//	→ {"op":"apppass.create","args":{...}}
//	← {"result":{...}} or {"error":"...","usage":true}
//
// Server dispatches to a control.Service; Client implements the same methods
// so the CLI does not care whether it talks to a server or to the database.
package admin

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"

	"github.com/legate-proxy/legate/internal/control"
	"github.com/legate-proxy/legate/internal/session"
	"github.com/legate-proxy/legate/store"
)

// Operation names on the wire.
const (
	OpCreate      = "apppass.create"
	OpList        = "apppass.list"
	OpRevoke      = "apppass.revoke"
	OpExplain     = "explain"
	OpAudit       = "audit"
	OpVerifyAudit = "audit.verify"
	OpSessions    = "sessions"
	OpKill        = "sessions.kill"
	OpReport      = "report"
)

// maxRequest bounds one request on the socket.
const maxRequest = 1 << 20

type request struct {
	Op   string          `json:"op"`
	Args json.RawMessage `json:"args,omitempty"`
}

type response struct {
	Result json.RawMessage `json:"result,omitempty"`
	Error  string          `json:"error,omitempty"`
	Usage  bool            `json:"usage,omitempty"`
}

// userArg is the argument of operations that take only a user.
type userArg struct {
	User string `json:"user"`
}

// handler runs one operation.
type handler func(ctx context.Context, l *control.Service, args json.RawMessage) (any, error)

func decodeArgs[T any](raw json.RawMessage) (T, error) {
	var v T
	if len(raw) == 0 {
		return v, nil
	}
	if err := json.Unmarshal(raw, &v); err != nil {
		return v, fmt.Errorf("%w: bad arguments: %v", control.ErrUsage, err)
	}
	return v, nil
}

// op adapts a typed control method to a handler.
func op[A, R any](f func(*control.Service, context.Context, A) (R, error)) handler {
	return func(ctx context.Context, l *control.Service, raw json.RawMessage) (any, error) {
		a, err := decodeArgs[A](raw)
		if err != nil {
			return nil, err
		}
		return f(l, ctx, a)
	}
}

var handlers = map[string]handler{
	OpCreate: op((*control.Service).CreateAppPassword),
	OpList: op(func(l *control.Service, ctx context.Context, a userArg) ([]control.Listed, error) {
		return l.ListAppPasswords(ctx, a.User)
	}),
	OpRevoke:  op((*control.Service).RevokeAppPasswords),
	OpExplain: op((*control.Service).Explain),
	OpAudit:   op((*control.Service).Audit),
	OpVerifyAudit: op(func(l *control.Service, ctx context.Context, _ struct{}) (store.VerifyResult, error) {
		return l.VerifyAudit(ctx)
	}),
	OpSessions: op(func(l *control.Service, ctx context.Context, a userArg) ([]session.Info, error) {
		return l.Sessions(ctx, a.User)
	}),
	OpKill:   op((*control.Service).KillSessions),
	OpReport: op((*control.Service).Report),
}

// serveOne answers one request read from rw.
func serveOne(ctx context.Context, l *control.Service, r io.Reader, w io.Writer) error {
	var req request
	if err := json.NewDecoder(io.LimitReader(r, maxRequest)).Decode(&req); err != nil {
		return writeResponse(w, response{Error: "admin: bad request: " + err.Error(), Usage: true})
	}
	h, ok := handlers[req.Op]
	if !ok {
		return writeResponse(w, response{Error: fmt.Sprintf("admin: unknown operation %q", req.Op), Usage: true})
	}
	ctx, cancel := context.WithTimeout(ctx, OperationTimeout)
	defer cancel()
	res, err := h(ctx, l, req.Args)
	if err != nil {
		return writeResponse(w, response{Error: err.Error(), Usage: errors.Is(err, control.ErrUsage)})
	}
	b, err := json.Marshal(res)
	if err != nil {
		return writeResponse(w, response{Error: "admin: encode: " + err.Error()})
	}
	return writeResponse(w, response{Result: b})
}

func writeResponse(w io.Writer, r response) error {
	return json.NewEncoder(w).Encode(r)
}

package admin

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"time"

	"github.com/legate-proxy/legate/internal/control"
	"github.com/legate-proxy/legate/internal/session"
	"github.com/legate-proxy/legate/store"
)

// Client talks to a running server over its socket.
type Client struct {
	Path string
}

// ErrNotRunning: nothing answers on the socket.
var ErrNotRunning = errors.New("admin: no server on the socket")

// Dial returns a client if a server answers on path.
func Dial(path string) (*Client, error) {
	c, err := net.DialTimeout("unix", path, time.Second)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrNotRunning, err)
	}
	c.Close()
	return &Client{Path: path}, nil
}

func call[R any](ctx context.Context, c *Client, op string, args any) (R, error) {
	var zero R
	raw, err := json.Marshal(args)
	if err != nil {
		return zero, err
	}
	var d net.Dialer
	conn, err := d.DialContext(ctx, "unix", c.Path)
	if err != nil {
		return zero, fmt.Errorf("admin: %w", err)
	}
	defer conn.Close()
	if dl, ok := ctx.Deadline(); ok {
		conn.SetDeadline(dl)
	} else {
		conn.SetDeadline(time.Now().Add(2 * time.Minute))
	}
	if err := json.NewEncoder(conn).Encode(request{Op: op, Args: raw}); err != nil {
		return zero, fmt.Errorf("admin: send: %w", err)
	}
	var resp response
	if err := json.NewDecoder(conn).Decode(&resp); err != nil {
		return zero, fmt.Errorf("admin: receive: %w", err)
	}
	if resp.Error != "" {
		if resp.Usage {
			return zero, fmt.Errorf("%w: %s", control.ErrUsage, resp.Error)
		}
		return zero, errors.New(resp.Error)
	}
	var r R
	if err := json.Unmarshal(resp.Result, &r); err != nil {
		return zero, fmt.Errorf("admin: decode result: %w", err)
	}
	return r, nil
}

func (c *Client) CreateAppPassword(ctx context.Context, a control.CreateArgs) (control.Created, error) {
	return call[control.Created](ctx, c, OpCreate, a)
}

func (c *Client) ListAppPasswords(ctx context.Context, user string) ([]control.Listed, error) {
	return call[[]control.Listed](ctx, c, OpList, userArg{User: user})
}

func (c *Client) RevokeAppPasswords(ctx context.Context, a control.RevokeArgs) (control.Revoked, error) {
	return call[control.Revoked](ctx, c, OpRevoke, a)
}

func (c *Client) Explain(ctx context.Context, a control.ExplainArgs) (control.Explanation, error) {
	return call[control.Explanation](ctx, c, OpExplain, a)
}

func (c *Client) Audit(ctx context.Context, a control.AuditArgs) ([]store.AuditRecord, error) {
	return call[[]store.AuditRecord](ctx, c, OpAudit, a)
}

func (c *Client) VerifyAudit(ctx context.Context) (store.VerifyResult, error) {
	return call[store.VerifyResult](ctx, c, OpVerifyAudit, struct{}{})
}

func (c *Client) Sessions(ctx context.Context, user string) ([]session.Info, error) {
	return call[[]session.Info](ctx, c, OpSessions, userArg{User: user})
}

func (c *Client) KillSessions(ctx context.Context, a control.KillArgs) (int, error) {
	return call[int](ctx, c, OpKill, a)
}

func (c *Client) Report(ctx context.Context, a control.ReportArgs) (control.Report, error) {
	return call[control.Report](ctx, c, OpReport, a)
}

package admin

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"os"
	"syscall"
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

// ErrUntrusted: the socket at listen.admin belongs to someone other than
// root or the user running the CLI, who could answer in the server's name
// (and read the requests: app-password names, explain's password).
var ErrUntrusted = errors.New("admin: socket not owned by root or by you; not talking to it")

// Dial returns a client if a server answers on path. The socket must be a
// socket owned by root or by the invoking user (ErrUntrusted otherwise);
// nothing answering is ErrNotRunning.
func Dial(path string) (*Client, error) {
	if err := trusted(path); err != nil {
		return nil, err
	}
	c, err := net.DialTimeout("unix", path, time.Second)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrNotRunning, err)
	}
	c.Close()
	return &Client{Path: path}, nil
}

// trusted checks path's owner (root or the caller) and type. A missing path
// is ErrNotRunning.
func trusted(path string) error {
	fi, err := os.Lstat(path)
	if err != nil {
		return fmt.Errorf("%w: %v", ErrNotRunning, err)
	}
	if fi.Mode().Type() != fs.ModeSocket {
		return fmt.Errorf("admin: listen.admin %s is a %s, %w", path, kind(fi.Mode()), ErrNotSocket)
	}
	st, ok := fi.Sys().(*syscall.Stat_t)
	if !ok {
		return fmt.Errorf("%w: %s: owner unknown", ErrUntrusted, path)
	}
	if uid := os.Getuid(); st.Uid != 0 && int(st.Uid) != uid {
		return fmt.Errorf("%w: %s belongs to uid %d", ErrUntrusted, path, st.Uid)
	}
	return nil
}

func call[R any](ctx context.Context, c *Client, op string, args any) (R, error) {
	var zero R
	raw, err := json.Marshal(args)
	if err != nil {
		return zero, err
	}
	if err := trusted(c.Path); err != nil {
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

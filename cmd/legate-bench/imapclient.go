package main

import (
	"bufio"
	"context"
	"crypto/tls"
	"fmt"
	"io"
	"net"
	"strconv"
	"strings"
	"time"
)

// imapTimeout bounds every command of the load-generating IMAP client.
const imapTimeout = 30 * time.Second

// imapConn is a minimal IMAP client: enough to log in, select, fetch and
// log out, reading literals without keeping them.
type imapConn struct {
	c   net.Conn
	r   *bufio.Reader
	tag int
}

// dialIMAP connects (with TLS when tc is not nil) and reads the greeting.
func dialIMAP(ctx context.Context, addr string, tc *tls.Config) (*imapConn, error) {
	var d net.Dialer
	c, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return nil, err
	}
	if tc != nil {
		tcn := tls.Client(c, tc)
		_ = tcn.SetDeadline(time.Now().Add(imapTimeout))
		if err := tcn.HandshakeContext(ctx); err != nil {
			c.Close()
			return nil, fmt.Errorf("imap: tls: %w", err)
		}
		c = tcn
	}
	ic := &imapConn{c: c, r: bufio.NewReaderSize(c, 16<<10)}
	_ = c.SetDeadline(time.Now().Add(imapTimeout))
	l, err := ic.r.ReadString('\n')
	if err != nil || !strings.HasPrefix(l, "* OK") {
		c.Close()
		return nil, fmt.Errorf("imap: greeting %q: %v", l, err)
	}
	return ic, nil
}

// login dials addr and logs in.
func loginIMAP(ctx context.Context, addr string, tc *tls.Config, user, password string) (*imapConn, error) {
	c, err := dialIMAP(ctx, addr, tc)
	if err != nil {
		return nil, err
	}
	if _, err := c.cmd("LOGIN " + quote(user) + " " + quote(password)); err != nil {
		c.Close()
		return nil, err
	}
	return c, nil
}

// cmd sends one command and reads up to its tagged answer, which must be
// OK. It returns the number of literal bytes received.
func (c *imapConn) cmd(command string) (int64, error) {
	c.tag++
	tag := "b" + strconv.Itoa(c.tag)
	_ = c.c.SetDeadline(time.Now().Add(imapTimeout))
	if _, err := io.WriteString(c.c, tag+" "+command+"\r\n"); err != nil {
		return 0, err
	}
	var literals int64
	for {
		l, err := c.r.ReadString('\n')
		if err != nil {
			return literals, fmt.Errorf("imap: %s: %w", firstWord(command), err)
		}
		// A line ending in {n} is followed by n bytes, then the rest
		// of the same response.
		for n := literalSize(l); n >= 0; n = literalSize(l) {
			if _, err := c.r.Discard(int(n)); err != nil {
				return literals, fmt.Errorf("imap: %s: literal: %w", firstWord(command), err)
			}
			literals += n
			if l, err = c.r.ReadString('\n'); err != nil {
				return literals, fmt.Errorf("imap: %s: %w", firstWord(command), err)
			}
		}
		if rest, ok := strings.CutPrefix(l, tag+" "); ok {
			if !strings.HasPrefix(rest, "OK") {
				return literals, fmt.Errorf("imap: %s: %s", firstWord(command), strings.TrimSpace(rest))
			}
			return literals, nil
		}
	}
}

// logout sends LOGOUT, reads the answer and closes the connection.
func (c *imapConn) logout() error {
	_, err := c.cmd("LOGOUT")
	c.c.Close()
	return err
}

// Close closes the connection without LOGOUT.
func (c *imapConn) Close() error { return c.c.Close() }

// literalSize returns n if line ends with {n}\r\n, else -1.
func literalSize(line string) int64 {
	l := strings.TrimRight(line, "\r\n")
	if !strings.HasSuffix(l, "}") {
		return -1
	}
	i := strings.LastIndexByte(l, '{')
	if i < 0 {
		return -1
	}
	n, err := strconv.ParseInt(strings.TrimSuffix(l[i+1:len(l)-1], "+"), 10, 64)
	if err != nil || n < 0 {
		return -1
	}
	return n
}

func quote(s string) string {
	return `"` + strings.NewReplacer(`\`, `\\`, `"`, `\"`).Replace(s) + `"`
}

func firstWord(s string) string {
	w, _, _ := strings.Cut(s, " ")
	return w
}

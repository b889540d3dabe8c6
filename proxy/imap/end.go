package imap

import (
	"errors"
	"fmt"
	"log/slog"
	"net"
	"time"
)

// farewellTimeout bounds the write of a closing "* BYE".
const farewellTimeout = 500 * time.Millisecond

// farewell writes "* BYE msg" with a short deadline. It gives up when
// another write holds the connection for longer than that.
func (c *conn) farewell(msg string) {
	nc := c.clientConn()
	_ = nc.SetDeadline(time.Now().Add(farewellTimeout))
	t := time.NewTimer(farewellTimeout)
	defer t.Stop()
	select {
	case c.wsem <- struct{}{}:
		_ = nc.SetWriteDeadline(time.Now().Add(farewellTimeout))
		_, _ = fmt.Fprintf(nc, "* BYE %s\r\n", msg)
		<-c.wsem
	case <-t.C:
	}
}

// Kill ends the connection from another goroutine (revocation, shutdown):
// it says BYE with a short deadline and closes both connections.
func (c *conn) Kill(msg string) {
	if c.killed.Swap(true) {
		return
	}
	c.cancelPreauth()
	c.farewell(msg)
	c.closeConns()
}

// cancelPreauth cancels the pre-auth context (once; later calls do
// nothing), so that it is freed and no longer a child of the server's.
func (c *conn) cancelPreauth() {
	c.mu.Lock()
	cancel := c.cancel
	c.cancel = nil
	c.mu.Unlock()
	if cancel != nil {
		cancel()
	}
}

// end releases everything the connection holds. It runs once: on the
// connection goroutine, or on the last relay goroutine once handed off.
func (c *conn) end() {
	c.closeConns()
	c.cancelPreauth()
	if c.release != nil {
		c.release()
	}
}

// logger returns the connection's logger: the pre-auth one while it
// exists, else a new one with the same attributes (for rare messages of
// relayed sessions, which keep no logger).
func (c *conn) logger() *slog.Logger {
	if c.preauth != nil {
		return c.log
	}
	l := c.opts.logger().With("proto", "imap", "ip", c.ip.String())
	if c.client != "" {
		l = l.With("client", c.client)
	}
	return l
}

// Active reports whether the connection is relaying a session: Shutdown
// lets it finish and says BYE to the others.
func (c *conn) Active() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.state == stateRelay
}

func (c *conn) closeConns() {
	c.mu.Lock()
	nc, up := c.nc, c.up
	c.mu.Unlock()
	_ = nc.Close()
	if up != nil {
		_ = up.Close()
	}
}

// setUpstream records the upstream connection so that kill closes it; it
// fails when the connection was killed meanwhile.
func (c *conn) setUpstream(up net.Conn) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.killed.Load() {
		return errors.New("imap: connection closed")
	}
	c.up = up
	return nil
}

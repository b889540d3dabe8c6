package testenv

import (
	"context"
	"net"
	"testing"
	"time"
)

func TestEtcdKillRestart(t *testing.T) {
	e := StartEtcd(t, 3)
	eps := e.Endpoints()
	if len(eps) != 3 {
		t.Fatalf("endpoints: got %d, want 3", len(eps))
	}
	addr := eps[1][len("http://"):]
	e.Kill(1)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := WaitPortClosed(ctx, addr); err != nil {
		t.Fatalf("after Kill: %v", err)
	}
	e.Restart(1)
	c, err := net.DialTimeout("tcp", addr, time.Second)
	if err != nil {
		t.Fatalf("after Restart: got %v, want the client port open", err)
	}
	c.Close()
	if err := e.waitHealthy(ctx, 1); err != nil {
		t.Fatalf("after Restart: %v", err)
	}
}

package etcd

import (
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"time"

	"github.com/legate-proxy/legate/store"
	clientv3 "go.etcd.io/etcd/client/v3"
)

// Portal sign-outs (store.SignOuts) live under P portal/ended/<hex id>,
// each with a lease that runs out when the session could not be used
// anyway, so etcd drops them by itself and nothing grows.

var _ store.SignOuts = (*Store)(nil)

// maxSessionID bounds the ids accepted (the portal's are 32 characters).
const maxSessionID = 256

func (s *Store) signOutKey(id string) string {
	return s.prefix + "portal/ended/" + hex.EncodeToString([]byte(id))
}

// EndSession records a sign-out until until (at least one second).
func (s *Store) EndSession(ctx context.Context, id string, until time.Time) error {
	if id == "" || len(id) > maxSessionID {
		return errors.New("store: sign-out: bad session id")
	}
	if err := s.lc.Begin(ctx); err != nil {
		return err
	}
	defer s.lc.End()
	ttl := int64(until.Sub(s.now()).Seconds()) + 1
	if ttl < 1 {
		return nil // already unusable
	}
	lease, err := s.cli.Grant(ctx, ttl)
	if err != nil {
		return fmt.Errorf("store: sign-out: %w", err)
	}
	if _, err := s.cli.Put(ctx, s.signOutKey(id), "", clientv3.WithLease(lease.ID)); err != nil {
		return fmt.Errorf("store: sign-out: %w", err)
	}
	return nil
}

// SessionEnded reports whether id was signed out (and its record has not
// run out).
func (s *Store) SessionEnded(ctx context.Context, id string) (bool, error) {
	if id == "" || len(id) > maxSessionID {
		return true, nil // not a session this portal handed out
	}
	if err := s.lc.Begin(ctx); err != nil {
		return false, err
	}
	defer s.lc.End()
	resp, err := s.cli.Get(ctx, s.signOutKey(id), clientv3.WithCountOnly())
	if err != nil {
		return false, fmt.Errorf("store: sign-out: %w", err)
	}
	return resp.Count > 0, nil
}

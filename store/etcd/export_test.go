package etcd

import (
	"context"
	"fmt"
	"strconv"
	"strings"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/legate-proxy/legate/store"
)

// Test-only access to the internals of Store.

// CheckIndex verifies that pw/, idx/, id/ and users/ agree at one revision.
func (s *Store) CheckIndex(ctx context.Context) error {
	resp, err := s.cli.Get(ctx, s.prefix, clientv3.WithPrefix())
	if err != nil {
		return err
	}
	kv := make(map[string][]byte, len(resp.Kvs))
	for _, x := range resp.Kvs {
		kv[string(x.Key)] = x.Value
	}
	counts := make(map[string]int)
	npw := 0
	for k, v := range kv {
		rest, ok := strings.CutPrefix(k, s.pwPrefix())
		if !ok {
			continue
		}
		npw++
		user, id, _ := strings.Cut(rest, "\x00")
		p, err := store.UnmarshalRecord(k, v)
		if err != nil {
			return err
		}
		if p.ID != id || p.User != user {
			return fmt.Errorf("record under %q says %s/%s", k, p.User, p.ID)
		}
		if got := string(kv[s.idxKey(p.Hash)]); got != user+"\x00"+id {
			return fmt.Errorf("index of %s points to %q", id, got)
		}
		if got := string(kv[s.idKey(id)]); got != user {
			return fmt.Errorf("id key of %s says %q", id, got)
		}
		counts[user]++
	}
	nidx, nid := 0, 0
	for k, v := range kv {
		switch {
		case strings.HasPrefix(k, s.prefix+"idx/"):
			nidx++
		case strings.HasPrefix(k, s.prefix+"id/"):
			nid++
		case strings.HasPrefix(k, s.usersPrefix()):
			user := strings.TrimPrefix(k, s.usersPrefix())
			if n, _ := strconv.Atoi(string(v)); n != counts[user] {
				return fmt.Errorf("counter of %s is %s, want %d", user, v, counts[user])
			}
			delete(counts, user)
		}
	}
	if len(counts) > 0 {
		return fmt.Errorf("users without a counter: %v", counts)
	}
	if nidx != npw || nid != npw {
		return fmt.Errorf("%d records, %d index keys, %d id keys", npw, nidx, nid)
	}
	return nil
}

// ReplicaLen is the number of app passwords in the in-memory replica.
func (s *Store) ReplicaLen() int { return s.rep.Len() }

// Client is the etcd client, for tests that write around the store.
func (s *Store) Client() *clientv3.Client { return s.cli }

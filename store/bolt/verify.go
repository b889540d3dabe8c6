package bolt

import (
	"context"

	"github.com/legate-proxy/legate/store"
)

// Verify finds the app password of user whose secret this is (see
// store.Secrets.Match): no disk, one HMAC, one replica lookup, hit and miss
// alike, with the pending last use merged in. It returns store.ErrNotFound
// for an unknown secret or another user's secret.
func (b *Store) Verify(ctx context.Context, user, secret string) (store.AppPassword, error) {
	if err := b.lc.Begin(ctx); err != nil {
		return store.AppPassword{}, err
	}
	defer b.lc.End()
	p, ok := b.secrets.Match(b.rep, user, secret)
	p.LastUse = b.batch.MergeUse(p.ID, p.LastUse)
	if !ok {
		return store.AppPassword{}, store.ErrNotFound
	}
	return p, nil
}

// AppPasswordsByID implements store.InMemory from the replica.
func (b *Store) AppPasswordsByID(ctx context.Context, ids map[string]struct{}) (map[string]store.AppPassword, error) {
	if err := b.lc.Begin(ctx); err != nil {
		return nil, err
	}
	defer b.lc.End()
	return b.rep.ByIDs(ids), nil
}

var _ store.InMemory = (*Store)(nil)

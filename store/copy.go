package store

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
)

// CopyStats is what Copy did and found.
type CopyStats struct {
	Passwords        int // app passwords in the source
	PasswordsWritten int // of which were new in the target
	Audit            int // audit records in the source
	AuditWritten     int // of which were new in the target
}

// Copy copies every app password and the audit chain from one store to
// another (bbolt → etcd or back), for `legate store copy`. It is idempotent:
// what the target already has is skipped, so an interrupted copy can be run
// again. Both stores must use the same HMAC key. Afterwards it verifies that
// the target holds every source app password with the same hash and the
// same audit chain (counts, head hash, VerifyAudit).
func Copy(ctx context.Context, from, to Store) (CopyStats, error) {
	var st CopyStats
	ex, ok := from.(Exporter)
	if !ok {
		return st, errors.New("store: copy: the source store cannot export")
	}
	im, ok := to.(Importer)
	if !ok {
		return st, errors.New("store: copy: the target store cannot import")
	}
	tex, ok := to.(Exporter)
	if !ok {
		return st, errors.New("store: copy: the target store cannot be verified")
	}
	if ex.KeyID() != im.KeyID() {
		return st, fmt.Errorf("store: copy: the stores use different HMAC keys (%s, %s): copy the key file first", ex.KeyID(), im.KeyID())
	}
	ps, err := ex.ExportPasswords(ctx)
	if err != nil {
		return st, err
	}
	st.Passwords = len(ps)
	if st.PasswordsWritten, err = im.ImportPasswords(ctx, ps); err != nil {
		return st, err
	}
	recs, err := ex.ExportAudit(ctx)
	if err != nil {
		return st, err
	}
	st.Audit = len(recs)
	if st.AuditWritten, err = im.ImportAudit(ctx, recs); err != nil {
		return st, err
	}

	got, err := tex.ExportPasswords(ctx)
	if err != nil {
		return st, fmt.Errorf("store: copy: verify: %w", err)
	}
	have := make(map[string][]byte, len(got))
	for _, p := range got {
		have[p.ID] = p.Hash
	}
	for _, p := range ps {
		if h, ok := have[p.ID]; !ok || !bytes.Equal(h, p.Hash) {
			return st, fmt.Errorf("store: copy: verify: app password %s of %s missing from the target", p.ID, p.User)
		}
	}
	trecs, err := tex.ExportAudit(ctx)
	if err != nil {
		return st, fmt.Errorf("store: copy: verify: %w", err)
	}
	if len(trecs) < len(recs) || (len(recs) > 0 && !bytes.Equal(trecs[len(recs)-1].Hash, recs[len(recs)-1].Hash)) {
		return st, fmt.Errorf("store: copy: verify: the target has %d audit records, want the source's %d", len(trecs), len(recs))
	}
	res, err := to.VerifyAudit(ctx)
	if err != nil {
		return st, fmt.Errorf("store: copy: verify: %w", err)
	}
	if !res.OK {
		return st, fmt.Errorf("store: copy: verify: target audit chain broken at %d: %s", res.BrokenAt, res.Problem)
	}
	return st, nil
}

// SortExport sorts app passwords as ExportPasswords returns them: by user,
// then oldest first.
func SortExport(ps []AppPassword) {
	slices.SortFunc(ps, func(a, b AppPassword) int {
		if c := strings.Compare(a.User, b.User); c != 0 {
			return c
		}
		if c := a.Created.Compare(b.Created); c != 0 {
			return c
		}
		return strings.Compare(a.ID, b.ID)
	})
}

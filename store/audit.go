package store

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"time"
	"unicode/utf8"
)

// The audit log is a hash chain. Record n (n = 1, 2, …) is stored as JSON
// with
//
//	Seq  = n
//	Prev = Hash of record n-1 (empty for record 1)
//	Hash = SHA-256( Prev || json.Marshal(record with Hash = nil) )
//
// where json.Marshal is encoding/json applied to AuditRecord as declared in
// store.go (fields in declaration order, Time in UTC as RFC 3339 with
// nanoseconds, byte slices as standard base64, empty optional fields
// omitted). The stored value is exactly json.Marshal of the record including
// Hash. Each backend also keeps the head (last Seq and Hash), so VerifyAudit
// notices records cut off the end, and, once old records have been pruned
// (audit.retain), the anchor: Seq and Hash of the last pruned record, which
// the first kept record's Prev must match. Cutting the tail together with a
// rewritten head is caught only against a head kept elsewhere: every flush
// logs the new head, and `legate audit --verify --head SEQ:HASH` checks it.

// AuditHead names one record of the chain: its Seq and Hash. The zero value
// is the empty chain.
type AuditHead struct {
	Seq  uint64 `json:"seq"`
	Hash []byte `json:"hash"`
}

// String is "SEQ HASH" with the hash in hex, as `legate audit --head` prints.
func (h AuditHead) String() string { return fmt.Sprintf("%d %x", h.Seq, h.Hash) }

// SinceSkew is how far out of time order AuditLog expects records to be:
// Seq order is the order of Audit calls, and callers may stamp their own
// times.
const SinceSkew = 5 * time.Minute

// AuditHash computes the chain hash of rec (its Hash field is ignored).
func AuditHash(rec AuditRecord) ([]byte, error) {
	rec.Hash = nil
	enc, err := json.Marshal(rec)
	if err != nil {
		return nil, err
	}
	h := sha256.New()
	h.Write(rec.Prev)
	h.Write(enc)
	return h.Sum(nil), nil
}

// Chain assigns Seq, Prev and Hash to recs in place, after head, and
// returns their encodings and the new head.
func Chain(recs []AuditRecord, head AuditHead) ([][]byte, AuditHead, error) {
	vals := make([][]byte, len(recs))
	seq, prev := head.Seq, head.Hash
	for i := range recs {
		seq++
		r := &recs[i]
		r.Seq, r.Time, r.User, r.Prev = seq, r.Time.UTC(), NormalizeUser(r.User), prev
		h, err := AuditHash(*r)
		if err != nil {
			return nil, head, fmt.Errorf("audit record %d: %w", seq, err)
		}
		r.Hash = h
		if vals[i], err = json.Marshal(r); err != nil {
			return nil, head, fmt.Errorf("audit record %d: %w", seq, err)
		}
		prev = h
	}
	return vals, AuditHead{Seq: seq, Hash: prev}, nil
}

// ChainCheck verifies stored records one at a time, oldest first.
type ChainCheck struct {
	res    VerifyResult
	prev   []byte
	want   uint64
	broken bool
}

// NewChainCheck starts a check after anchor (the zero AuditHead when nothing
// was pruned).
func NewChainCheck(anchor AuditHead) *ChainCheck {
	return &ChainCheck{prev: anchor.Hash, want: anchor.Seq + 1, res: VerifyResult{Pruned: anchor.Seq}}
}

// Fail marks the chain broken at seq and returns false.
func (c *ChainCheck) Fail(seq uint64, format string, args ...any) bool {
	c.res.OK, c.res.BrokenAt, c.res.Problem, c.broken = false, seq, fmt.Sprintf(format, args...), true
	return false
}

// Want is the Seq the next record must have.
func (c *ChainCheck) Want() uint64 { return c.want }

// Next checks the record stored under seq; false means broken (stop).
func (c *ChainCheck) Next(seq uint64, v []byte) bool {
	if seq != c.want {
		return c.Fail(c.want, "record %d is missing (next record is %d)", c.want, seq)
	}
	c.res.Records++
	var r AuditRecord
	if err := json.Unmarshal(v, &r); err != nil {
		return c.Fail(seq, "record %d does not decode: %v", seq, err)
	}
	if r.Seq != seq {
		return c.Fail(seq, "record stored under %d says seq %d", seq, r.Seq)
	}
	if !bytes.Equal(r.Prev, c.prev) {
		if seq == c.res.Pruned+1 && c.res.Pruned > 0 {
			return c.Fail(seq, "record %d prev hash %x does not match the anchor %x left by pruning", seq, r.Prev, c.prev)
		}
		return c.Fail(seq, "record %d prev hash %x does not match hash %x of record %d", seq, r.Prev, c.prev, seq-1)
	}
	h, err := AuditHash(r)
	if err != nil {
		return c.Fail(seq, "record %d does not encode: %v", seq, err)
	}
	if !bytes.Equal(h, r.Hash) {
		return c.Fail(seq, "record %d was modified: hash is %x, contents hash to %x", seq, r.Hash, h)
	}
	c.prev = r.Hash
	c.want++
	return true
}

// End compares the last record with the stored head and returns the result.
func (c *ChainCheck) End(head AuditHead) VerifyResult {
	if c.broken {
		return c.res
	}
	last := c.want - 1
	if head.Seq != last {
		c.Fail(last+1, "log ends at record %d but %d were written: records were removed from the end", last, head.Seq)
		return c.res
	}
	if !bytes.Equal(head.Hash, c.prev) {
		c.Fail(last, "last record %d hash does not match the recorded head", last)
		return c.res
	}
	c.res.OK = true
	c.res.Head = AuditHead{Seq: last, Hash: bytes.Clone(c.prev)}
	return c.res
}

// Bounds on what one audit record keeps of a field. Longer values (a login
// name typed by anyone, a bind DN, a client name) are cut with
// truncateField, so one record stays under a few KiB whatever the input.
const (
	MaxAuditField  = 256
	MaxAuditDetail = 1024
)

// BoundRecord cuts every string field of rec to its bound.
func BoundRecord(rec *AuditRecord) {
	for _, f := range []*string{&rec.Action, &rec.Via, &rec.User, &rec.Protocol, &rec.IP,
		&rec.Outcome, &rec.Rule, &rec.AppPasswordID, &rec.Client} {
		*f = truncateField(*f, MaxAuditField)
	}
	rec.Detail = truncateField(rec.Detail, MaxAuditDetail)
}

// truncateField returns s if it fits in max bytes, otherwise a prefix cut at
// a UTF-8 boundary followed by a marker naming the full length and the
// first 64 bits of its SHA-256 (so two long names stay distinguishable),
// max bytes in all: "prefix…[8192 bytes sha256:0123456789abcdef]".
func truncateField(s string, max int) string {
	if len(s) <= max {
		return s
	}
	sum := sha256.Sum256([]byte(s))
	marker := fmt.Sprintf("…[%d bytes sha256:%s]", len(s), hex.EncodeToString(sum[:8]))
	n := max - len(marker)
	for n > 0 && !utf8.RuneStart(s[n]) {
		n--
	}
	return s[:n] + marker
}

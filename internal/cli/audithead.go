package cli

import (
	"bytes"
	"context"
	"encoding/hex"
	"fmt"
	"strconv"
	"strings"

	"github.com/legate-proxy/legate/internal/control"
	"github.com/legate-proxy/legate/store"
)

// headFlag is `audit --head`: alone it asks for the head to be printed,
// with a value (--head SEQ:HASH or --head=SEQ:HASH) it is the head to check.
type headFlag struct {
	print bool
	value string
}

func (h *headFlag) String() string   { return h.value }
func (h *headFlag) IsBoolFlag() bool { return true }
func (h *headFlag) Set(v string) error {
	switch v {
	case "true":
		h.print = true
	case "false":
		h.print = false
	default:
		h.value = v
	}
	return nil
}

// headArgs joins "--head SEQ:HASH" into "--head=SEQ:HASH", so that --head
// can also stand alone (a bool flag would not take a separate value).
func headArgs(args []string) []string {
	out := make([]string, 0, len(args))
	for i := 0; i < len(args); i++ {
		a := args[i]
		if (a == "--head" || a == "-head") && i+1 < len(args) && strings.Contains(args[i+1], ":") && !strings.HasPrefix(args[i+1], "-") {
			out = append(out, a+"="+args[i+1])
			i++
			continue
		}
		out = append(out, a)
	}
	return out
}

// parse returns the head given as SEQ:HASH (zero when none).
func (h *headFlag) parse() (store.AuditHead, error) {
	if h.value == "" {
		return store.AuditHead{}, nil
	}
	seqS, hashS, ok := strings.Cut(strings.TrimSpace(h.value), ":")
	seq, err := strconv.ParseUint(seqS, 10, 64)
	if !ok || err != nil {
		return store.AuditHead{}, usagef("--head: %q is not SEQ:HASH (as `legate audit --head` prints it)", h.value)
	}
	if hashS == "-" {
		hashS = "" // the empty log, as printed
	}
	hash, err := hex.DecodeString(hashS)
	if err != nil || (seq > 0 && len(hash) == 0) {
		return store.AuditHead{}, usagef("--head: %q: the hash is not hex", h.value)
	}
	return store.AuditHead{Seq: seq, Hash: hash}, nil
}

// printHead prints the newest record's "SEQ HASH" ("0 -" for an empty log).
func printHead(ctx context.Context, env Env, api API) error {
	recs, err := api.Audit(ctx, control.AuditArgs{Limit: 1})
	if err != nil {
		return err
	}
	if len(recs) == 0 {
		fmt.Fprintln(env.Stdout, "0 -")
		return nil
	}
	fmt.Fprintln(env.Stdout, store.AuditHead{Seq: recs[0].Seq, Hash: recs[0].Hash})
	return nil
}

// checkHead fails when the record a head printed earlier names is missing
// from a chain that verified, or differs: the log was cut back (tail
// truncation with a rewritten head) or rewritten.
func checkHead(ctx context.Context, api API, r store.VerifyResult, want store.AuditHead) error {
	if want.Seq == 0 {
		return nil
	}
	if want.Seq > r.Head.Seq {
		return fmt.Errorf("audit chain TRUNCATED: record %d is missing; the log ends at record %d (records were removed from the end)", want.Seq, r.Head.Seq)
	}
	if want.Seq <= r.Pruned {
		return fmt.Errorf("audit head %d cannot be checked: records up to %d were pruned (audit.retain); use a newer head", want.Seq, r.Pruned)
	}
	recs, err := api.Audit(ctx, control.AuditArgs{Seq: want.Seq})
	if err != nil {
		return err
	}
	if len(recs) != 1 || recs[0].Seq != want.Seq {
		return fmt.Errorf("audit chain TRUNCATED: record %d is missing", want.Seq)
	}
	if !bytes.Equal(recs[0].Hash, want.Hash) {
		return fmt.Errorf("audit chain REWRITTEN: record %d has hash %x, the head given says %x", want.Seq, recs[0].Hash, want.Hash)
	}
	return nil
}

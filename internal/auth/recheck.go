package auth

import (
	"context"
	"errors"
	"time"

	"github.com/legate-proxy/legate/internal/directory"
	"github.com/legate-proxy/legate/internal/session"
	"github.com/legate-proxy/legate/policy"
	"github.com/legate-proxy/legate/store"
)

// Recheck re-decides live sessions with policy.Decide — the one decision
// every login takes — against the store, the directory and the policy in
// force now, and returns the sessions that no longer pass: app password
// revoked (gone from the store) or expired, user gone, disabled, an
// administrator, blocked, protocol off, ... The secret is not asked again:
// the session proved it at login, so the credential is the stored app
// password (or the primary password, whose trusted-network rule is
// re-applied).
//
// Sessions are grouped by user: one directory lookup and at most one store
// listing per user. A user whose lookup or listing fails is left alone (an
// outage must not close every session); failures are logged once per call.
func (s *Service) Recheck(ctx context.Context, live []session.Info) []session.Verdict {
	rt := s.rt.Load()
	now := s.now()
	byUser := make(map[string][]int, len(live))
	for i := range live {
		byUser[live[i].User] = append(byUser[live[i].User], i)
	}
	var out []session.Verdict
	// An outage fails every user alike: one log line per sweep, not one
	// per user.
	var failed int
	var firstErr error
	defer func() {
		if failed > 0 {
			s.log.Warn("session re-check: directory or store unavailable, sessions kept",
				"users", failed, "err", firstErr)
		}
	}()
	fail := func(err error) {
		if failed == 0 {
			firstErr = err
		}
		failed++
	}
	// Stores that keep app passwords in memory answer for every live
	// session at once; others are listed per user below.
	var mem map[string]store.AppPassword
	if im, ok := s.store.(store.InMemory); ok {
		ids := make(map[string]struct{}, len(live))
		for i := range live {
			if live[i].AppPasswordID != "" {
				ids[live[i].AppPasswordID] = struct{}{}
			}
		}
		var err error
		if mem, err = im.AppPasswordsByID(ctx, ids); err != nil {
			fail(err)
			return nil
		}
	}
	for name, idx := range byUser {
		if ctx.Err() != nil {
			break
		}
		u, err := rt.Directory.Lookup(ctx, name)
		switch {
		case errors.Is(err, directory.ErrNoSuchUser):
			u = nil
		case err != nil:
			fail(err)
			continue
		}
		var aps map[string]*store.AppPassword
		owner := name
		if u != nil {
			owner = u.Name
		}
		for _, i := range idx {
			if live[i].AppPasswordID == "" || aps != nil {
				continue
			}
			if mem != nil {
				aps = make(map[string]*store.AppPassword, len(idx))
				for _, j := range idx {
					if p, ok := mem[live[j].AppPasswordID]; ok && p.User == owner {
						aps[p.ID] = &p
					}
				}
				break
			}
			list, err := s.store.List(ctx, owner)
			if err != nil {
				fail(err)
				aps = nil
				break
			}
			aps = make(map[string]*store.AppPassword, len(list))
			for j := range list {
				aps[list[j].ID] = &list[j]
			}
		}
		for _, i := range idx {
			si := &live[i]
			if si.AppPasswordID != "" && aps == nil {
				continue // listing failed
			}
			d := s.redecide(rt.Policy, u, aps, si, now)
			if !d.Allowed() {
				reason := d.Reason
				if reason == "" {
					reason = "credential no longer valid"
					if u == nil {
						reason = "user no longer in the directory"
					} else if si.AppPasswordID != "" && aps[si.AppPasswordID] == nil {
						reason = "app password revoked"
					}
				}
				out = append(out, session.Verdict{ID: si.ID, Rule: string(d.Rule), Reason: reason})
			}
		}
	}
	return out
}

// redecide builds the decision input of one live session and asks
// policy.Decide.
func (s *Service) redecide(pol *policy.Config, u *directory.User, aps map[string]*store.AppPassword,
	si *session.Info, now time.Time) policy.Decision {
	in := policy.Input{
		Request: policy.Request{User: si.User, IP: si.IP, Protocol: si.Protocol, TLS: si.TLS},
		Now:     now,
		NoTrace: true,
	}
	if u != nil {
		in.User = policyUser(u)
	}
	switch {
	case si.AppPasswordID == "":
		in.Credential = &policy.Credential{Kind: policy.Primary}
	case aps[si.AppPasswordID] != nil:
		c := CredentialOf(*aps[si.AppPasswordID])
		// This session is a use: its last use may not be flushed yet.
		if c.LastUsed.Before(si.Started) {
			c.LastUsed = si.Started
		}
		in.Credential = c
	}
	return policy.Decide(pol, in)
}

// Package session keeps the registry of live proxied sessions, shared by every
// front-end. Revoking an app password, disabling a user or `legate sessions
// kill` closes the matching sessions through it at once, and a periodic
// sweep (Sweep) re-decides every live session and closes what no longer
// passes.
//
// The life of a session: a front-end registers it right after the login
// decision, before it dials the upstream (so a revocation during the
// upstream login finds it and can close it); once the upstream is up it
// calls Confirm, which re-decides the session once more (closing the race
// between the decision and the registration) and marks it open; when the
// session ends it calls the done function Register returned.
package session

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// Info describes one live session.
type Info struct {
	ID            string     `json:"id"`
	User          string     `json:"user"`
	AppPasswordID string     `json:"app_password_id,omitempty"`
	Protocol      string     `json:"protocol"`
	IP            netip.Addr `json:"ip"`
	Client        string     `json:"client,omitempty"`
	Started       time.Time  `json:"started"`
	// TLS says the client connection is encrypted (re-decisions need it).
	TLS bool `json:"tls,omitempty"`
	// Pending: registered, the upstream login not yet confirmed.
	Pending bool `json:"pending,omitempty"`
}

// Verdict says why a re-decided session must close.
type Verdict struct {
	ID     string // session id
	Rule   string // the policy rule that refused it
	Reason string // for the log and the audit record
}

// Cause says who closed a session.
type Cause string

// Causes of a close.
const (
	CauseKill    Cause = "kill"    // legate sessions kill
	CauseRevoke  Cause = "revoke"  // its app password was revoked
	CauseSweep   Cause = "sweep"   // a re-decision refused it
	CauseRecheck Cause = "recheck" // the re-decision when the upstream came up refused it
)

// Why is the reason a session was closed.
type Why struct {
	Cause  Cause
	Rule   string // policy rule, for sweep and recheck
	Reason string
}

// Hooks connect a registry to the rest of the daemon. Every field may be
// nil. They are called without the registry's lock held.
type Hooks struct {
	// Recheck re-decides live sessions and returns those that must close.
	Recheck func(ctx context.Context, live []Info) []Verdict
	// Upstream is told the upstream outcome of a session: ok at Confirm,
	// !ok when a pending session ends without Confirm (upstream refused
	// or unreachable) and was not closed by the registry.
	Upstream func(info Info, ok bool)
	// Closed is told every session the registry closes, and why.
	Closed func(info Info, why Why)
}

// Registry holds live sessions. The zero value is not usable; use New.
type Registry struct {
	mu       sync.Mutex
	sessions map[string]*entry
	hooks    atomic.Pointer[Hooks]
}

type entry struct {
	info   Info
	close  func()
	once   sync.Once
	killed atomic.Bool
}

// New returns an empty registry.
func New() *Registry {
	r := &Registry{sessions: make(map[string]*entry)}
	r.hooks.Store(&Hooks{})
	return r
}

// SetHooks installs h (the daemon does this once, before serving).
func (r *Registry) SetHooks(h Hooks) { r.hooks.Store(&h) }

// Register adds a session, pending until Confirm. closeFn must end the
// session promptly without blocking for long (typically: write a farewell
// with a short deadline and close the connection, which also cancels an
// upstream dial in progress); it is called at most once, by a Kill or a
// sweep. The returned done function removes the session and must be called
// when it ends.
func (r *Registry) Register(info Info, closeFn func()) (id string, done func()) {
	var b [6]byte
	_, _ = rand.Read(b[:])
	info.ID = hex.EncodeToString(b[:])
	info.User = strings.ToLower(info.User)
	if info.Started.IsZero() {
		info.Started = time.Now()
	}
	info.Pending = true
	e := &entry{info: info, close: closeFn}
	r.mu.Lock()
	r.sessions[info.ID] = e
	r.mu.Unlock()
	return info.ID, func() { r.remove(e) }
}

func (r *Registry) remove(e *entry) {
	r.mu.Lock()
	_, live := r.sessions[e.info.ID]
	delete(r.sessions, e.info.ID)
	info := e.info
	r.mu.Unlock()
	if live && info.Pending && !e.killed.Load() {
		if h := r.hooks.Load(); h.Upstream != nil {
			h.Upstream(info, false)
		}
	}
}

// Confirm is called once the session's upstream is up: it re-decides the
// session (Hooks.Recheck) and, if it still passes and was not closed
// meanwhile, marks it open and reports true. Otherwise the session has been
// (or is being) closed and the caller must drop its upstream and end it.
func (r *Registry) Confirm(ctx context.Context, id string) bool {
	r.mu.Lock()
	e := r.sessions[id]
	r.mu.Unlock()
	if e == nil || e.killed.Load() {
		return false
	}
	h := r.hooks.Load()
	if h.Recheck != nil {
		if v := h.Recheck(ctx, []Info{e.info}); len(v) > 0 {
			r.kill(e, Why{Cause: CauseRecheck, Rule: v[0].Rule, Reason: v[0].Reason})
			return false
		}
	}
	r.mu.Lock()
	e.info.Pending = false
	info := e.info
	r.mu.Unlock()
	if e.killed.Load() {
		return false
	}
	if h.Upstream != nil {
		h.Upstream(info, true)
	}
	return true
}

// List returns live sessions, of one user if user is not empty, oldest first.
func (r *Registry) List(user string) []Info {
	user = strings.ToLower(strings.TrimSpace(user))
	r.mu.Lock()
	out := make([]Info, 0, len(r.sessions))
	for _, e := range r.sessions {
		if user == "" || e.info.User == user {
			out = append(out, e.info)
		}
	}
	r.mu.Unlock()
	slices.SortFunc(out, func(a, b Info) int { return a.Started.Compare(b.Started) })
	return out
}

// Count returns the number of live sessions of a protocol ("" for all).
func (r *Registry) Count(protocol string) int {
	r.mu.Lock()
	defer r.mu.Unlock()
	if protocol == "" {
		return len(r.sessions)
	}
	n := 0
	for _, e := range r.sessions {
		if e.info.Protocol == protocol {
			n++
		}
	}
	return n
}

// Kill closes the sessions for which match returns true and returns how
// many (cause: kill).
func (r *Registry) Kill(match func(Info) bool) int {
	return r.KillWhy(Why{Cause: CauseKill, Reason: "killed by an operator"}, match)
}

// KillWhy closes the sessions for which match returns true, telling
// Hooks.Closed why, and returns how many.
func (r *Registry) KillWhy(why Why, match func(Info) bool) int {
	r.mu.Lock()
	var victims []*entry
	for _, e := range r.sessions {
		if match(e.info) {
			victims = append(victims, e)
		}
	}
	r.mu.Unlock()
	for _, e := range victims {
		r.kill(e, why)
	}
	return len(victims)
}

// kill closes e once; only the first cause is reported.
func (r *Registry) kill(e *entry, why Why) {
	e.once.Do(func() {
		e.killed.Store(true)
		r.mu.Lock()
		info := e.info
		r.mu.Unlock()
		if h := r.hooks.Load(); h.Closed != nil {
			h.Closed(info, why)
		}
		e.close()
	})
}

// KillID closes one session by id.
func (r *Registry) KillID(id string) int {
	return r.Kill(func(i Info) bool { return i.ID == id })
}

// KillUser closes every session of a user.
func (r *Registry) KillUser(user string) int {
	user = strings.ToLower(strings.TrimSpace(user))
	return r.Kill(func(i Info) bool { return i.User == user })
}

// KillAppPasswords closes every session opened with one of the app passwords.
func (r *Registry) KillAppPasswords(ids ...string) int {
	return r.KillWhy(Why{Cause: CauseRevoke, Reason: "app password revoked"},
		func(i Info) bool { return i.AppPasswordID != "" && slices.Contains(ids, i.AppPasswordID) })
}

// Sweep re-decides every live session (Hooks.Recheck) and closes those
// that no longer pass; it returns how many it closed.
func (r *Registry) Sweep(ctx context.Context) int {
	h := r.hooks.Load()
	if h.Recheck == nil {
		return 0
	}
	r.mu.Lock()
	live := make([]Info, 0, len(r.sessions))
	for _, e := range r.sessions {
		live = append(live, e.info)
	}
	r.mu.Unlock()
	if len(live) == 0 {
		return 0
	}
	verdicts := h.Recheck(ctx, live)
	n := 0
	for _, v := range verdicts {
		r.mu.Lock()
		e := r.sessions[v.ID]
		r.mu.Unlock()
		if e != nil && !e.killed.Load() {
			r.kill(e, Why{Cause: CauseSweep, Rule: v.Rule, Reason: v.Reason})
			n++
		}
	}
	return n
}

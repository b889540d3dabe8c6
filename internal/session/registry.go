// Package session keeps the registry of live proxied sessions, shared by every
// front-end. Revoking an app password, disabling a user or `legate sessions
// kill` closes the matching sessions through it at once.
package session

import (
	"crypto/rand"
	"encoding/hex"
	"net/netip"
	"slices"
	"strings"
	"sync"
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
}

// Registry holds live sessions. The zero value is not usable; use New.
type Registry struct {
	mu       sync.Mutex
	sessions map[string]*entry
}

type entry struct {
	info  Info
	close func()
	once  sync.Once
}

// New returns an empty registry.
func New() *Registry { return &Registry{sessions: make(map[string]*entry)} }

// Register adds a session. closeFn must end the session promptly without
// blocking for long (typically: write a farewell with a short deadline and
// close the connection); it is called at most once, by a Kill. The returned
// done function removes the session and must be called when it ends.
func (r *Registry) Register(info Info, closeFn func()) (id string, done func()) {
	var b [6]byte
	_, _ = rand.Read(b[:])
	info.ID = hex.EncodeToString(b[:])
	info.User = strings.ToLower(info.User)
	if info.Started.IsZero() {
		info.Started = time.Now()
	}
	e := &entry{info: info, close: closeFn}
	r.mu.Lock()
	r.sessions[info.ID] = e
	r.mu.Unlock()
	return info.ID, func() {
		r.mu.Lock()
		delete(r.sessions, info.ID)
		r.mu.Unlock()
	}
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

// Kill closes the sessions for which match returns true and returns how many.
func (r *Registry) Kill(match func(Info) bool) int {
	r.mu.Lock()
	var victims []*entry
	for _, e := range r.sessions {
		if match(e.info) {
			victims = append(victims, e)
		}
	}
	r.mu.Unlock()
	for _, e := range victims {
		e.once.Do(e.close)
	}
	return len(victims)
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
	return r.Kill(func(i Info) bool { return i.AppPasswordID != "" && slices.Contains(ids, i.AppPasswordID) })
}

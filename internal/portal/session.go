package portal

import (
	"context"
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"time"
)

// Session limits.
const (
	// IdleTimeout ends a session nobody used for this long.
	IdleTimeout = 15 * time.Minute
	// MaxSessionAge ends every session this long after sign-in.
	MaxSessionAge = 8 * time.Hour
	// loginTimeout bounds a sign-in round trip to the provider.
	loginTimeout = 10 * time.Minute
)

// session is the signed-in state, kept in the browser in an encrypted and
// authenticated cookie: nothing is stored on the server.
type session struct {
	// ID names the session on the server: sign-out ends it there (see
	// endedSessions), so a copy of the cookie is refused afterwards.
	ID   string `json:"i"`
	User string `json:"u"`
	// Email is the email claim of the sign-in, if any (device set-up).
	Email string `json:"e,omitempty"`
	// AuthAt is when the user last proved who they are at the provider,
	// on this server's clock; zero means unknown (treated as too old).
	AuthAt time.Time `json:"a,omitzero"`
	Start  time.Time `json:"s"`
	Seen   time.Time `json:"l"`
	// CSRF is the token every form of this session carries.
	CSRF string `json:"c"`
	// Notice is shown once on the next page.
	Notice string `json:"n,omitempty"`

	flash string // the notice being shown now (not stored)
}

// pending is a sign-in on its way through the provider.
type pending struct {
	State    string    `json:"s"`
	Nonce    string    `json:"n"`
	Verifier string    `json:"v"`
	Reauth   bool      `json:"r,omitempty"`
	Created  time.Time `json:"c"`
}

// codec seals values into cookies with AES-256-GCM: confidential and
// tamper-evident. The cookie name is the additional data, so a value cannot
// be moved from one cookie to another.
type codec struct{ aead cipher.AEAD }

var errBadCookie = errors.New("portal: bad cookie")

func newCodec(key []byte) (*codec, error) {
	if len(key) != KeySize {
		return nil, fmt.Errorf("portal: session key is %d bytes, want %d", len(key), KeySize)
	}
	b, err := aes.NewCipher(key)
	if err != nil {
		return nil, fmt.Errorf("portal: session key: %w", err)
	}
	aead, err := cipher.NewGCM(b)
	if err != nil {
		return nil, fmt.Errorf("portal: session key: %w", err)
	}
	return &codec{aead}, nil
}

func (c *codec) seal(name string, v any) (string, error) {
	plain, err := json.Marshal(v)
	if err != nil {
		return "", err
	}
	nonce := make([]byte, c.aead.NonceSize(), c.aead.NonceSize()+len(plain)+c.aead.Overhead())
	rand.Read(nonce)
	return base64.RawURLEncoding.EncodeToString(c.aead.Seal(nonce, nonce, plain, []byte(name))), nil
}

func (c *codec) open(name, value string, v any) error {
	raw, err := base64.RawURLEncoding.DecodeString(value)
	if err != nil || len(raw) < c.aead.NonceSize() {
		return errBadCookie
	}
	n := c.aead.NonceSize()
	plain, err := c.aead.Open(nil, raw[:n], raw[n:], []byte(name))
	if err != nil {
		return errBadCookie
	}
	return json.Unmarshal(plain, v)
}

// Cookie names: with TLS the __Host- prefix pins them to this host, path /
// and Secure.
func (p *Portal) sessionCookie() string {
	if p.secure {
		return "__Host-legate-session"
	}
	return "legate-session"
}

func (p *Portal) loginCookie() string {
	if p.secure {
		return "__Host-legate-login"
	}
	return "legate-login"
}

func (p *Portal) setCookie(w http.ResponseWriter, name string, v any, maxAge int) error {
	val, err := p.codec.seal(name, v)
	if err != nil {
		return err
	}
	http.SetCookie(w, &http.Cookie{Name: name, Value: val, Path: "/", MaxAge: maxAge,
		Secure: p.secure, HttpOnly: true, SameSite: http.SameSiteLaxMode})
	return nil
}

func (p *Portal) clearCookie(w http.ResponseWriter, name string) {
	http.SetCookie(w, &http.Cookie{Name: name, Value: "", Path: "/", MaxAge: -1,
		Secure: p.secure, HttpOnly: true, SameSite: http.SameSiteLaxMode})
}

// readSession returns the request's session if it is valid and neither idle
// for IdleTimeout nor older than MaxSessionAge.
func (p *Portal) readSession(r *http.Request) (*session, bool) {
	c, err := r.Cookie(p.sessionCookie())
	if err != nil {
		return nil, false
	}
	var s session
	if err := p.codec.open(c.Name, c.Value, &s); err != nil || s.User == "" || s.CSRF == "" || s.ID == "" {
		return nil, false
	}
	now := p.now()
	if now.Sub(s.Seen) > IdleTimeout || now.Sub(s.Start) > MaxSessionAge || now.Before(s.Start.Add(-time.Minute)) {
		return nil, false
	}
	if p.sessionEnded(r.Context(), s.ID, s.Start) {
		return nil, false
	}
	return &s, true
}

// sessionEnded reports whether the session id, started at start, was
// signed out: on this instance, or — with shared sign-outs — on any. A
// shared table that cannot answer counts as ended (the page then asks the
// user to sign in again, which needs the store anyway).
func (p *Portal) sessionEnded(ctx context.Context, id string, start time.Time) bool {
	if p.ended.has(id, start) {
		return true
	}
	if p.signOuts == nil {
		return false
	}
	ctx, cancel := context.WithTimeout(ctx, signOutTimeout)
	defer cancel()
	ended, err := p.signOuts.SessionEnded(ctx, id)
	if err != nil {
		p.log.Warn("portal: shared sign-outs unavailable; session refused", "err", err)
		return true
	}
	return ended
}

// endSession signs the session out: in the local table and, with shared
// sign-outs, for every instance.
func (p *Portal) endSession(ctx context.Context, id string, start time.Time) error {
	err := p.ended.end(id, start, p.now())
	if p.signOuts != nil {
		ctx, cancel := context.WithTimeout(ctx, signOutTimeout)
		defer cancel()
		err = errors.Join(err, p.signOuts.EndSession(ctx, id, start.Add(MaxSessionAge)))
	}
	return err
}

// signOutTimeout bounds one question to the shared sign-outs: a store that
// hangs costs a page a few seconds, not its whole write timeout.
const signOutTimeout = 5 * time.Second

// writeSession stores s in the session cookie. It is a browser-session
// cookie; the timeouts are enforced by readSession.
func (p *Portal) writeSession(w http.ResponseWriter, s *session) error {
	return p.setCookie(w, p.sessionCookie(), s, 0)
}

// freshAuth reports whether s signed in recently enough (st.reauthAfter)
// to create a password.
func (p *Portal) freshAuth(st *settings, s *session) bool {
	return !s.AuthAt.IsZero() && p.now().Sub(s.AuthAt) <= st.reauthAfter
}

func randomToken() string { return rand.Text() }

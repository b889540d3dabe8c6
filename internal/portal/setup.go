package portal

import (
	"fmt"
	"html/template"
	"net/http"
	"slices"
	"strings"
	"sync"
	"time"

	"rsc.io/qr"

	"github.com/legate-proxy/legate/internal/control"
)

// One-tap device set-up: right after a create (and never again, the
// secret is in it) the page offers an Apple configuration profile with
// the new password, as a download link and as a QR code of that link for
// a phone. The link is one-time: it works once, for setupTTL, and only
// while the session that created it lasts (sign-out ends it).

const (
	// setupTTL is how long a set-up link works.
	setupTTL = 5 * time.Minute
	// maxSetups bounds the links held at once (each holds a secret in
	// memory, never on disk); the oldest goes first.
	maxSetups = 1000
)

// setupLink is one download of a profile.
type setupLink struct {
	session string    // the session that created it
	start   time.Time // and its start
	expires time.Time
	used    bool // kept until expiry so a second download gets 410
	profile profileData
}

// setupLinks are the live set-up links, by token.
type setupLinks struct {
	mu    sync.Mutex
	links map[string]*setupLink
	order []string // tokens, oldest first
}

func newSetupLinks() *setupLinks { return &setupLinks{links: map[string]*setupLink{}} }

// add stores a link and returns its token.
func (l *setupLinks) add(session string, start time.Time, pd profileData, now time.Time) string {
	tok := randomToken()
	l.mu.Lock()
	defer l.mu.Unlock()
	l.prune(now)
	for len(l.order) >= maxSetups {
		delete(l.links, l.order[0])
		l.order = l.order[1:]
	}
	l.links[tok] = &setupLink{session: session, start: start, expires: now.Add(setupTTL), profile: pd}
	l.order = append(l.order, tok)
	return tok
}

// prune drops expired links (the caller holds mu).
func (l *setupLinks) prune(now time.Time) {
	i := 0
	for i < len(l.order) {
		if k := l.order[i]; l.links[k] != nil && now.Before(l.links[k].expires) {
			break
		}
		delete(l.links, l.order[i])
		i++
	}
	l.order = l.order[i:]
}

// take returns the profile of a token once. found says whether the token
// was ever handed out (and is still remembered): a used or ended link is
// found but not ok.
func (l *setupLinks) take(tok string, now time.Time, ended func(id string, start time.Time) bool) (pd profileData, found, ok bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.prune(now)
	s := l.links[tok]
	if s == nil {
		return profileData{}, false, false
	}
	if s.used || ended(s.session, s.start) {
		return profileData{}, true, false
	}
	s.used, pd, s.profile = true, s.profile, profileData{} // forget the secret now
	return pd, true, true
}

// endSession makes the links of a signed-out session unusable.
func (l *setupLinks) endSession(id string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, s := range l.links {
		if s.session == id {
			s.used, s.profile = true, profileData{}
		}
	}
}

// setupView is the device set-up part of the created page.
type setupView struct {
	URL string        // the one-time link
	QR  template.HTML // an inline SVG of the link (no image request, CSP-safe)
	TTL string
}

// deviceSetup makes the one-time link for a new password, if a profile
// can be made: IMAP and SMTP settings exist and the password may use both.
func (p *Portal) deviceSetup(s *session, c control.Created, st *settings) (setupView, bool) {
	cs := st.cfg.ClientSettings
	scope := c.AppPassword.Scope
	if cs.IMAP.Host == "" || cs.SMTP.Host == "" ||
		(len(scope) > 0 && (!slices.Contains(scope, "imap") || !slices.Contains(scope, "smtp"))) {
		return setupView{}, false
	}
	pd := profileData{User: c.AppPassword.User, Email: s.Email, Secret: c.Secret, Name: c.AppPassword.Name,
		ID: c.AppPassword.ID, Org: p.external.Hostname(), IMAP: cs.IMAP, SMTP: cs.SMTP}
	tok := p.setups.add(s.ID, s.Start, pd, p.now())
	u := p.external.String() + "/setup/" + tok
	svg, err := qrSVG(u)
	if err != nil {
		p.log.Error("portal: QR code", "err", err)
		return setupView{}, false
	}
	return setupView{URL: u, QR: svg, TTL: plural(int(setupTTL/time.Minute), "minute")}, true
}

// profile serves a one-time link: the .mobileconfig once, then 410 Gone
// (also for an expired link still remembered, or one whose session signed
// out); 404 for a token never handed out.
func (p *Portal) profile(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodGet {
		// HEAD (link previews, scanners) must not use up the one download.
		w.Header().Set("Allow", http.MethodGet)
		http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
		return
	}
	tok := r.PathValue("token")
	pd, found, ok := p.setups.take(tok, p.now(), func(id string, start time.Time) bool {
		return p.sessionEnded(r.Context(), id, start)
	})
	switch {
	case !found:
		p.message(w, http.StatusNotFound, "Link not found", "This set-up link does not exist or has expired. Create a new app password to get a new one.", false)
		return
	case !ok:
		p.message(w, http.StatusGone, "Link already used", "This set-up link has been used or is no longer valid. Create a new app password to get a new one.", false)
		return
	}
	body, signed, err := p.mobileconfig(pd)
	if err != nil {
		p.fail(w, err)
		return
	}
	p.reqLog(r).Info("portal: device profile downloaded", "user", pd.User, "id", pd.ID, "signed", signed)
	w.Header().Set("Content-Type", "application/x-apple-aspen-config")
	w.Header().Set("Content-Disposition", `attachment; filename="`+profileFileName(pd.Name)+`.mobileconfig"`)
	w.Write(body)
}

// profileFileName keeps letters, digits, '-' and '_' of a name.
func profileFileName(name string) string {
	f := strings.Map(func(r rune) rune {
		switch {
		case r >= 'a' && r <= 'z', r >= 'A' && r <= 'Z', r >= '0' && r <= '9', r == '-', r == '_':
			return r
		case r == ' ':
			return '-'
		}
		return -1
	}, name)
	if f == "" || len(f) > 64 {
		return "mail"
	}
	return f
}

// qrSVG draws a QR code of text as an inline SVG (one path, 4-module
// quiet zone).
func qrSVG(text string) (template.HTML, error) {
	c, err := qr.Encode(text, qr.M)
	if err != nil {
		return "", err
	}
	const quiet = 4
	n := c.Size + 2*quiet
	var b strings.Builder
	fmt.Fprintf(&b, `<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 %d %d" shape-rendering="crispEdges" role="img" aria-label="QR code of the set-up link" id="setup-qr"><rect width="%d" height="%d" fill="#fff"/><path fill="#000" d="`, n, n, n, n)
	for y := 0; y < c.Size; y++ {
		for x := 0; x < c.Size; x++ {
			if c.Black(x, y) {
				fmt.Fprintf(&b, "M%d %dh1v1h-1z", x+quiet, y+quiet)
			}
		}
	}
	b.WriteString(`"/></svg>`)
	return template.HTML(b.String()), nil // built here from numbers only
}

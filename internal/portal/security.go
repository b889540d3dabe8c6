package portal

import (
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"net/http"
	"net/url"
	"strings"
)

// headers sets the security headers of every response. Pages are never
// cached (one shows a secret); staticHandler relaxes Cache-Control for the
// stylesheet.
func (p *Portal) headers(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		st := p.set.Load() // the one settings value of this request
		r = r.WithContext(context.WithValue(r.Context(), settingsKey, st))
		hd := w.Header()
		hd.Set("Content-Security-Policy", *st.provider.csp.Load())
		hd.Set("X-Content-Type-Options", "nosniff")
		hd.Set("X-Frame-Options", "DENY")
		hd.Set("Referrer-Policy", "no-referrer")
		hd.Set("Cross-Origin-Opener-Policy", "same-origin")
		hd.Set("Cross-Origin-Resource-Policy", "same-origin")
		hd.Set("Permissions-Policy", "camera=(), microphone=(), geolocation=(), payment=()")
		hd.Set("Cache-Control", "no-store")
		hd.Set("Pragma", "no-cache")
		if p.secure {
			hd.Set("Strict-Transport-Security", "max-age=31536000")
		}
		h.ServeHTTP(w, r)
	})
}

// scriptHash is the CSP source of the one inline script.
var scriptHash = func() string {
	sum := sha256.Sum256([]byte(copyScript))
	return "'sha256-" + base64.StdEncoding.EncodeToString(sum[:]) + "'"
}()

// buildCSP builds the Content-Security-Policy. form-action names the
// provider too: a form post may be redirected to sign-in there (reauth).
func buildCSP(issuer, authURL string) *string {
	actions := []string{"'self'"}
	for _, s := range []string{issuer, authURL} {
		if o := origin(s); o != "" && !strings.Contains(strings.Join(actions, " "), o) {
			actions = append(actions, o)
		}
	}
	csp := "default-src 'none'; script-src " + scriptHash + "; style-src 'self'; img-src 'self'; " +
		"form-action " + strings.Join(actions, " ") + "; frame-ancestors 'none'; base-uri 'none'"
	return &csp
}

func origin(s string) string {
	u, err := url.Parse(s)
	if err != nil || u.Host == "" || (u.Scheme != "http" && u.Scheme != "https") {
		return ""
	}
	return u.Scheme + "://" + u.Host
}

// authedFunc is a handler for a signed-in user.
type authedFunc func(w http.ResponseWriter, r *http.Request, s *session)

// authed checks the session (else: sign in) and, on POST, the CSRF token
// (else: 403). It marks the session used; the handler writes it back with
// the page (see page, seeOther).
func (p *Portal) authed(h authedFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		s, ok := p.readSession(r)
		if !ok {
			p.clearCookie(w, p.sessionCookie())
			http.Redirect(w, r, "/login", http.StatusSeeOther)
			return
		}
		if r.Method == http.MethodPost && !validCSRF(s, r.PostFormValue("csrf")) {
			p.reqLog(r).Warn("portal: form without a valid CSRF token refused", "user", s.User, "path", r.URL.Path)
			p.message(w, http.StatusForbidden, "Form expired", "This form is no longer valid. Go back, reload the page and try again.", false)
			return
		}
		s.Seen = p.now()
		s.flash, s.Notice = s.Notice, ""
		h(w, r, s)
	}
}

func validCSRF(s *session, token string) bool {
	return token != "" && subtle.ConstantTimeCompare([]byte(s.CSRF), []byte(token)) == 1
}

// seeOther saves the session (with an optional notice for the next page)
// and redirects to a page of the portal.
func (p *Portal) seeOther(w http.ResponseWriter, r *http.Request, s *session, to, notice string) {
	s.Notice = notice
	if err := p.writeSession(w, s); err != nil {
		p.fail(w, err)
		return
	}
	http.Redirect(w, r, to, http.StatusSeeOther)
}

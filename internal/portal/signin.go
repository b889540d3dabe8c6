package portal

import (
	"crypto/subtle"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"time"

	"github.com/coreos/go-oidc/v3/oidc"
	"golang.org/x/oauth2"

	"github.com/legate-proxy/legate/internal/config"
	"github.com/legate-proxy/legate/internal/control"
)

// login starts a sign-in: state, nonce and a PKCE verifier go into a sealed
// short-lived cookie, the browser goes to the provider. With reauth=1 the
// provider is asked for a fresh sign-in (prompt=login, max_age=0).
func (p *Portal) login(w http.ResponseWriter, r *http.Request) {
	ip, err := p.provider(r.Context(), p.settingsOf(r))
	if err != nil {
		p.log.Error("portal: identity provider unreachable", "err", err)
		p.message(w, http.StatusBadGateway, "Sign-in is unavailable",
			"The sign-in service cannot be reached right now. Please try again in a minute.", true)
		return
	}
	pd := pending{State: randomToken(), Nonce: randomToken(), Verifier: oauth2.GenerateVerifier(),
		Reauth: r.URL.Query().Get("reauth") == "1", Created: p.now()}
	if err := p.setCookie(w, p.loginCookie(), pd, int(loginTimeout/time.Second)); err != nil {
		p.fail(w, err)
		return
	}
	opts := []oauth2.AuthCodeOption{oauth2.S256ChallengeOption(pd.Verifier), oidc.Nonce(pd.Nonce)}
	if pd.Reauth {
		opts = append(opts, oauth2.SetAuthURLParam("prompt", "login"), oauth2.SetAuthURLParam("max_age", "0"))
	}
	http.Redirect(w, r, ip.oauth.AuthCodeURL(pd.State, opts...), http.StatusFound)
}

// idClaims are the ID-token claims the portal reads besides the username.
type idClaims struct {
	AMR      []string `json:"amr"`
	ACR      string   `json:"acr"`
	AuthTime int64    `json:"auth_time"`
}

// callback finishes a sign-in: state, code exchange with the PKCE verifier,
// ID token signature, issuer, audience, expiry and nonce, then the MFA rule.
func (p *Portal) callback(w http.ResponseWriter, r *http.Request) {
	p.clearCookie(w, p.loginCookie())
	var pd pending
	c, err := r.Cookie(p.loginCookie())
	if err == nil {
		err = p.codec.open(c.Name, c.Value, &pd)
	}
	if err != nil || p.now().Sub(pd.Created) > loginTimeout {
		p.message(w, http.StatusBadRequest, "Sign-in expired",
			"This sign-in took too long or was started in another window. Please sign in again.", true)
		return
	}
	q := r.URL.Query()
	if subtle.ConstantTimeCompare([]byte(q.Get("state")), []byte(pd.State)) != 1 {
		p.message(w, http.StatusBadRequest, "Sign-in expired",
			"This sign-in does not match the one this browser started. Please sign in again.", true)
		return
	}
	if e := q.Get("error"); e != "" {
		p.log.Info("portal: provider refused the sign-in", "error", e)
		p.message(w, http.StatusUnauthorized, "Sign-in not completed",
			"The sign-in service did not sign you in. Please try again.", true)
		return
	}
	st := p.settingsOf(r)
	ip, err := p.provider(r.Context(), st)
	if err != nil {
		p.log.Error("portal: identity provider unreachable", "err", err)
		p.message(w, http.StatusBadGateway, "Sign-in is unavailable",
			"The sign-in service cannot be reached right now. Please try again in a minute.", true)
		return
	}
	ctx := oidc.ClientContext(r.Context(), p.httpClient)
	tok, err := ip.oauth.Exchange(ctx, q.Get("code"), oauth2.VerifierOption(pd.Verifier))
	if err != nil {
		p.refuseToken(w, fmt.Errorf("code exchange: %w", err))
		return
	}
	raw, _ := tok.Extra("id_token").(string)
	idt, err := ip.verifier.Verify(ctx, raw)
	if err != nil {
		p.refuseToken(w, fmt.Errorf("id token: %w", err))
		return
	}
	if subtle.ConstantTimeCompare([]byte(idt.Nonce), []byte(pd.Nonce)) != 1 {
		p.refuseToken(w, fmt.Errorf("id token: nonce mismatch"))
		return
	}
	var all map[string]any
	var cl idClaims
	if err := idt.Claims(&all); err != nil {
		p.refuseToken(w, err)
		return
	}
	idt.Claims(&cl)
	user, _ := all[st.cfg.OIDC.UsernameClaim].(string)
	if user == "" {
		p.refuseToken(w, fmt.Errorf("id token has no %q claim", st.cfg.OIDC.UsernameClaim))
		return
	}
	log := p.reqLog(r)
	// The claim names a directory user by exact match; from here on the
	// session holds the canonical name (docs/identity.md).
	claim := user
	if user, err = p.ctl.ResolveClaim(r.Context(), control.ClaimArgs{Claim: claim, Attribute: st.cfg.OIDC.UsernameAttribute}); err != nil {
		if !errors.Is(err, control.ErrUnknownUser) {
			p.fail(w, err)
			return
		}
		log.Warn("portal: sign-in refused: the claim names no user", "claim", claim, "err", err)
		p.message(w, http.StatusForbidden, "Unknown user",
			"Your sign-in is not linked to a mail account here. Ask your administrator.", true)
		return
	}
	if st.cfg.OIDC.RequireMFA && !multifactor(st.cfg.OIDC, cl) {
		log.Info("portal: sign-in without multifactor refused", "user", user, "amr", cl.AMR, "acr", cl.ACR)
		p.render(w, http.StatusForbidden, "message.html", messagePage{layout: layout{Title: "Multifactor sign-in required"},
			Heading: "Multifactor sign-in required",
			Text:    "App passwords need multifactor sign-in. Sign in again with your second factor (an authenticator app, a security key or a text message).",
			SignIn:  true, SignInURL: "/login?reauth=1"})
		return
	}
	now := p.now()
	s := &session{ID: randomToken(), User: user, Start: now, Seen: now, CSRF: randomToken()}
	if email, _ := all["email"].(string); len(email) <= 254 && all["email_verified"] != false {
		s.Email = email // for the device set-up profile's address
	}
	if cl.AuthTime > 0 {
		// The age of the authentication on the provider's own clock,
		// carried over to ours: immune to skew between the two.
		age := max(idt.IssuedAt.Sub(time.Unix(cl.AuthTime, 0)), 0)
		s.AuthAt = now.Add(-age)
	}
	// Without auth_time the age of the sign-in is unknown: AuthAt stays
	// zero (stale). After prompt=login/max_age=0 OpenID Connect Core
	// (§3.1.2.1, §2) requires auth_time, so a token without it proves no
	// fresh sign-in either.
	if pd.Reauth {
		if p.freshAuth(st, s) {
			s.Notice = "You signed in again. You can create the app password now."
		} else {
			s.Notice = "Your sign-in service did not ask you to sign in again, so app passwords cannot be created right now."
		}
	}
	log.Info("portal: signed in", "user", user, "amr", cl.AMR, "acr", cl.ACR)
	if err := p.writeSession(w, s); err != nil {
		p.fail(w, err)
		return
	}
	http.Redirect(w, r, "/", http.StatusSeeOther)
}

func (p *Portal) refuseToken(w http.ResponseWriter, err error) {
	p.log.Warn("portal: sign-in refused", "err", err)
	p.message(w, http.StatusUnauthorized, "Sign-in failed",
		"The answer of the sign-in service could not be verified. Please sign in again.", true)
}

// multifactor applies portal.oidc.require_mfa: when mfa_acr is set, acr
// must equal it (amr is not looked at); otherwise amr names one of mfa_amr.
func multifactor(o config.OIDC, c idClaims) bool {
	if o.MFAACR != "" {
		return subtle.ConstantTimeCompare([]byte(c.ACR), []byte(o.MFAACR)) == 1
	}
	return slices.ContainsFunc(c.AMR, func(m string) bool { return slices.Contains(o.MFAAMR, m) })
}

// logout ends the session, on the server too: its id goes into the table
// of ended sessions, so a copy of the cookie taken before is refused from
// now on. It needs the form's CSRF token when a session is still there.
func (p *Portal) logout(w http.ResponseWriter, r *http.Request) {
	s, ok := p.readSession(r)
	if ok && !validCSRF(s, r.PostFormValue("csrf")) {
		p.message(w, http.StatusForbidden, "Form expired", "This form is no longer valid. Go back, reload the page and try again.", false)
		return
	}
	if ok {
		if err := p.endSession(r.Context(), s.ID, s.Start); err != nil {
			p.fail(w, err)
			return
		}
		p.setups.endSession(s.ID)
		p.reqLog(r).Info("portal: signed out", "user", s.User)
	}
	p.clearCookie(w, p.sessionCookie())
	p.message(w, http.StatusOK, "Signed out", "You are signed out of the app-password page.", true)
}

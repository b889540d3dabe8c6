package smtp

import (
	"strings"

	gosmtp "github.com/emersion/go-smtp"

	"github.com/legate-proxy/legate/internal/auth"
	"github.com/legate-proxy/legate/internal/session"
	"github.com/legate-proxy/legate/policy"
)

var (
	errBadCredentials = &gosmtp.SMTPError{Code: 535, EnhancedCode: gosmtp.EnhancedCode{5, 7, 8},
		Message: "Authentication credentials invalid"}
	errAuthzid = &gosmtp.SMTPError{Code: 535, EnhancedCode: gosmtp.EnhancedCode{5, 7, 8},
		Message: "Authorization identity must be the user's own"}
	errThrottled = &gosmtp.SMTPError{Code: 454, EnhancedCode: gosmtp.EnhancedCode{4, 7, 0},
		Message: "Too many failed logins, try again later"}
	errAuthUnavailable = &gosmtp.SMTPError{Code: 454, EnhancedCode: gosmtp.EnhancedCode{4, 7, 0},
		Message: "Temporary authentication failure, try again later"}
)

// login is the end of AUTH PLAIN and AUTH LOGIN: it asks the login service,
// opens the upstream session and registers the session. The error it
// returns is the client's answer.
func (s *smtpSession) login(authzid, user, secret string) error {
	if authzid != "" && !strings.EqualFold(strings.TrimSpace(authzid), strings.TrimSpace(user)) {
		s.c.log.Warn("login refused: authorization identity differs", "user", user)
		return errAuthzid
	}
	res := s.c.opts.Auth.Login(s.c.ctx, auth.Request{
		User: user, Secret: secret, IP: s.c.ip, Protocol: policy.SMTP,
		TLS: s.c.isTLS(s.sc), Client: s.sc.Hostname(),
	})
	if err := outcomeError(res.Decision); err != nil {
		return err
	}
	if res.User == nil {
		s.c.log.Error("login service allowed without a user", "user", user)
		return errAuthUnavailable
	}
	s.user = res.User
	if res.AppPassword != nil {
		s.apID = res.AppPassword.ID
	}
	// Register before the dial: a revocation during it closes the session.
	if reg := s.c.opts.Sessions; reg != nil {
		name := s.user.Name
		s.regID, s.unreg = reg.Register(session.Info{
			User: s.user.Name, AppPasswordID: s.apID, Protocol: policy.SMTP,
			IP: s.c.ip, Client: s.sc.Hostname(), TLS: s.c.isTLS(s.sc),
		}, func() { s.kill(name) })
	}
	// Open the upstream now, so that an unreachable upstream is reported at
	// AUTH (454 4.7.0) rather than after the client thinks it is in; then
	// re-decide the session, now that it is registered.
	err := s.connectUpstream()
	if reg := s.c.opts.Sessions; err == nil && reg != nil && !reg.Confirm(s.c.ctx, s.regID) {
		s.closeUpstream(false)
		err = errUpstreamDown
	}
	if err != nil {
		if s.unreg != nil {
			s.unreg()
			s.unreg = nil
		}
		s.user, s.apID = nil, ""
		return errUpstreamDown
	}
	s.c.authenticated.Store(true)
	s.c.ic.authenticated()
	s.c.log.Info("session started", "user", s.user.Name, "session", s.regID, "app_password", s.apID)
	return nil
}

// outcomeError maps a login decision to the answer of SPEC §4; nil for
// allow.
func outcomeError(d policy.Decision) error {
	switch d.Outcome {
	case policy.Allow:
		return nil
	case policy.BadCredentials:
		return errBadCredentials
	case policy.Refused:
		return &gosmtp.SMTPError{Code: 535, EnhancedCode: gosmtp.EnhancedCode{5, 7, 8},
			Message: "Authentication refused: " + reasonText(d.Reason, "refused by policy")}
	case policy.Expired:
		r := reasonText(d.Reason, "app password expired")
		if !strings.Contains(strings.ToLower(r), "expired") {
			r = "expired: " + r
		}
		return &gosmtp.SMTPError{Code: 535, EnhancedCode: gosmtp.EnhancedCode{5, 7, 8},
			Message: "Authentication refused: " + r}
	case policy.TLSRequired:
		return errNeedTLS
	case policy.Throttled:
		return errThrottled
	default:
		return errAuthUnavailable
	}
}

// reasonText makes a policy reason safe for a one-line reply.
func reasonText(r, def string) string {
	r = strings.Map(func(c rune) rune {
		if c < 0x20 || c == 0x7f {
			return ' '
		}
		return c
	}, strings.TrimSpace(r))
	if r == "" {
		return def
	}
	return r
}

package smtp

import (
	"errors"
	"io"
	"sync"

	"github.com/emersion/go-sasl"
	gosmtp "github.com/emersion/go-smtp"

	"github.com/legate-proxy/legate/internal/directory"
)

// Replies of this front-end (SPEC §4).
var (
	errNeedTLS = &gosmtp.SMTPError{Code: 530, EnhancedCode: gosmtp.EnhancedCode{5, 7, 0},
		Message: "Must issue a STARTTLS command first"}
	errAuthRequired = &gosmtp.SMTPError{Code: 530, EnhancedCode: gosmtp.EnhancedCode{5, 7, 0},
		Message: "Authentication required"}
	errNullSender = &gosmtp.SMTPError{Code: 553, EnhancedCode: gosmtp.EnhancedCode{5, 7, 1},
		Message: "Null sender <> not allowed"}
	errUpstreamDown = &gosmtp.SMTPError{Code: 454, EnhancedCode: gosmtp.EnhancedCode{4, 7, 0},
		Message: "Upstream server unavailable, try again later"}
	errUpstreamLost = &gosmtp.SMTPError{Code: 451, EnhancedCode: gosmtp.EnhancedCode{4, 4, 2},
		Message: "Connection to upstream server lost, restart the transaction"}
	errNoUTF8Upstream = &gosmtp.SMTPError{Code: 555, EnhancedCode: gosmtp.EnhancedCode{5, 5, 4},
		Message: "SMTPUTF8 not supported by the upstream server"}
	errLineTooLong = &gosmtp.SMTPError{Code: 500, EnhancedCode: gosmtp.EnhancedCode{5, 4, 0},
		Message: "Line too long"}
)

// smtpSession is go-smtp's Session for one client session (a new one after
// STARTTLS). Its methods run on the connection's goroutine (Data on a
// go-smtp goroutine during BDAT, never concurrently with the others).
type smtpSession struct {
	c  *conn
	sc *gosmtp.Conn

	user  *directory.User
	apID  string
	regID string
	unreg func()

	// txMu serialises the session methods: go-smtp calls Reset and Logout
	// while a BDAT's Data may still run on its own goroutine.
	txMu sync.Mutex

	upMu sync.Mutex // guards up against close from the registry
	up   *upstreamConn
	inTx bool // an upstream MAIL was accepted and the transaction is open

	buf []byte
}

var (
	_ gosmtp.Session     = (*smtpSession)(nil)
	_ gosmtp.AuthSession = (*smtpSession)(nil)
)

// AuthMechanisms lists PLAIN and LOGIN when credentials are accepted on
// this connection (SPEC §3 step 1); EHLO then advertises them.
func (s *smtpSession) AuthMechanisms() []string {
	if !s.c.opts.Auth.CredentialsAccepted(s.c.isTLS(s.sc), s.c.ip) {
		return nil
	}
	return []string{sasl.Plain, sasl.Login}
}

// Auth starts an AUTH exchange.
func (s *smtpSession) Auth(mech string) (sasl.Server, error) {
	if err := s.c.countPreauth(s.sc); err != nil {
		return nil, err
	}
	if !s.c.opts.Auth.CredentialsAccepted(s.c.isTLS(s.sc), s.c.ip) {
		return nil, errNeedTLS
	}
	switch mech {
	case sasl.Plain:
		return newPlainServer(s.login), nil
	case sasl.Login:
		return newLoginServer(s.login), nil
	}
	return nil, gosmtp.ErrAuthUnknownMechanism
}

// Mail starts a transaction: the sender must be the user's, and the
// upstream must accept it.
func (s *smtpSession) Mail(from string, opts *gosmtp.MailOptions) error {
	s.txMu.Lock()
	defer s.txMu.Unlock()
	if s.user == nil {
		if err := s.c.countPreauth(s.sc); err != nil {
			return err
		}
		if !s.c.opts.Auth.CredentialsAccepted(s.c.isTLS(s.sc), s.c.ip) {
			return errNeedTLS
		}
		return errAuthRequired
	}
	if from == "" && !s.c.opts.AllowNullSender {
		return errNullSender
	}
	if from != "" && !s.c.opts.AllowAnySender && !ownsAddress(s.user.Addresses, from) {
		s.c.log.Warn("sender refused", "user", s.user.Name, "session", s.regID, "from", from)
		return &gosmtp.SMTPError{Code: 553, EnhancedCode: gosmtp.EnhancedCode{5, 7, 1},
			Message: "Sender address not owned by user <" + s.user.Name + ">"}
	}
	return s.relayMail(from, opts)
}

// Rcpt adds a recipient upstream; the upstream's answer is the client's.
func (s *smtpSession) Rcpt(to string, opts *gosmtp.RcptOptions) error {
	s.txMu.Lock()
	defer s.txMu.Unlock()
	if s.user == nil {
		return errAuthRequired
	}
	return s.relayRcpt(to, opts)
}

// Data streams the message to the upstream.
func (s *smtpSession) Data(r io.Reader) error {
	s.txMu.Lock()
	defer s.txMu.Unlock()
	if s.user == nil {
		return errAuthRequired
	}
	return s.relayData(r)
}

// Reset aborts the transaction (RSET, EHLO again, after DATA).
func (s *smtpSession) Reset() {
	s.txMu.Lock()
	defer s.txMu.Unlock()
	if s.user == nil {
		_ = s.c.countPreauth(s.sc)
		return
	}
	s.resetUpstream()
}

// Logout ends the session: the upstream connection is closed and the
// session unregistered.
func (s *smtpSession) Logout() error {
	s.txMu.Lock()
	defer s.txMu.Unlock()
	s.closeUpstream(true)
	if s.unreg != nil {
		s.unreg()
		s.unreg = nil
		s.c.log.Info("session ended", "user", s.user.Name, "session", s.regID)
	}
	return nil
}

// kill is the registry's close function: it closes the client and the
// upstream connection at once, from any goroutine.
func (s *smtpSession) kill(user string) {
	s.c.log.Info("session killed", "user", user)
	s.c.close()
	s.upMu.Lock()
	if s.up != nil {
		s.up.abort()
	}
	s.upMu.Unlock()
}

// upstreamErr maps an upstream failure to the client's answer: the
// upstream's own reply when it sent one, else the connection is dropped
// and lost is answered.
func (s *smtpSession) upstreamErr(err error, lost *gosmtp.SMTPError) error {
	var se *gosmtp.SMTPError
	if errors.As(err, &se) {
		return se
	}
	s.c.log.Warn("upstream failed", "user", s.user.Name, "session", s.regID, "err", err)
	s.closeUpstream(false)
	return lost
}

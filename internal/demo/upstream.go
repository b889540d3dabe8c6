package demo

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"net"
	"strings"
	"sync"
	"time"

	"github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapserver"
	"github.com/emersion/go-imap/v2/imapserver/imapmemserver"
	"github.com/emersion/go-sasl"
	"github.com/emersion/go-smtp"
)

// mailUpstream is the demo's in-memory mail server: go-imap's imapmemserver
// for IMAP, and a go-smtp server that delivers into the same mailboxes. Both
// accept only the master credential, the way Dovecot's master users do:
// SASL PLAIN with authzid=user, authcid=master.
type mailUpstream struct {
	master, masterPassword string
	mem                    *imapmemserver.Server

	mu    sync.Mutex
	users map[string]*imapmemserver.User // by name
	addrs map[string]string              // address → name

	imapSrv *imapserver.Server
	smtpSrv *smtp.Server
	imapLn  net.Listener
	smtpLn  net.Listener
	wg      sync.WaitGroup
}

func newMailUpstream(master, masterPassword string) *mailUpstream {
	return &mailUpstream{master: master, masterPassword: masterPassword, mem: imapmemserver.New(),
		users: map[string]*imapmemserver.User{}, addrs: map[string]string{}}
}

// addUser creates a mailbox owner with an INBOX. The user's own password is
// random and unknown: only the master credential logs in.
func (m *mailUpstream) addUser(name string, addresses []string) *imapmemserver.User {
	u := imapmemserver.NewUser(name, "")
	_ = u.Create("INBOX", nil)
	m.mu.Lock()
	m.users[name] = u
	for _, a := range addresses {
		m.addrs[strings.ToLower(a)] = name
	}
	m.mu.Unlock()
	return u
}

func (m *mailUpstream) user(name string) *imapmemserver.User {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.users[strings.ToLower(name)]
}

// deliver appends a message to a user's INBOX.
func (m *mailUpstream) deliver(name string, msg []byte) error {
	u := m.user(name)
	if u == nil {
		return fmt.Errorf("no mailbox for %s", name)
	}
	_, err := u.Append("INBOX", literal{bytes.NewReader(msg), int64(len(msg))}, &imap.AppendOptions{Time: time.Now()})
	return err
}

type literal struct {
	*bytes.Reader
	n int64
}

func (l literal) Size() int64 { return l.n }

// checkMaster validates a master login and returns the target user.
func (m *mailUpstream) checkMaster(identity, username, password string) (string, error) {
	if username != m.master || password != m.masterPassword || m.user(identity) == nil {
		return "", errors.New("authentication failed")
	}
	return strings.ToLower(identity), nil
}

func (m *mailUpstream) start() error {
	var err error
	if m.imapLn, err = net.Listen("tcp", "127.0.0.1:0"); err != nil {
		return err
	}
	if m.smtpLn, err = net.Listen("tcp", "127.0.0.1:0"); err != nil {
		m.imapLn.Close()
		return err
	}
	m.imapSrv = imapserver.New(&imapserver.Options{
		NewSession: func(*imapserver.Conn) (imapserver.Session, *imapserver.GreetingData, error) {
			return &imapSession{up: m}, nil, nil
		},
		Caps:         imap.CapSet{imap.CapIMAP4rev1: {}, imap.CapIMAP4rev2: {}, imap.CapIdle: {}, imap.CapSASLIR: {}},
		InsecureAuth: true, // loopback only, inside the demo process
		Logger:       discardLogger{},
	})
	m.smtpSrv = smtp.NewServer(smtp.BackendFunc(func(*smtp.Conn) (smtp.Session, error) { return &smtpSession{up: m}, nil }))
	m.smtpSrv.Domain = "upstream.demo"
	m.smtpSrv.AllowInsecureAuth = true
	m.smtpSrv.MaxMessageBytes = 50 << 20
	m.smtpSrv.ErrorLog = discardLogger{}
	m.wg.Add(2)
	go func() { defer m.wg.Done(); _ = m.imapSrv.Serve(m.imapLn) }()
	go func() { defer m.wg.Done(); _ = m.smtpSrv.Serve(m.smtpLn) }()
	return nil
}

func (m *mailUpstream) close() {
	if m.imapSrv != nil {
		m.imapSrv.Close()
	}
	if m.smtpSrv != nil {
		m.smtpSrv.Close()
	}
	m.wg.Wait()
}

type discardLogger struct{}

func (discardLogger) Printf(string, ...any) {}
func (discardLogger) Println(...any)        {}

// imapSession logs in with the master credential, then is the memserver's
// session of the target user.
type imapSession struct {
	*imapmemserver.UserSession
	up *mailUpstream
}

var _ imapserver.SessionSASL = (*imapSession)(nil)

func (s *imapSession) login(identity, username, password string) error {
	name, err := s.up.checkMaster(identity, username, password)
	if err != nil {
		return imapserver.ErrAuthFailed
	}
	s.UserSession = imapmemserver.NewUserSession(s.up.user(name))
	return nil
}

// Login accepts the `user*master` form.
func (s *imapSession) Login(username, password string) error {
	user, master, ok := strings.Cut(username, "*")
	if !ok {
		return imapserver.ErrAuthFailed
	}
	return s.login(user, master, password)
}

func (s *imapSession) AuthenticateMechanisms() []string { return []string{sasl.Plain} }

func (s *imapSession) Authenticate(mech string) (sasl.Server, error) {
	if mech != sasl.Plain {
		return nil, errors.New("unsupported mechanism")
	}
	return sasl.NewPlainServer(s.login), nil
}

func (s *imapSession) Close() error {
	if s.UserSession == nil {
		return nil
	}
	return s.UserSession.Close()
}

// smtpSession accepts AUTH PLAIN with the master credential and delivers
// each message to the local recipients' INBOXes.
type smtpSession struct {
	up   *mailUpstream
	user string
	rcpt []string
}

func (s *smtpSession) AuthMechanisms() []string { return []string{sasl.Plain} }

func (s *smtpSession) Auth(mech string) (sasl.Server, error) {
	return sasl.NewPlainServer(func(identity, username, password string) error {
		name, err := s.up.checkMaster(identity, username, password)
		if err != nil {
			return &smtp.SMTPError{Code: 535, EnhancedCode: smtp.EnhancedCode{5, 7, 8}, Message: "Authentication failed"}
		}
		s.user = name
		return nil
	}), nil
}

func (s *smtpSession) Mail(string, *smtp.MailOptions) error {
	if s.user == "" {
		return smtp.ErrAuthRequired
	}
	return nil
}

func (s *smtpSession) Rcpt(to string, _ *smtp.RcptOptions) error {
	s.up.mu.Lock()
	name, ok := s.up.addrs[strings.ToLower(to)]
	s.up.mu.Unlock()
	if !ok {
		return &smtp.SMTPError{Code: 550, EnhancedCode: smtp.EnhancedCode{5, 1, 1}, Message: "No such mailbox in the demo"}
	}
	s.rcpt = append(s.rcpt, name)
	return nil
}

func (s *smtpSession) Data(r io.Reader) error {
	msg, err := io.ReadAll(r)
	if err != nil {
		return err
	}
	for _, name := range s.rcpt {
		if err := s.up.deliver(name, msg); err != nil {
			return err
		}
	}
	return nil
}

func (s *smtpSession) Reset()        { s.rcpt = nil }
func (s *smtpSession) Logout() error { return nil }

package demo

import (
	"crypto/subtle"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/go-ldap/ldap/v3"
	"github.com/hashicorp/go-hclog"
	"github.com/jimlambrt/gldap"
)

// The demo directory's naming context and service account.
const (
	ldapBase       = "dc=legate,dc=test"
	ldapServiceDN  = "cn=legate,ou=services,dc=legate,dc=test"
	ldapStopWait   = 5 * time.Second
	ldapStartWait  = 10 * time.Second
	ldapListenAddr = "127.0.0.1:0"
)

// dirEntry is one entry of the in-memory directory.
type dirEntry struct {
	dn    string
	name  *ldap.DN
	attrs []dirAttr
}

type dirAttr struct {
	name   string
	values []string
}

// values returns the values of attribute desc (case-insensitive; options
// such as ";lang-en" are ignored).
func (e *dirEntry) values(desc string) []string {
	desc, _, _ = strings.Cut(desc, ";")
	for _, a := range e.attrs {
		if strings.EqualFold(a.name, desc) {
			return a.values
		}
	}
	return nil
}

// demoEntries is the static directory: dc=legate,dc=test with ou=people
// (demo, alice, bob) and ou=services (the service account Legate binds as).
func demoEntries() []*dirEntry {
	person := func(uid, cn, sn, phone string) *dirEntry {
		return newEntry("uid="+uid+",ou=people,"+ldapBase,
			"objectClass", "top", "objectClass", "person", "objectClass", "organizationalPerson",
			"objectClass", "inetOrgPerson", "uid", uid, "cn", cn, "sn", sn,
			"mail", uid+"@legate.test", "telephoneNumber", phone)
	}
	return []*dirEntry{
		newEntry(ldapBase, "objectClass", "top", "objectClass", "dcObject", "objectClass", "organization",
			"dc", "legate", "o", "Legate demo"),
		newEntry("ou=people,"+ldapBase, "objectClass", "top", "objectClass", "organizationalUnit", "ou", "people"),
		newEntry("ou=services,"+ldapBase, "objectClass", "top", "objectClass", "organizationalUnit", "ou", "services"),
		newEntry(ldapServiceDN, "objectClass", "top", "objectClass", "applicationProcess", "cn", "legate",
			"description", "The service account Legate binds as"),
		person(demoUser, "Demo User", "User", "+1 555 0100"),
		person("alice", "Alice Example", "Example", "+1 555 0101"),
		person("bob", "Bob Example", "Example", "+1 555 0102"),
	}
}

// newEntry builds an entry from attribute/value pairs; repeated attributes
// collect values.
func newEntry(dn string, kv ...string) *dirEntry {
	name, err := ldap.ParseDN(dn)
	if err != nil {
		panic(fmt.Sprintf("demo: bad DN %q: %v", dn, err))
	}
	e := &dirEntry{dn: dn, name: name}
	for i := 0; i+1 < len(kv); i += 2 {
		if j := slices.IndexFunc(e.attrs, func(a dirAttr) bool { return a.name == kv[i] }); j >= 0 {
			e.attrs[j].values = append(e.attrs[j].values, kv[i+1])
			continue
		}
		e.attrs = append(e.attrs, dirAttr{name: kv[i], values: []string{kv[i+1]}})
	}
	return e
}

// rootDSE is the entry read with base "" and scope base.
var rootDSE = newEntry("", "objectClass", "top", "namingContexts", ldapBase,
	"supportedLDAPVersion", "3", "vendorName", "Legate demo (gldap)")

// ldapUpstream is the demo's in-memory LDAP server (github.com/jimlambrt/gldap,
// used only as a test and demo upstream). It accepts a simple bind only
// from the service DN with the master password, and answers searches from
// demoEntries. It does not implement the Proxied Authorization control,
// which is why the demo runs Legate with authz: service (see Run).
type ldapUpstream struct {
	password string
	entries  []*dirEntry
	log      *slog.Logger

	srv   *gldap.Server
	addr  net.Addr
	runWG sync.WaitGroup

	mu    sync.Mutex
	bound map[int]bool // connection ID → bound as the service DN
}

func newLDAPUpstream(password string, log *slog.Logger) *ldapUpstream {
	return &ldapUpstream{password: password, entries: demoEntries(), log: log, bound: map[int]bool{}}
}

// start listens on a random loopback port and serves until close.
func (u *ldapUpstream) start() error {
	ready := make(chan net.Addr, 1)
	srv, err := gldap.NewServer(
		gldap.WithLogger(&gldapLogger{Logger: hclog.NewNullLogger(), log: u.log, ready: ready}),
		gldap.WithOnClose(u.forget))
	if err != nil {
		return err
	}
	mux, err := gldap.NewMux()
	if err != nil {
		return err
	}
	if err := mux.Bind(u.bind); err != nil {
		return err
	}
	if err := mux.Search(u.search); err != nil {
		return err
	}
	if err := srv.Router(mux); err != nil {
		return err
	}
	u.srv = srv
	errc := make(chan error, 1)
	u.runWG.Add(1)
	go func() { defer u.runWG.Done(); errc <- srv.Run(ldapListenAddr) }()
	// gldap does not expose its listener: its "listening" log line carries
	// the address, and Run returns early if it cannot listen.
	select {
	case u.addr = <-ready:
		return nil
	case err := <-errc:
		u.runWG.Wait()
		if err == nil {
			err = errors.New("stopped")
		}
		return fmt.Errorf("ldap upstream: %w", err)
	case <-time.After(ldapStartWait):
		u.close()
		return errors.New("ldap upstream: did not start")
	}
}

// close stops the server. gldap waits for its connections to end, and they
// only notice the shutdown when the client sends or closes: Legate's pool
// is closed first (daemon shutdown), so the wait is normally short; it is
// bounded in case another local client holds a connection.
func (u *ldapUpstream) close() {
	if u.srv == nil {
		return
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		if err := u.srv.Stop(); err != nil {
			u.log.Debug("demo ldap upstream stop", "err", err)
		}
		u.runWG.Wait()
	}()
	select {
	case <-done:
	case <-time.After(ldapStopWait):
		u.log.Warn("demo ldap upstream: connections still open at exit")
	}
}

func (u *ldapUpstream) forget(connID int) {
	u.mu.Lock()
	delete(u.bound, connID)
	u.mu.Unlock()
}

func (u *ldapUpstream) isBound(connID int) bool {
	u.mu.Lock()
	defer u.mu.Unlock()
	return u.bound[connID]
}

// bind accepts the service DN with the master password; an anonymous bind
// succeeds but only allows root DSE reads.
func (u *ldapUpstream) bind(w *gldap.ResponseWriter, r *gldap.Request) {
	resp := r.NewBindResponse(gldap.WithResponseCode(gldap.ResultInvalidCredentials))
	defer func() { _ = w.Write(resp) }()
	m, err := r.GetSimpleBindMessage()
	if err != nil {
		resp.SetResultCode(gldap.ResultAuthMethodNotSupported)
		return
	}
	u.forget(r.ConnectionID())
	if m.UserName == "" && m.Password == "" {
		resp.SetResultCode(gldap.ResultSuccess)
		return
	}
	dn, err := ldap.ParseDN(m.UserName)
	service, _ := ldap.ParseDN(ldapServiceDN)
	ok := subtle.ConstantTimeCompare([]byte(m.Password), []byte(u.password)) == 1
	if err != nil || !dn.EqualFold(service) || !ok {
		return
	}
	u.mu.Lock()
	u.bound[r.ConnectionID()] = true
	u.mu.Unlock()
	resp.SetResultCode(gldap.ResultSuccess)
}

// search answers from the in-memory entries.
func (u *ldapUpstream) search(w *gldap.ResponseWriter, r *gldap.Request) {
	done := r.NewSearchDoneResponse(gldap.WithResponseCode(gldap.ResultSuccess))
	defer func() { _ = w.Write(done) }()
	m, err := r.GetSearchMessage()
	if err != nil {
		done.SetResultCode(gldap.ResultProtocolError)
		return
	}
	filter, err := ldap.CompileFilter(m.Filter)
	if err != nil {
		done.SetResultCode(gldap.ResultProtocolError)
		done.SetDiagnosticMessage("bad filter")
		return
	}
	var candidates []*dirEntry
	if m.BaseDN == "" && m.Scope == gldap.BaseObject {
		candidates = []*dirEntry{rootDSE}
	} else {
		if !u.isBound(r.ConnectionID()) {
			done.SetResultCode(gldap.ResultInsufficientAccessRights)
			done.SetDiagnosticMessage("bind as the service account first")
			return
		}
		var code int
		if candidates, code = u.scope(m.BaseDN, m.Scope); code != gldap.ResultSuccess {
			done.SetResultCode(code)
			return
		}
	}
	sent := int64(0)
	for _, e := range candidates {
		if !matchFilter(filter, e) {
			continue
		}
		if m.SizeLimit > 0 && sent == m.SizeLimit {
			done.SetResultCode(gldap.ResultSizeLimitExceeded)
			return
		}
		if err := w.Write(r.NewSearchResponseEntry(e.dn, gldap.WithAttributes(selectAttrs(e, m.Attributes, m.TypesOnly)))); err != nil {
			return
		}
		sent++
	}
}

// scope returns the entries within base and scope, or a result code.
func (u *ldapUpstream) scope(base string, scope gldap.Scope) ([]*dirEntry, int) {
	b, err := ldap.ParseDN(base)
	if err != nil {
		return nil, gldap.ResultInvalidDNSyntax
	}
	var out []*dirEntry
	found := false
	for _, e := range u.entries {
		switch {
		case e.name.EqualFold(b):
			found = true
			if scope == gldap.BaseObject || scope == gldap.WholeSubtree {
				out = append(out, e)
			}
		case scope == gldap.SingleLevel && b.AncestorOfFold(e.name) && len(e.name.RDNs) == len(b.RDNs)+1,
			scope == gldap.WholeSubtree && b.AncestorOfFold(e.name):
			out = append(out, e)
		}
	}
	if !found {
		return nil, gldap.ResultNoSuchObject
	}
	return out, gldap.ResultSuccess
}

// selectAttrs returns the requested attributes of e: none for "1.1", all
// user attributes for an empty list or "*".
func selectAttrs(e *dirEntry, requested []string, typesOnly bool) map[string][]string {
	all := len(requested) == 0 || slices.Contains(requested, "*")
	out := map[string][]string{}
	for _, a := range e.attrs {
		if !all && !slices.ContainsFunc(requested, func(r string) bool { return strings.EqualFold(r, a.name) }) {
			continue
		}
		if typesOnly {
			out[a.name] = nil
		} else {
			out[a.name] = a.values
		}
	}
	return out
}

// gldapLogger adapts gldap's hclog logging: it reports the listening
// address and passes warnings and errors to the demo's logger at debug
// level (a client closing mid-request is not worth more).
type gldapLogger struct {
	hclog.Logger
	log   *slog.Logger
	ready chan<- net.Addr
}

func (l *gldapLogger) Info(msg string, args ...any) {
	if msg != "listening" {
		return
	}
	for i := 0; i+1 < len(args); i += 2 {
		if a, ok := args[i+1].(net.Addr); ok && args[i] == "addr" {
			select {
			case l.ready <- a:
			default:
			}
		}
	}
}

func (l *gldapLogger) Warn(msg string, args ...any) { l.log.Debug("demo ldap upstream: "+msg, args...) }
func (l *gldapLogger) Error(msg string, args ...any) {
	l.log.Debug("demo ldap upstream: "+msg, args...)
}

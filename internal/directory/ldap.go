package directory

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"time"

	ber "github.com/go-asn1-ber/asn1-ber"
	"github.com/go-ldap/ldap/v3"

	"github.com/legate-proxy/legate/internal/upstream"
)

// LDAPOptions configure an LDAP directory (directory.ldap in the YAML, with
// the connection settings of upstream.ldap).
type LDAPOptions struct {
	// Upstream says how to reach the directory; MasterUser is the service
	// account's bind DN and MasterPassword its password. Required.
	Upstream *upstream.Config
	// BaseDN is where users live; required.
	BaseDN string
	// UserFilter finds a user by login name; %s is replaced by the escaped
	// login. Empty means "(uid=%s)".
	UserFilter string
	// NameAttribute holds the canonical login name; empty means "uid".
	NameAttribute string
	// MailAttributes hold the user's addresses; nil means [mail]. A login
	// containing '@' is also searched for in them.
	MailAttributes []string
	// GroupAttribute lists the DNs of the user's groups; empty means
	// "memberOf".
	GroupAttribute string
	// AdminGroups are group DNs whose members are administrators (compared
	// as DNs, case-insensitively).
	AdminGroups []string
	// DisabledFilter matches disabled users; empty means
	// "(pwdAccountLockedTime=*)". Set it to e.g.
	// "(userAccountControl:1.2.840.113556.1.4.803:=2)" for Active Directory.
	DisabledFilter string
	// PasswordChangedAttribute holds the last primary-password change, as a
	// generalized time (pwdChangedTime) or an AD FILETIME (pwdLastSet);
	// empty means "pwdChangedTime".
	PasswordChangedAttribute string
	// Timeout bounds each directory request; zero means 10s.
	Timeout time.Duration
}

// LDAP is a Directory backed by an LDAP server. Lookups run over one
// reconnecting connection bound as the service account; password checks
// bind as the user on a fresh connection of their own. Safe for concurrent
// use.
type LDAP struct {
	opts   LDAPOptions
	base   *ldap.DN
	admins []*ldap.DN

	mu   sync.Mutex
	conn *ldap.Conn // nil until first use or after a failure
}

var _ Directory = (*LDAP)(nil)

// NewLDAP checks the options and returns a directory; it does not connect
// (the first Lookup does).
func NewLDAP(opts LDAPOptions) (*LDAP, error) {
	if opts.Upstream == nil || opts.Upstream.Address == "" {
		return nil, errors.New("directory: ldap: upstream address required")
	}
	if opts.UserFilter == "" {
		opts.UserFilter = "(uid=%s)"
	}
	if !strings.Contains(opts.UserFilter, "%s") {
		return nil, fmt.Errorf("directory: ldap: user_filter %q has no %%s", opts.UserFilter)
	}
	if opts.NameAttribute == "" {
		opts.NameAttribute = "uid"
	}
	if opts.MailAttributes == nil {
		opts.MailAttributes = []string{"mail"}
	}
	if opts.GroupAttribute == "" {
		opts.GroupAttribute = "memberOf"
	}
	if opts.DisabledFilter == "" {
		opts.DisabledFilter = "(pwdAccountLockedTime=*)"
	}
	if opts.PasswordChangedAttribute == "" {
		opts.PasswordChangedAttribute = "pwdChangedTime"
	}
	if opts.Timeout <= 0 {
		opts.Timeout = 10 * time.Second
	}
	for _, f := range []string{strings.ReplaceAll(opts.UserFilter, "%s", "x"), opts.DisabledFilter} {
		if _, err := ldap.CompileFilter(f); err != nil {
			return nil, fmt.Errorf("directory: ldap: filter %q: %w", f, err)
		}
	}
	base, err := ldap.ParseDN(opts.BaseDN)
	if err != nil || opts.BaseDN == "" {
		return nil, fmt.Errorf("directory: ldap: base_dn %q: invalid", opts.BaseDN)
	}
	d := &LDAP{opts: opts, base: base}
	for _, g := range opts.AdminGroups {
		gdn, err := ldap.ParseDN(g)
		if err != nil {
			return nil, fmt.Errorf("directory: ldap: admin group %q: %w", g, err)
		}
		d.admins = append(d.admins, gdn)
	}
	return d, nil
}

// Close drops the service connection.
func (d *LDAP) Close() error {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.conn != nil {
		d.conn.Close()
		d.conn = nil
	}
	return nil
}

// Lookup implements Directory: a DN under BaseDN is read directly, anything
// else is searched with UserFilter (and the mail attributes when it holds an
// '@').
func (d *LDAP) Lookup(ctx context.Context, login string) (*User, error) {
	login = strings.TrimSpace(login)
	if login == "" {
		return nil, ErrNoSuchUser
	}
	attrs := append([]string{d.opts.NameAttribute, d.opts.GroupAttribute, d.opts.PasswordChangedAttribute}, d.opts.MailAttributes...)
	var req *ldap.SearchRequest
	if dn, err := ldap.ParseDN(login); err == nil && strings.Contains(login, "=") {
		if !d.base.AncestorOfFold(dn) {
			return nil, ErrNoSuchUser
		}
		req = ldap.NewSearchRequest(login, ldap.ScopeBaseObject, ldap.NeverDerefAliases, 2, d.timeLimit(),
			false, "(objectClass=*)", attrs, nil)
	} else {
		esc := ldap.EscapeFilter(login)
		filter := strings.ReplaceAll(d.opts.UserFilter, "%s", esc)
		if strings.Contains(login, "@") && len(d.opts.MailAttributes) > 0 {
			var b strings.Builder
			b.WriteString("(|" + filter)
			for _, a := range d.opts.MailAttributes {
				b.WriteString("(" + a + "=" + esc + ")")
			}
			b.WriteString(")")
			filter = b.String()
		}
		req = ldap.NewSearchRequest(d.opts.BaseDN, ldap.ScopeWholeSubtree, ldap.NeverDerefAliases, 2, d.timeLimit(),
			false, filter, attrs, nil)
	}
	res, err := d.search(ctx, req)
	if err != nil {
		return nil, err
	}
	if len(res.Entries) != 1 {
		// None, or ambiguous: never guess which account a login means.
		return nil, ErrNoSuchUser
	}
	e := res.Entries[0]
	u := &User{DN: e.DN, Name: strings.ToLower(e.GetEqualFoldAttributeValue(d.opts.NameAttribute))}
	if u.Name == "" {
		return nil, ErrNoSuchUser
	}
	for _, a := range d.opts.MailAttributes {
		u.Addresses = append(u.Addresses, e.GetEqualFoldAttributeValues(a)...)
	}
	u.Groups = e.GetEqualFoldAttributeValues(d.opts.GroupAttribute)
	u.Admin = d.isAdmin(u.Groups)
	u.PasswordChanged = parsePasswordChanged(e.GetEqualFoldAttributeValue(d.opts.PasswordChangedAttribute))

	dis := ldap.NewSearchRequest(e.DN, ldap.ScopeBaseObject, ldap.NeverDerefAliases, 1, d.timeLimit(),
		false, "(&(objectClass=*)"+d.opts.DisabledFilter+")", []string{"1.1"}, nil)
	dres, err := d.search(ctx, dis)
	if err != nil {
		return nil, err // ErrNoSuchUser when deleted in between
	}
	u.Disabled = len(dres.Entries) > 0
	return u, nil
}

func (d *LDAP) timeLimit() int { return int((d.opts.Timeout + time.Second - 1) / time.Second) }

func (d *LDAP) isAdmin(groups []string) bool {
	for _, g := range groups {
		gdn, err := ldap.ParseDN(g)
		if err != nil {
			continue
		}
		for _, a := range d.admins {
			if a.EqualFold(gdn) {
				return true
			}
		}
	}
	return false
}

// parsePasswordChanged reads a generalized time (pwdChangedTime) or an AD
// FILETIME (pwdLastSet: 100 ns ticks since 1601; 0 means "must change").
func parsePasswordChanged(v string) time.Time {
	if v == "" {
		return time.Time{}
	}
	if n, err := strconv.ParseInt(v, 10, 64); err == nil && len(v) > 14 {
		if n <= 0 {
			return time.Time{}
		}
		const epochDiff = 116444736000000000 // 1601-01-01 to 1970-01-01 in 100 ns
		return time.Unix(0, (n-epochDiff)*100).UTC()
	}
	t, err := ber.ParseGeneralizedTime([]byte(v))
	if err != nil {
		return time.Time{}
	}
	return t.UTC()
}

// search runs req over the service connection, reconnecting once when the
// connection turns out dead.
func (d *LDAP) search(ctx context.Context, req *ldap.SearchRequest) (*ldap.SearchResult, error) {
	for attempt := 0; ; attempt++ {
		c, err := d.serviceConn(ctx)
		if err != nil {
			return nil, err
		}
		res, err := c.Search(req)
		switch {
		case err == nil:
			return res, nil
		case ldap.IsErrorWithCode(err, ldap.LDAPResultNoSuchObject):
			return nil, ErrNoSuchUser
		case ldap.IsErrorAnyOf(err, ldap.ErrorNetwork, ldap.LDAPResultBusy, ldap.LDAPResultUnavailable) || c.IsClosing():
			d.drop(c)
			if attempt == 0 && ctx.Err() == nil {
				continue
			}
		}
		return nil, fmt.Errorf("%w: ldap search: %w", ErrUnavailable, err)
	}
}

func (d *LDAP) drop(c *ldap.Conn) {
	d.mu.Lock()
	if d.conn == c {
		d.conn = nil
	}
	d.mu.Unlock()
	c.Close()
}

// serviceConn returns the bound service connection, dialing it if needed.
func (d *LDAP) serviceConn(ctx context.Context) (*ldap.Conn, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.conn != nil && !d.conn.IsClosing() {
		return d.conn, nil
	}
	c, err := d.dial(ctx)
	if err != nil {
		return nil, err
	}
	if err := c.Bind(d.opts.Upstream.MasterUser, d.opts.Upstream.MasterPassword); err != nil {
		c.Close()
		return nil, fmt.Errorf("%w: ldap: service bind as %s: %w", ErrUnavailable, d.opts.Upstream.MasterUser, err)
	}
	d.conn = c
	return c, nil
}

// dial opens a new client connection (TLS as configured), not bound.
func (d *LDAP) dial(ctx context.Context) (*ldap.Conn, error) {
	up := d.opts.Upstream
	nc, err := up.Dial(ctx)
	if err != nil {
		return nil, fmt.Errorf("%w: ldap: %w", ErrUnavailable, err)
	}
	c := ldap.NewConn(nc, up.Mode == upstream.ModeImplicit)
	c.Start()
	c.SetTimeout(d.opts.Timeout)
	if up.Mode == upstream.ModeSTARTTLS {
		if err := c.StartTLS(up.TLSClientConfig()); err != nil {
			c.Close()
			return nil, fmt.Errorf("%w: ldap: starttls: %w", ErrUnavailable, err)
		}
	}
	return c, nil
}

// CheckPassword implements Directory: a simple bind as the user's DN on a
// fresh connection, never the service one.
func (d *LDAP) CheckPassword(ctx context.Context, u *User, password string) error {
	if u == nil || u.DN == "" || password == "" {
		// An empty password would be an unauthenticated bind (RFC 4513
		// §5.1.2), which succeeds without proving anything.
		return ErrBadPassword
	}
	c, err := d.dial(ctx)
	if err != nil {
		return err
	}
	defer c.Close()
	err = c.Bind(u.DN, password)
	switch {
	case err == nil:
		return nil
	case ldap.IsErrorAnyOf(err, ldap.LDAPResultInvalidCredentials, ldap.LDAPResultUnwillingToPerform):
		return ErrBadPassword
	}
	return fmt.Errorf("%w: ldap: bind as user: %w", ErrUnavailable, err)
}

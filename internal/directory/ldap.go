package directory

import (
	"context"
	"errors"
	"fmt"
	"slices"
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

	eq equalizer
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
	d := &LDAP{opts: opts, base: base, eq: equalizer{max: min(opts.Timeout, 50*time.Millisecond)}}
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

// Lookup implements Directory (the login rule is in directory.go and
// docs/identity.md). A name or an address costs the same directory work
// whether or not the user exists: the user search and the disabled search
// run together, both with the same filter (issue #13.9). A DN must lie under
// BaseDN and is accepted only when the canonical name it holds resolves to
// that same entry.
func (d *LDAP) Lookup(ctx context.Context, login string) (*User, error) {
	login = strings.TrimSpace(login)
	if !ValidLogin(login) {
		return nil, ErrNoSuchUser
	}
	if DNShaped(login) {
		return d.lookupDN(ctx, login)
	}
	return d.lookupName(ctx, login)
}

// lookupName resolves a canonical name or an address with two concurrent
// searches under BaseDN: the user search, and the same search narrowed by
// DisabledFilter (which tells whether the found entry is disabled).
func (d *LDAP) lookupName(ctx context.Context, login string) (*User, error) {
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
	attrs := append([]string{d.opts.NameAttribute, d.opts.GroupAttribute, d.opts.PasswordChangedAttribute}, d.opts.MailAttributes...)
	// Three entries are enough to pick a canonical name out of address
	// matches, or to see that a login is ambiguous.
	req := ldap.NewSearchRequest(d.opts.BaseDN, ldap.ScopeWholeSubtree, ldap.NeverDerefAliases, 3, d.timeLimit(),
		false, filter, attrs, nil)
	dis := ldap.NewSearchRequest(d.opts.BaseDN, ldap.ScopeWholeSubtree, ldap.NeverDerefAliases, 3, d.timeLimit(),
		false, "(&"+filter+d.opts.DisabledFilter+")", []string{"1.1"}, nil)
	var (
		start = time.Now()
		dres  *ldap.SearchResult
		derr  error
		wg    sync.WaitGroup
	)
	wg.Add(1)
	go func() {
		defer wg.Done()
		dres, derr = d.search(ctx, dis)
	}()
	res, err := d.search(ctx, req)
	wg.Wait()
	if err == nil {
		err = derr
	}
	var e *ldap.Entry
	if err == nil {
		e = d.pick(res.Entries, login)
	}
	switch {
	case err != nil && !errors.Is(err, ErrNoSuchUser):
		return nil, err // unavailable: nothing to hide
	case e == nil:
		// None, or ambiguous: never guess which account a login means.
		d.eq.hold(start, false)
		return nil, ErrNoSuchUser
	}
	d.eq.hold(start, true)
	u := d.userOf(e)
	for _, x := range dres.Entries {
		if strings.EqualFold(x.DN, e.DN) {
			u.Disabled = true
		}
	}
	return u, nil
}

// pick chooses the entry a login means among the search results: the one
// whose canonical name it is, else the one whose address it is; nil when
// there is no such single entry.
func (d *LDAP) pick(entries []*ldap.Entry, login string) *ldap.Entry {
	var byName, byAddr []*ldap.Entry
	for _, e := range entries {
		name := e.GetEqualFoldAttributeValue(d.opts.NameAttribute)
		if !ValidLogin(name) || DNShaped(name) {
			continue // no usable canonical name: not a user Legate serves
		}
		if strings.EqualFold(name, login) {
			byName = append(byName, e)
			continue
		}
		for _, a := range d.opts.MailAttributes {
			if slices.ContainsFunc(e.GetEqualFoldAttributeValues(a), func(v string) bool { return strings.EqualFold(v, login) }) {
				byAddr = append(byAddr, e)
				break
			}
		}
	}
	switch {
	case len(byName) == 1:
		return byName[0]
	case len(byName) == 0 && len(byAddr) == 1 && strings.Contains(login, "@"):
		return byAddr[0]
	}
	return nil
}

func (d *LDAP) userOf(e *ldap.Entry) *User {
	u := &User{DN: e.DN, Name: strings.ToLower(e.GetEqualFoldAttributeValue(d.opts.NameAttribute))}
	for _, a := range d.opts.MailAttributes {
		u.Addresses = append(u.Addresses, e.GetEqualFoldAttributeValues(a)...)
	}
	u.Groups = e.GetEqualFoldAttributeValues(d.opts.GroupAttribute)
	u.Admin = d.isAdmin(u.Groups)
	u.PasswordChanged = parsePasswordChanged(e.GetEqualFoldAttributeValue(d.opts.PasswordChangedAttribute))
	return u
}

// lookupDN resolves an LDAP bind name. When its first RDN is the name
// attribute (uid=alice,ou=people,...) that value is looked up as a name;
// otherwise (e.g. Active Directory's CN=Alice Smith,...) the entry's
// canonical name is read first. Either way the name must resolve to this
// very entry, so a DN never reaches a user another login would not.
func (d *LDAP) lookupDN(ctx context.Context, login string) (*User, error) {
	dn, err := ldap.ParseDN(login)
	if err != nil || len(dn.RDNs) == 0 || len(dn.RDNs[0].Attributes) != 1 || !d.base.AncestorOfFold(dn) {
		return nil, ErrNoSuchUser
	}
	rdn := dn.RDNs[0].Attributes[0]
	name := rdn.Value
	if !strings.EqualFold(rdn.Type, d.opts.NameAttribute) {
		req := ldap.NewSearchRequest(login, ldap.ScopeBaseObject, ldap.NeverDerefAliases, 1, d.timeLimit(),
			false, "(objectClass=*)", []string{d.opts.NameAttribute}, nil)
		res, err := d.search(ctx, req)
		switch {
		case errors.Is(err, ErrNoSuchUser):
			// Look the RDN value up anyway: an unknown DN costs what a
			// known one does.
		case err != nil:
			return nil, err
		case len(res.Entries) == 1:
			name = res.Entries[0].GetEqualFoldAttributeValue(d.opts.NameAttribute)
		}
	}
	if !ValidLogin(name) {
		return nil, ErrNoSuchUser
	}
	u, err := d.lookupName(ctx, name)
	if err != nil {
		return nil, err
	}
	if got, err := ldap.ParseDN(u.DN); err != nil || !got.EqualFold(dn) {
		return nil, ErrNoSuchUser
	}
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
		case ldap.IsErrorAnyOf(err, ldap.LDAPResultNoSuchObject, ldap.LDAPResultSizeLimitExceeded):
			// Size limit: more entries than any single login may mean.
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

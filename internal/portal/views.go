package portal

import (
	"errors"
	"fmt"
	"net/http"
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/legate-proxy/legate/internal/config"
	"github.com/legate-proxy/legate/internal/control"
)

// row is one app password as the list shows it.
type row struct {
	ID, Name             string
	Created, CreatedFull string
	Used                 bool
	LastUsed, LastFull   string
	LastIP, LastProtocol string
	LastClient           string
	Scope, Networks      string
	Expires              string
	Status, StatusText   string
}

var statusText = map[string]string{
	"active":           "Active",
	"expired":          "Expired",
	"unused-expired":   "Expired (unused)",
	"password-changed": "Invalid (password changed)",
}

func makeRow(l control.Listed, now time.Time) row {
	r := row{ID: l.ID, Name: l.Name, Created: day(l.Created), CreatedFull: stamp(l.Created),
		Scope: "All protocols", Networks: "Anywhere", Expires: "Never", Status: l.Status, StatusText: statusText[l.Status]}
	if r.StatusText == "" {
		r.StatusText = l.Status
	}
	if len(l.Scope) > 0 {
		up := make([]string, len(l.Scope))
		for i, s := range l.Scope {
			up[i] = strings.ToUpper(s)
		}
		r.Scope = strings.Join(up, ", ")
	}
	if len(l.Networks) > 0 {
		ns := make([]string, len(l.Networks))
		for i, n := range l.Networks {
			ns[i] = n.String()
		}
		r.Networks = strings.Join(ns, ", ")
	}
	if !l.Expires.IsZero() {
		r.Expires = day(l.Expires)
	}
	if lu := l.LastUse; !lu.Time.IsZero() {
		r.Used, r.LastUsed, r.LastFull = true, ago(now, lu.Time), stamp(lu.Time)
		r.LastProtocol, r.LastClient = strings.ToUpper(lu.Protocol), lu.Client
		if lu.IP.IsValid() {
			r.LastIP = lu.IP.String()
		}
	}
	return r
}

// createForm is the create form as sent (re-shown on error).
type createForm struct {
	Name     string
	Scope    map[string]bool
	Expires  string
	Networks string
}

// expiries are the choices of the form.
var expiries = map[string]time.Duration{
	"never": 0, "30d": 30 * 24 * time.Hour, "90d": 90 * 24 * time.Hour,
	"180d": 180 * 24 * time.Hour, "365d": 365 * 24 * time.Hour,
}

var errForm = errors.New("form")

func readCreateForm(r *http.Request) createForm {
	f := createForm{Name: strings.TrimSpace(r.PostFormValue("name")), Scope: map[string]bool{},
		Expires: r.PostFormValue("expires"), Networks: strings.TrimSpace(r.PostFormValue("networks"))}
	for _, s := range r.PostForm["scope"] {
		f.Scope[s] = true
	}
	return f
}

// args checks the form and turns it into CreateArgs (without user and via).
func (f createForm) args() (control.CreateArgs, error) {
	a := control.CreateArgs{Name: f.Name}
	for _, p := range []string{"imap", "smtp", "ldap"} {
		if f.Scope[p] {
			a.Scope = append(a.Scope, p)
		}
	}
	for s := range f.Scope {
		if !slices.Contains([]string{"imap", "smtp", "ldap"}, s) {
			return a, fmt.Errorf("%w: unknown protocol %q", errForm, s)
		}
	}
	if len(a.Scope) == 3 {
		a.Scope = nil // all protocols
	}
	d, ok := expiries[f.Expires]
	if !ok && f.Expires != "" {
		return a, fmt.Errorf("%w: choose an expiry from the list", errForm)
	}
	a.ExpiresIn = d
	fields := strings.FieldsFunc(f.Networks, func(r rune) bool { return r == ',' || r == ' ' || r == '\n' || r == '\r' || r == '\t' })
	if len(fields) > 32 {
		return a, fmt.Errorf("%w: at most 32 networks", errForm)
	}
	for _, s := range fields {
		n, err := parseNetwork(s)
		if err != nil {
			return a, err
		}
		a.Networks = append(a.Networks, n)
	}
	return a, nil
}

// parseNetwork reads a CIDR (host bits zero) or a single address.
func parseNetwork(s string) (netip.Prefix, error) {
	if strings.Contains(s, "/") {
		n, err := netip.ParsePrefix(s)
		if err != nil {
			return netip.Prefix{}, fmt.Errorf("%w: %q is not a network (want e.g. 192.0.2.0/24 or 2001:db8::/48)", errForm, s)
		}
		if n.Masked() != n {
			return netip.Prefix{}, fmt.Errorf("%w: %q has host bits set; did you mean %s?", errForm, s, n.Masked())
		}
		return n, nil
	}
	a, err := netip.ParseAddr(s)
	if err != nil {
		return netip.Prefix{}, fmt.Errorf("%w: %q is not an IP address or network", errForm, s)
	}
	return netip.PrefixFrom(a.Unmap(), a.Unmap().BitLen()), nil
}

// settingRow is how to set up one protocol in a mail or address-book client.
type settingRow struct {
	Protocol, Host, Port, Security string
}

var securityText = map[string]string{"tls": "SSL/TLS", "starttls": "STARTTLS", "none": "None"}

// clientRows lists portal.client_settings for the protocols in scope
// (empty: all), skipping those without a host.
func clientRows(cs config.ClientSettings, scope []string) []settingRow {
	var out []settingRow
	for _, c := range []struct {
		proto, label string
		s            config.ClientSetting
	}{
		{"imap", "IMAP (incoming mail)", cs.IMAP},
		{"smtp", "SMTP (outgoing mail)", cs.SMTP},
		{"ldap", "LDAP (address book)", cs.LDAP},
	} {
		if c.s.Host == "" || (len(scope) > 0 && !slices.Contains(scope, c.proto)) {
			continue
		}
		sec := securityText[c.s.Security]
		if sec == "" {
			sec = c.s.Security
		}
		port := ""
		if c.s.Port > 0 {
			port = strconv.Itoa(c.s.Port)
		}
		out = append(out, settingRow{Protocol: c.label, Host: c.s.Host, Port: port, Security: sec})
	}
	return out
}

// Checked says whether a protocol box is ticked (all of them on a new form).
func (f createForm) Checked(proto string) bool { return f.Scope == nil || f.Scope[proto] }

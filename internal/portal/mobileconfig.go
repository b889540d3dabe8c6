package portal

import (
	"bytes"
	"crypto/rand"
	"crypto/x509"
	"encoding/xml"
	"fmt"
	"slices"
	"strings"

	"github.com/smallstep/pkcs7"

	"github.com/legate-proxy/legate/internal/config"
)

// profileData is what an Apple configuration profile is made of.
type profileData struct {
	User, Email, Secret string
	Name, ID            string // the app password's name and id
	Org                 string // the portal's host name (identifiers, organisation)
	IMAP, SMTP          config.ClientSetting
}

// plist is a property list being written (Apple's XML plist DTD 1.0);
// every string goes through xml.EscapeText.
type plist struct{ b bytes.Buffer }

func (p *plist) key(k string)  { p.b.WriteString("<key>"); p.text(k); p.b.WriteString("</key>") }
func (p *plist) text(s string) { xml.EscapeText(&p.b, []byte(s)) }
func (p *plist) str(k, v string) {
	p.key(k)
	p.b.WriteString("<string>")
	p.text(v)
	p.b.WriteString("</string>\n")
}
func (p *plist) int(k string, v int) { p.key(k); fmt.Fprintf(&p.b, "<integer>%d</integer>\n", v) }
func (p *plist) bool(k string, v bool) {
	p.key(k)
	if v {
		p.b.WriteString("<true/>\n")
	} else {
		p.b.WriteString("<false/>\n")
	}
}

// newUUID is a random (version 4) UUID.
func newUUID() string {
	var u [16]byte
	rand.Read(u[:])
	u[6] = u[6]&0x0f | 0x40
	u[8] = u[8]&0x3f | 0x80
	return fmt.Sprintf("%x-%x-%x-%x-%x", u[0:4], u[4:6], u[6:8], u[8:10], u[10:])
}

// profilePlist is the unsigned profile: one com.apple.mail.managed payload
// (IMAP and SMTP with the app password; SSL on unless security is none).
func profilePlist(d profileData) []byte {
	var p plist
	p.b.WriteString(`<?xml version="1.0" encoding="UTF-8"?>
<!DOCTYPE plist PUBLIC "-//Apple//DTD PLIST 1.0//EN" "http://www.apple.com/DTDs/PropertyList-1.0.dtd">
<plist version="1.0">
<dict>
<key>PayloadContent</key>
<array>
<dict>
`)
	desc := d.Name + " (" + d.Org + ")"
	p.str("EmailAccountDescription", desc)
	p.str("EmailAccountName", d.User)
	p.str("EmailAccountType", "EmailTypeIMAP")
	if d.Email != "" {
		p.str("EmailAddress", d.Email)
	}
	p.str("IncomingMailServerAuthentication", "EmailAuthPassword")
	p.str("IncomingMailServerHostName", d.IMAP.Host)
	p.int("IncomingMailServerPortNumber", portOr(d.IMAP, 993, 143))
	p.bool("IncomingMailServerUseSSL", d.IMAP.Security != "none")
	p.str("IncomingMailServerUsername", d.User)
	p.str("IncomingPassword", d.Secret)
	p.str("OutgoingMailServerAuthentication", "EmailAuthPassword")
	p.str("OutgoingMailServerHostName", d.SMTP.Host)
	p.int("OutgoingMailServerPortNumber", portOr(d.SMTP, 465, 587))
	p.bool("OutgoingMailServerUseSSL", d.SMTP.Security != "none")
	p.str("OutgoingMailServerUsername", d.User)
	p.str("OutgoingPassword", d.Secret)
	p.bool("OutgoingPasswordSameAsIncomingPassword", true)
	p.str("PayloadDescription", "Mail account with an app password from "+d.Org)
	p.str("PayloadDisplayName", desc)
	p.str("PayloadIdentifier", reverseDNS(d.Org)+".legate.mail."+d.ID)
	p.str("PayloadType", "com.apple.mail.managed")
	p.str("PayloadUUID", newUUID())
	p.int("PayloadVersion", 1)
	p.bool("PreventMove", false)
	p.b.WriteString("</dict>\n</array>\n")
	p.str("PayloadDescription", "Sets up mail with the app password “"+d.Name+"”.")
	p.str("PayloadDisplayName", "Mail: "+d.Name)
	p.str("PayloadIdentifier", reverseDNS(d.Org)+".legate."+d.ID)
	p.str("PayloadOrganization", d.Org)
	p.bool("PayloadRemovalDisallowed", false)
	p.str("PayloadType", "Configuration")
	p.str("PayloadUUID", newUUID())
	p.int("PayloadVersion", 1)
	p.b.WriteString("</dict>\n</plist>\n")
	return p.b.Bytes()
}

// portOr is the configured port, else the usual one for implicit TLS or
// the other modes.
func portOr(c config.ClientSetting, implicit, other int) int {
	switch {
	case c.Port > 0:
		return c.Port
	case c.Security == "tls":
		return implicit
	}
	return other
}

// reverseDNS turns mail.example.com into com.example.mail.
func reverseDNS(host string) string {
	parts := strings.Split(host, ".")
	slices.Reverse(parts)
	return strings.Join(parts, ".")
}

// mobileconfig builds the profile, signed (CMS SignedData, SHA-256, the
// certificate chain included) with the portal's certificate when there is
// one; signed says which.
func (p *Portal) mobileconfig(d profileData) (body []byte, signed bool, err error) {
	plain := profilePlist(d)
	if p.cert == nil {
		return plain, false, nil
	}
	c := p.cert()
	if c == nil || len(c.Certificate) == 0 || c.PrivateKey == nil {
		return plain, false, nil
	}
	var chain []*x509.Certificate
	for _, der := range c.Certificate {
		x, err := x509.ParseCertificate(der)
		if err != nil {
			return nil, false, fmt.Errorf("portal: profile signing certificate: %w", err)
		}
		chain = append(chain, x)
	}
	sd, err := pkcs7.NewSignedData(plain)
	if err != nil {
		return nil, false, fmt.Errorf("portal: sign profile: %w", err)
	}
	sd.SetDigestAlgorithm(pkcs7.OIDDigestAlgorithmSHA256)
	if err := sd.AddSignerChain(chain[0], c.PrivateKey, chain[1:], pkcs7.SignerInfoConfig{}); err != nil {
		return nil, false, fmt.Errorf("portal: sign profile: %w", err)
	}
	out, err := sd.Finish()
	if err != nil {
		return nil, false, fmt.Errorf("portal: sign profile: %w", err)
	}
	return out, true, nil
}

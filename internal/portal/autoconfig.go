package portal

import (
	"bytes"
	"encoding/xml"
	"io"
	"net/http"
	"net/mail"
	"strings"

	"github.com/legate-proxy/legate/internal/config"
)

// Mail clients that set themselves up: Thunderbird's autoconfig
// (clientConfig 1.1, GET /.well-known/autoconfig/mail/config-v1.1.xml and
// /mail/config-v1.1.xml) and Outlook's POX Autodiscover (POST
// /autodiscover/autodiscover.xml, the 2006 schemas). Both answer from
// portal.client_settings with hosts, ports and security only — never a
// secret — and need no session.

type acServer struct {
	Type           string `xml:"type,attr"`
	Hostname       string `xml:"hostname"`
	Port           int    `xml:"port"`
	SocketType     string `xml:"socketType"`
	Authentication string `xml:"authentication"`
	Username       string `xml:"username"`
}

type acConfig struct {
	XMLName  xml.Name `xml:"clientConfig"`
	Version  string   `xml:"version,attr"`
	Provider struct {
		ID          string     `xml:"id,attr"`
		Domain      string     `xml:"domain"`
		DisplayName string     `xml:"displayName"`
		Incoming    []acServer `xml:"incomingServer"`
		Outgoing    []acServer `xml:"outgoingServer"`
	} `xml:"emailProvider"`
}

var socketType = map[string]string{"tls": "SSL", "starttls": "STARTTLS", "none": "plain"}

// mailDomain is the domain of an address given by the client (checked),
// else the portal's host name.
func (p *Portal) mailDomain(addr string) string {
	if a, err := mail.ParseAddress(addr); err == nil && a.Name == "" {
		if _, d, ok := strings.Cut(a.Address, "@"); ok && d != "" && len(d) <= 253 {
			return strings.ToLower(d)
		}
	}
	return p.external.Hostname()
}

// autoconfig answers Thunderbird's autoconfig request. The user name is
// the address the user typed (%EMAILADDRESS%): Legate's directory accepts
// a user's addresses as login names.
func (p *Portal) autoconfig(w http.ResponseWriter, r *http.Request) {
	cs := p.settingsOf(r).cfg.ClientSettings
	if cs.IMAP.Host == "" && cs.SMTP.Host == "" {
		http.NotFound(w, r)
		return
	}
	var c acConfig
	c.Version = "1.1"
	d := p.mailDomain(r.URL.Query().Get("emailaddress"))
	c.Provider.ID, c.Provider.Domain, c.Provider.DisplayName = d, d, d
	if cs.IMAP.Host != "" {
		c.Provider.Incoming = append(c.Provider.Incoming, acServerOf("imap", cs.IMAP, 993, 143))
	}
	if cs.SMTP.Host != "" {
		c.Provider.Outgoing = append(c.Provider.Outgoing, acServerOf("smtp", cs.SMTP, 465, 587))
	}
	writeXML(w, "application/xml", c)
}

func acServerOf(typ string, s config.ClientSetting, implicit, other int) acServer {
	return acServer{Type: typ, Hostname: s.Host, Port: portOr(s, implicit, other), SocketType: socketTypeOf(s),
		Authentication: "password-cleartext", Username: "%EMAILADDRESS%"}
}

func socketTypeOf(s config.ClientSetting) string {
	if t := socketType[s.Security]; t != "" {
		return t
	}
	return "SSL"
}

// adRequest is the POX request: the address is all it carries.
type adRequest struct {
	XMLName xml.Name `xml:"Autodiscover"`
	Request struct {
		EMailAddress             string `xml:"EMailAddress"`
		AcceptableResponseSchema string `xml:"AcceptableResponseSchema"`
	} `xml:"Request"`
}

const (
	adResponseNS = "http://schemas.microsoft.com/exchange/autodiscover/responseschema/2006"
	adOutlookNS  = "http://schemas.microsoft.com/exchange/autodiscover/outlook/responseschema/2006a"
)

type adProtocol struct {
	Type         string `xml:"Type"`
	Server       string `xml:"Server"`
	Port         int    `xml:"Port"`
	DomainReq    string `xml:"DomainRequired"`
	LoginName    string `xml:"LoginName,omitempty"`
	SPA          string `xml:"SPA"`
	SSL          string `xml:"SSL"`
	Encryption   string `xml:"Encryption"`
	AuthRequired string `xml:"AuthRequired"`
}

type adResponse struct {
	XMLName  xml.Name `xml:"Autodiscover"`
	XMLNS    string   `xml:"xmlns,attr"`
	Response struct {
		XMLNS   string `xml:"xmlns,attr"`
		Account struct {
			AccountType string       `xml:"AccountType"`
			Action      string       `xml:"Action"`
			Protocol    []adProtocol `xml:"Protocol"`
		} `xml:"Account"`
	} `xml:"Response"`
}

// autodiscover answers Outlook's POX Autodiscover with the IMAP and SMTP
// settings; LoginName is the address in the request (a valid one only).
func (p *Portal) autodiscover(w http.ResponseWriter, r *http.Request) {
	cs := p.settingsOf(r).cfg.ClientSettings
	body, err := io.ReadAll(io.LimitReader(r.Body, 16<<10))
	var req adRequest
	if err == nil {
		err = xml.NewDecoder(bytes.NewReader(body)).Decode(&req)
	}
	if err != nil {
		http.Error(w, "bad request", http.StatusBadRequest)
		return
	}
	if cs.IMAP.Host == "" && cs.SMTP.Host == "" {
		http.NotFound(w, r)
		return
	}
	login := ""
	if a, err := mail.ParseAddress(req.Request.EMailAddress); err == nil && a.Name == "" && len(a.Address) <= 254 {
		login = a.Address
	}
	var res adResponse
	res.XMLNS, res.Response.XMLNS = adResponseNS, adOutlookNS
	res.Response.Account.AccountType, res.Response.Account.Action = "email", "settings"
	for _, x := range []struct {
		typ                string
		s                  config.ClientSetting
		implicit, default_ int
	}{{"IMAP", cs.IMAP, 993, 143}, {"SMTP", cs.SMTP, 465, 587}} {
		if x.s.Host == "" {
			continue
		}
		enc, ssl := "SSL", "on"
		switch x.s.Security {
		case "starttls":
			enc = "TLS"
		case "none":
			enc, ssl = "None", "off"
		}
		res.Response.Account.Protocol = append(res.Response.Account.Protocol, adProtocol{Type: x.typ, Server: x.s.Host,
			Port: portOr(x.s, x.implicit, x.default_), DomainReq: "off", LoginName: login, SPA: "off", SSL: ssl,
			Encryption: enc, AuthRequired: "on"})
	}
	writeXML(w, "text/xml", res)
}

func writeXML(w http.ResponseWriter, ctype string, v any) {
	out, err := xml.MarshalIndent(v, "", "  ")
	if err != nil {
		http.Error(w, "internal error", http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", ctype+"; charset=utf-8")
	io.WriteString(w, xml.Header)
	w.Write(out)
	io.WriteString(w, "\n")
}

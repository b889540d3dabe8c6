package config

import (
	"fmt"
	"net/url"
	"strings"
)

// Upstream authentication methods (upstream.imap.auth, upstream.smtp.auth).
const (
	AuthMaster = "master" // master_user + master_password_file
	AuthOAuth2 = "oauth2" // an OAuth 2.0 token per user (XOAUTH2 / OAUTHBEARER)
)

// OAuth 2.0 providers with presets.
const (
	ProviderMicrosoft365 = "microsoft365"
	ProviderGoogle       = "google"
	ProviderGeneric      = "generic"
)

// OAuth2 is upstream.imap.oauth2 / upstream.smtp.oauth2: how Legate gets the
// token it logs in upstream with when auth is oauth2.
type OAuth2 struct {
	// Provider fills the other keys with the provider's values:
	// microsoft365, google or generic (default: every value explicit).
	Provider string `yaml:"provider"`
	// Tenant is the Microsoft Entra tenant id or domain (microsoft365).
	Tenant string `yaml:"tenant"`
	// Mechanism is the SASL mechanism: xoauth2 (default) or oauthbearer.
	Mechanism string `yaml:"mechanism"`
	// Grant is client_credentials (app-only) or jwt_bearer (a token per
	// user, sub = the user).
	Grant    string `yaml:"grant"`
	TokenURL string `yaml:"token_url"`
	ClientID string `yaml:"client_id"`
	// ClientSecretFile holds the client secret (client_credentials), or
	// PrivateKeyFile and CertificateFile sign a client assertion (x5t).
	ClientSecretFile string `yaml:"client_secret_file"`
	PrivateKeyFile   string `yaml:"private_key_file"`
	CertificateFile  string `yaml:"certificate_file"`
	// ServiceAccountFile is a Google service-account key JSON (jwt_bearer).
	ServiceAccountFile string `yaml:"service_account_file"`
	// Scope is space separated.
	Scope string `yaml:"scope"`
	// Audience is the aud of the assertions Legate signs; empty means the
	// token URL (what Microsoft and Google expect).
	Audience string `yaml:"audience"`
	// MailboxAttribute says which directory value names the user's
	// mailbox upstream: mail (default: the first address) or name (the
	// login name).
	MailboxAttribute string `yaml:"mailbox_attribute"`
}

// Mailbox attributes.
const (
	MailboxMail = "mail"
	MailboxName = "name"
)

// Grants and mechanisms.
const (
	GrantClientCredentials = "client_credentials"
	GrantJWTBearer         = "jwt_bearer"
	MechXOAUTH2            = "xoauth2"
	MechOAUTHBEARER        = "oauthbearer"
)

// preset is what a provider fills in for one upstream.
type preset struct {
	tokenURL, scope, grant string
	imap, smtp             string // address
	imapTLS, smtpTLS       string
}

func providerPreset(provider, tenant string) (preset, bool) {
	switch provider {
	case ProviderMicrosoft365:
		// App-only access: a service principal granted per mailbox with
		// Add-MailboxPermission; the .default scope carries the
		// IMAP.AccessAsApp / SMTP.SendAsApp application permissions.
		return preset{
			tokenURL: "https://login.microsoftonline.com/" + url.PathEscape(tenant) + "/oauth2/v2.0/token",
			scope:    "https://outlook.office365.com/.default",
			grant:    GrantClientCredentials,
			imap:     "outlook.office365.com:993", imapTLS: TLSImplicit,
			smtp: "smtp.office365.com:587", smtpTLS: TLSStartTLS,
		}, true
	case ProviderGoogle:
		// Domain-wide delegation: the service account signs an assertion
		// whose sub is the user; https://mail.google.com/ is the one
		// scope Gmail's IMAP and SMTP accept.
		return preset{
			tokenURL: "https://oauth2.googleapis.com/token",
			scope:    "https://mail.google.com/",
			grant:    GrantJWTBearer,
			imap:     "imap.gmail.com:993", imapTLS: TLSImplicit,
			smtp: "smtp.gmail.com:587", smtpTLS: TLSStartTLS,
		}, true
	}
	return preset{}, false
}

// deriveOAuth2 applies the provider presets to upstream key (imap or smtp)
// for every value the file did not set.
func (c *Config) deriveOAuth2(key string, u *UpstreamMail) {
	if u.Auth != AuthOAuth2 {
		return
	}
	o := &u.OAuth2
	if o.Provider == "" {
		o.Provider = ProviderGeneric
	}
	if !c.set(key + ".oauth2.mechanism") {
		o.Mechanism = MechXOAUTH2
	}
	if !c.set(key + ".oauth2.mailbox_attribute") {
		o.MailboxAttribute = MailboxMail
	}
	p, ok := providerPreset(o.Provider, o.Tenant)
	if !ok {
		return
	}
	fill := func(sub string, dst *string, v string) {
		if !c.set(key+"."+sub) && v != "" {
			*dst = v
		}
	}
	fill("oauth2.token_url", &o.TokenURL, p.tokenURL)
	fill("oauth2.scope", &o.Scope, p.scope)
	fill("oauth2.grant", &o.Grant, p.grant)
	if strings.HasSuffix(key, "imap") {
		fill("address", &u.Address, p.imap)
		fill("tls", &u.TLS, p.imapTLS)
	} else {
		fill("address", &u.Address, p.smtp)
		fill("tls", &u.TLS, p.smtpTLS)
	}
}

func (o *OAuth2) paths() []*string {
	return []*string{&o.ClientSecretFile, &o.PrivateKeyFile, &o.CertificateFile, &o.ServiceAccountFile}
}

// upstreamOAuth2 validates key.oauth2 when key.auth is oauth2.
func (v *validator) upstreamOAuth2(key string, u UpstreamMail) {
	k := key + ".oauth2"
	o := u.OAuth2
	v.oneOf(k+".provider", o.Provider, ProviderGeneric, ProviderMicrosoft365, ProviderGoogle)
	if o.Provider == ProviderMicrosoft365 {
		v.required(k+".tenant", o.Tenant, "(the Entra tenant id or domain) with provider: microsoft365")
	}
	v.oneOf(k+".mechanism", o.Mechanism, MechXOAUTH2, MechOAUTHBEARER)
	v.oneOf(k+".mailbox_attribute", o.MailboxAttribute, MailboxMail, MailboxName)
	v.required(k+".grant", o.Grant, "(client_credentials or jwt_bearer; provider presets fill it)")
	v.oneOf(k+".grant", o.Grant, GrantClientCredentials, GrantJWTBearer)
	v.required(k+".token_url", o.TokenURL, "(provider presets fill it)")
	if o.TokenURL != "" {
		if pu, err := url.Parse(o.TokenURL); err != nil || (pu.Scheme != "https" && pu.Scheme != "http") || pu.Host == "" {
			v.add(k+".token_url", "must be an https:// URL, got %q", o.TokenURL)
		} else if pu.Scheme == "http" && !loopbackHost(pu.Hostname()) {
			v.add(k+".token_url", "must be https (http only on loopback), got %q", o.TokenURL)
		}
	}
	switch o.Grant {
	case GrantClientCredentials:
		v.required(k+".client_id", o.ClientID, "(the app registration's id)")
		if (o.ClientSecretFile == "") == (o.PrivateKeyFile == "") {
			v.add(k+".client_secret_file", "set exactly one of client_secret_file and private_key_file")
		}
		if o.CertificateFile != "" && o.PrivateKeyFile == "" {
			v.add(k+".certificate_file", "needs private_key_file")
		}
		if o.ServiceAccountFile != "" {
			v.add(k+".service_account_file", "is for grant: jwt_bearer")
		}
	case GrantJWTBearer:
		v.required(k+".service_account_file", o.ServiceAccountFile, "(the service-account key JSON) with grant: jwt_bearer")
		if o.ClientSecretFile != "" || o.PrivateKeyFile != "" {
			v.add(k+".client_secret_file", "grant: jwt_bearer signs with service_account_file; remove client_secret_file/private_key_file")
		}
	}
	if u.MasterUser != "" || u.MasterPasswordFile != "" {
		v.add(key+".master_user", "auth: oauth2 logs in with a token; remove master_user and master_password_file")
	}
}

func loopbackHost(h string) bool {
	return h == "localhost" || strings.HasPrefix(h, "127.") || h == "::1"
}

// LoginDescription says how Legate logs in to this upstream as the user
// name (with addresses), for `legate explain`; it names no secret.
func (u UpstreamMail) LoginDescription(name string, addresses []string) string {
	if !u.Configured() {
		return "no upstream configured"
	}
	if u.Auth == AuthOAuth2 {
		o := u.OAuth2
		mailbox := name
		if o.MailboxAttribute != MailboxName && len(addresses) > 0 {
			mailbox = addresses[0]
		}
		who := "client " + o.ClientID
		if o.Grant == GrantJWTBearer {
			who = "service account in " + o.ServiceAccountFile + ", sub=" + mailbox
		} else if o.PrivateKeyFile != "" {
			who += " (certificate assertion)"
		}
		return fmt.Sprintf("%s as %s at %s, token from %s (%s, %s, scope %q)",
			strings.ToUpper(o.Mechanism), mailbox, u.Address, o.TokenURL, o.Grant, who, o.Scope)
	}
	if u.Login == LoginSeparator {
		return fmt.Sprintf("LOGIN %s%s%s at %s (master user)", name, u.Separator, u.MasterUser, u.Address)
	}
	return fmt.Sprintf("SASL PLAIN as %s for %s (authzid) at %s (master user)", u.MasterUser, name, u.Address)
}

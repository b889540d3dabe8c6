package config

import (
	"strings"
	"testing"
)

// TestUpstreamLoginDescription: explain names the upstream login (master
// user or token source) and never a secret.
func TestUpstreamLoginDescription(t *testing.T) {
	c := Default()
	c.Upstream.IMAP = UpstreamMail{Address: "mail.internal:993", TLS: TLSImplicit, MasterUser: "legate",
		MasterPasswordFile: "/etc/legate/imap.secret", Login: LoginAuthzid, Auth: AuthMaster}
	c.Upstream.SMTP = UpstreamMail{Address: "smtp.office365.com:587", TLS: TLSStartTLS, Auth: AuthOAuth2,
		OAuth2: OAuth2{Provider: ProviderMicrosoft365, Mechanism: MechXOAUTH2, Grant: GrantClientCredentials,
			TokenURL: "https://login.microsoftonline.com/t/oauth2/v2.0/token", ClientID: "app-1",
			ClientSecretFile: "/etc/legate/oauth.secret", Scope: "https://outlook.office365.com/.default", MailboxAttribute: MailboxMail}}
	for _, tc := range []struct{ proto, want string }{
		{"imap", "upstream.imap: SASL PLAIN as legate for alice (authzid) at mail.internal:993"},
		{"smtp", "upstream.smtp: XOAUTH2 as alice@example.com at smtp.office365.com:587, token from https://login.microsoftonline.com/t/oauth2/v2.0/token (client_credentials, client app-1"},
	} {
		got := c.UpstreamLogin(tc.proto, "alice", []string{"alice@example.com"})
		if !strings.HasPrefix(got, tc.want) {
			t.Errorf("%s: got %q, want prefix %q", tc.proto, got, tc.want)
		}
		if strings.Contains(got, "secret") {
			t.Errorf("%s: %q names a secret file", tc.proto, got)
		}
	}
}

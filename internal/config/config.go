// Package config loads, defaults and validates Legate's YAML configuration
// (docs/contract.md §8).
//
// The file is decoded strictly through yaml.Node: unknown keys, wrong types,
// bad durations, CIDRs and enums are reported with file:line and the key path,
// all of them at once, sorted by line (see Error and Errors). Validate then
// checks the combinations (a listener needs its upstream, implicit TLS needs
// tls.*, directory.type ldap needs base_dn and a user_filter with %s, ...).
//
// Conventions:
//   - Durations are Go syntax plus days ("90d", "1d12h"); sizes are bytes or
//     "64KiB", "50MB". CIDRs are IPv4 or IPv6; host bits must be zero; a bare
//     address means that one host.
//   - A key given as null (`key:` with no value) keeps its default.
//   - Relative paths (every *_file key, storage.path, listen.admin) resolve
//     against the directory of the configuration file. storage.path defaults
//     to "legate.db" beside the file; storage.key_file and
//     portal.session_key_file default to "hmac.key" and "portal.key" beside
//     storage.path.
//   - Secrets are never inline: there are only *_file keys, read with
//     ReadSecretFile.
//   - DNs in flow lists must be quoted: YAML reads [cn=a,dc=b] as two items,
//     which is reported as an error for DN-valued keys.
//   - Merge keys (<<) are refused; anchors and aliases work, with the total
//     work bounded.
//
// Keys beyond docs/contract.md §8 (Legate additions): log.*, storage.backend,
// storage.etcd.*, limits.max_line_length, max_literal_size, max_message_size,
// max_recipients, max_pdu_size, dial_timeout, upstream.*.insecure_skip_verify,
// upstream.ldap.ca_file/server_name, policy.allow_null_sender.
package config

import (
	"net/netip"
	"slices"
	"time"
)

// Config is one loaded configuration file. Build one with Load, Parse or
// Default; the zero value is not useful.
type Config struct {
	Listen    Listen    `yaml:"listen"`
	TLS       TLS       `yaml:"tls"`
	Storage   Storage   `yaml:"storage"`
	Upstream  Upstreams `yaml:"upstream"`
	Directory Directory `yaml:"directory"`
	Policy    Policy    `yaml:"policy"`
	Portal    Portal    `yaml:"portal"`
	Limits    Limits    `yaml:"limits"`
	Throttle  Throttle  `yaml:"throttle"`
	Log       Log       `yaml:"log"`
	Audit     Audit     `yaml:"audit"`
	Decision  Decision  `yaml:"decision"`
	AuthHTTP  AuthHTTP  `yaml:"auth_http"`

	file  string         // name given to Load/Parse
	lines map[string]int // key path → line, from the decoder
	bad   map[string]bool
}

// File returns the name the configuration was loaded from ("" if built in code).
func (c *Config) File() string { return c.file }

// Listen holds listener addresses (host:port); an empty one is disabled.
type Listen struct {
	IMAP        string `yaml:"imap"`        // IMAP with STARTTLS
	IMAPS       string `yaml:"imaps"`       // IMAP over implicit TLS
	Submission  string `yaml:"submission"`  // SMTP submission with STARTTLS
	Submissions string `yaml:"submissions"` // SMTP submission over implicit TLS
	LDAP        string `yaml:"ldap"`        // LDAP with StartTLS
	LDAPS       string `yaml:"ldaps"`       // LDAP over implicit TLS
	HTTP        string `yaml:"http"`        // /metrics /healthz /readyz
	Portal      string `yaml:"portal"`      // self-service page
	Admin       string `yaml:"admin"`       // unix socket path, mode 0600
	// Decision is the unix socket `legate checkpassword` asks (mode 0660,
	// group decision.socket_group).
	Decision string `yaml:"decision"`
	// AuthHTTP is nginx's mail auth_http endpoint: a loopback host:port or
	// unix:/path.
	AuthHTTP string `yaml:"auth_http"`
	// ProxyProtocol takes the client's address from a PROXY v1/v2 header
	// sent by a trusted load balancer (docs/contract.md §9).
	ProxyProtocol ProxyProtocol `yaml:"proxy_protocol"`
}

// AuthHTTP configures the nginx auth_http endpoint (listen.auth_http).
type AuthHTTP struct {
	Header     string `yaml:"header"`      // the header nginx sends with auth_http_header
	SecretFile string `yaml:"secret_file"` // its value; requests without it get 403
}

// Decision configures the decision socket (listen.decision).
type Decision struct {
	SocketGroup string `yaml:"socket_group"` // group owning the socket; "" keeps Legate's
}

// ProxyProtocol is listen.proxy_protocol, for the IMAP, submission, LDAP
// and portal listeners.
type ProxyProtocol struct {
	// Trusted are the balancers that must send a header; empty: off.
	Trusted []netip.Prefix `yaml:"trusted"`
	// Timeout bounds the wait for a header; default 5s.
	Timeout Duration `yaml:"timeout"`
}

// TLS is the server certificate for every TLS listener (PEM files).
type TLS struct {
	CertFile string `yaml:"cert_file"`
	KeyFile  string `yaml:"key_file"`
}

// Enabled reports whether a certificate is configured.
func (t TLS) Enabled() bool { return t.CertFile != "" && t.KeyFile != "" }

// Storage says where app passwords and the audit log live.
type Storage struct {
	// Backend is "bolt" (default: one instance, a bbolt file) or "etcd"
	// (several instances sharing app passwords, audit and revocations).
	Backend string `yaml:"backend"`
	// Path is the bbolt database; default "legate.db" beside the config file.
	Path string `yaml:"path"`
	// KeyFile holds the HMAC server key; default "hmac.key" in Path's directory.
	KeyFile string `yaml:"key_file"`
	Etcd    Etcd   `yaml:"etcd"`
}

// Etcd configures the etcd storage backend (Legate addition).
type Etcd struct {
	Endpoints    []string `yaml:"endpoints"`
	Prefix       string   `yaml:"prefix"` // default "/legate/"
	TLS          EtcdTLS  `yaml:"tls"`
	Username     string   `yaml:"username"`
	PasswordFile string   `yaml:"password_file"`
	DialTimeout  Duration `yaml:"dial_timeout"` // default 5s
	// StaleGrace: how long logins trust the in-memory replica after losing
	// touch with an etcd quorum; then they answer "unavailable". Default 60s.
	StaleGrace Duration `yaml:"stale_grace"`
}

// EtcdTLS is the client TLS material for etcd.
type EtcdTLS struct {
	CAFile   string `yaml:"ca_file"`
	CertFile string `yaml:"cert_file"`
	KeyFile  string `yaml:"key_file"`
}

// Upstreams are the real servers Legate logs in to on the user's behalf.
type Upstreams struct {
	IMAP UpstreamMail `yaml:"imap"`
	SMTP UpstreamMail `yaml:"smtp"`
	LDAP UpstreamLDAP `yaml:"ldap"`
}

// TLS modes of an upstream connection.
const (
	TLSNone     = "none"
	TLSStartTLS = "starttls"
	TLSImplicit = "implicit"
)

// Login methods of the mail upstreams.
const (
	LoginAuthzid   = "authzid"   // SASL PLAIN, authzid=user, authcid=master
	LoginSeparator = "separator" // LOGIN user<separator>master
)

// LDAP authorization modes.
const (
	AuthzProxied = "proxied" // RFC 4370 Proxied Authorization as the user
	AuthzService = "service" // as bind_dn, confined to search_bases/attributes
)

// UpstreamMail is upstream.imap or upstream.smtp. It is configured when
// Address is set.
type UpstreamMail struct {
	Address string `yaml:"address"` // host:port
	// TLS is none, starttls or implicit; required when Address is set.
	TLS                string `yaml:"tls"`
	CAFile             string `yaml:"ca_file"`     // empty: system roots
	ServerName         string `yaml:"server_name"` // empty: Address's host
	InsecureSkipVerify bool   `yaml:"insecure_skip_verify"`
	MasterUser         string `yaml:"master_user"`
	MasterPasswordFile string `yaml:"master_password_file"`
	Login              string `yaml:"login"`     // default authzid
	Separator          string `yaml:"separator"` // default "*"
	// Auth is master (default) or oauth2 (a token instead of the master
	// credential; see OAuth2).
	Auth   string `yaml:"auth"`
	OAuth2 OAuth2 `yaml:"oauth2"`
	// PassClientAddress passes the client's address and port to the
	// upstream where it understands it (IMAP: ID x-originating-ip /
	// x-originating-port before the login; SMTP: XCLIENT ADDR= PORT= when
	// the upstream advertises XCLIENT). Default true.
	PassClientAddress bool `yaml:"pass_client_address"`
}

// PassesClientAddress reports pass_client_address (default true).
func (u UpstreamMail) PassesClientAddress() bool {
	return u.PassClientAddress
}

// Configured reports whether the upstream has an address.
func (u UpstreamMail) Configured() bool { return u.Address != "" }

// UpstreamLDAP is upstream.ldap; it is configured when Address is set.
type UpstreamLDAP struct {
	Address            string   `yaml:"address"`
	TLS                string   `yaml:"tls"`
	CAFile             string   `yaml:"ca_file"`
	ServerName         string   `yaml:"server_name"`
	InsecureSkipVerify bool     `yaml:"insecure_skip_verify"`
	BindDN             string   `yaml:"bind_dn"`
	BindPasswordFile   string   `yaml:"bind_password_file"`
	AllowWrites        bool     `yaml:"allow_writes"`
	PoolSize           int      `yaml:"pool_size"` // default 8
	Authz              string   `yaml:"authz"`     // default proxied
	SearchBases        []string `yaml:"search_bases" config:"dn"`
	Attributes         []string `yaml:"attributes"`
}

// Configured reports whether the upstream has an address.
func (u UpstreamLDAP) Configured() bool { return u.Address != "" }

// Directory says where users come from.
type Directory struct {
	Type     string          `yaml:"type"`      // static (default) | ldap
	CacheTTL Duration        `yaml:"cache_ttl"` // default 60s
	Static   StaticDirectory `yaml:"static"`
	LDAP     LDAPDirectory   `yaml:"ldap"`
}

// StaticDirectory lists users in the file.
type StaticDirectory struct {
	Users []User `yaml:"users"`
}

// User is one entry of directory.static.users.
type User struct {
	Name         string   `yaml:"name"`
	Addresses    []string `yaml:"addresses"`
	Groups       []string `yaml:"groups"`
	Admin        bool     `yaml:"admin"`
	Disabled     bool     `yaml:"disabled"`
	PasswordHash string   `yaml:"password_hash"` // argon2id or bcrypt; optional
}

// LDAPDirectory reads users from upstream.ldap.
type LDAPDirectory struct {
	BaseDN                   string   `yaml:"base_dn"`
	UserFilter               string   `yaml:"user_filter"`     // must contain %s
	NameAttribute            string   `yaml:"name_attribute"`  // default uid
	MailAttributes           []string `yaml:"mail_attributes"` // default [mail]
	GroupAttribute           string   `yaml:"group_attribute"` // default memberOf
	AdminGroups              []string `yaml:"admin_groups" config:"dn"`
	DisabledFilter           string   `yaml:"disabled_filter"`
	PasswordChangedAttribute string   `yaml:"password_changed_attribute"`
}

// Policy is the policy section; PolicyConfig converts it for package policy.
type Policy struct {
	RequireTLS             bool                `yaml:"require_tls"`              // default true
	AllowPlaintextLoopback bool                `yaml:"allow_plaintext_loopback"` // default false
	TrustedNetworks        []netip.Prefix      `yaml:"trusted_networks"`
	BlockLegacyAuth        bool                `yaml:"block_legacy_auth"`
	BlockedUsers           []string            `yaml:"blocked_users"`
	BlockedGroups          []string            `yaml:"blocked_groups" config:"dn"`
	Admins                 []string            `yaml:"admins"`
	Protocols              []string            `yaml:"protocols"` // default imap smtp ldap
	UserProtocols          map[string][]string `yaml:"user_protocols"`
	MaxAppPasswordsPerUser int                 `yaml:"max_app_passwords_per_user"` // default 40
	RevokeOnPasswordChange bool                `yaml:"revoke_on_password_change"`  // default true
	ExpireUnusedAfter      Duration            `yaml:"expire_unused_after"`        // 0: never
	EnforceSender          bool                `yaml:"enforce_sender"`             // default true
	AllowNullSender        bool                `yaml:"allow_null_sender"`          // default false
}

// Portal is the self-service page.
type Portal struct {
	ExternalURL string `yaml:"external_url"`
	// SessionKeyFile default: "portal.key" in storage.path's directory.
	SessionKeyFile string         `yaml:"session_key_file"`
	ReauthAfter    Duration       `yaml:"reauth_after"` // default 10m
	OIDC           OIDC           `yaml:"oidc"`
	ClientSettings ClientSettings `yaml:"client_settings"`
	// TrustedProxies are the reverse proxies whose X-Forwarded-For,
	// X-Forwarded-Proto and Forwarded headers the portal believes; with
	// them (and listen.portal on loopback or inside them) the portal may
	// serve plain HTTP while tls.* is set. Empty: headers ignored.
	TrustedProxies []netip.Prefix `yaml:"trusted_proxies"`
}

// OIDC is the OpenID Connect provider users sign in with.
type OIDC struct {
	Issuer           string `yaml:"issuer"`
	ClientID         string `yaml:"client_id"`
	ClientSecretFile string `yaml:"client_secret_file"`
	UsernameClaim    string `yaml:"username_claim"` // default preferred_username
	// UsernameAttribute is what the claim must equal exactly: "name" (the
	// directory's canonical name) or "mail" (one of the user's addresses).
	UsernameAttribute string   `yaml:"username_attribute"` // default name
	RequireMFA        bool     `yaml:"require_mfa"`        // default true
	MFAAMR            []string `yaml:"mfa_amr"`            // default mfa otp hwk swk sms
	MFAACR            string   `yaml:"mfa_acr"`            // if set, acr must equal it
}

// ClientSettings are shown beside a new password.
type ClientSettings struct {
	IMAP ClientSetting `yaml:"imap"`
	SMTP ClientSetting `yaml:"smtp"`
	LDAP ClientSetting `yaml:"ldap"`
}

// ClientSetting tells a user how to set up one protocol.
type ClientSetting struct {
	Host     string `yaml:"host"`
	Port     int    `yaml:"port"`
	Security string `yaml:"security"` // tls | starttls | none
}

// Limits bounds connections and input (docs/contract.md §7).
type Limits struct {
	MaxConnections      int      `yaml:"max_connections"`        // default 10000
	MaxConnectionsPerIP int      `yaml:"max_connections_per_ip"` // default 50
	PreauthTimeout      Duration `yaml:"preauth_timeout"`        // default 60s
	IdleTimeout         Duration `yaml:"idle_timeout"`           // default 30m
	ShutdownGrace       Duration `yaml:"shutdown_grace"`         // default 30s
	MaxLineLength       Size     `yaml:"max_line_length"`        // default 8192
	MaxLiteralSize      Size     `yaml:"max_literal_size"`       // pre-auth IMAP literal, default 8192
	MaxMessageSize      Size     `yaml:"max_message_size"`       // SMTP, default 50MB
	MaxRecipients       int      `yaml:"max_recipients"`         // SMTP, default 100
	MaxPDUSize          Size     `yaml:"max_pdu_size"`           // LDAP, default 1MiB
	DialTimeout         Duration `yaml:"dial_timeout"`           // upstream connect, default 10s
	// RecheckInterval: every live session is re-decided against the store,
	// the directory and the policy this often (and at once after a reload);
	// 0 disables the periodic sweep. Default 30s.
	RecheckInterval Duration `yaml:"recheck_interval"`
}

// Throttle bounds authentication failures (docs/contract.md §7).
type Throttle struct {
	MaxFailuresPerIP   int      `yaml:"max_failures_per_ip"`   // default 20
	MaxFailuresPerUser int      `yaml:"max_failures_per_user"` // default 10
	Window             Duration `yaml:"window"`                // default 10m
}

// Log configures the daemon's log/slog output (Legate addition).
type Log struct {
	Format string `yaml:"format"` // text (default) | json
	Level  string `yaml:"level"`  // debug | info (default) | warn | error
}

// Default returns a configuration with every default of docs/contract.md §8 (and the
// Legate additions) and nothing else: no listener, no upstream, no users.
// Relative default paths (storage.path) are relative to the working directory.
func Default() *Config {
	return &Config{
		Listen: Listen{ProxyProtocol: ProxyProtocol{Timeout: Duration(5 * time.Second)}},
		Storage: Storage{
			Backend: "bolt",
			Path:    "legate.db",
			KeyFile: "hmac.key",
			Etcd: Etcd{
				Prefix:      "/legate/",
				DialTimeout: Duration(5 * time.Second),
				StaleGrace:  Duration(60 * time.Second),
			},
		},
		Upstream: Upstreams{
			IMAP: UpstreamMail{Login: LoginAuthzid, Separator: "*", Auth: AuthMaster, PassClientAddress: true},
			SMTP: UpstreamMail{Login: LoginAuthzid, Separator: "*", Auth: AuthMaster, PassClientAddress: true},
			LDAP: UpstreamLDAP{PoolSize: 8, Authz: AuthzProxied},
		},
		Directory: Directory{
			Type:     "static",
			CacheTTL: Duration(60 * time.Second),
			LDAP: LDAPDirectory{
				NameAttribute:  "uid",
				MailAttributes: []string{"mail"},
				GroupAttribute: "memberOf",
			},
		},
		Policy: Policy{
			RequireTLS:             true,
			Protocols:              []string{"imap", "smtp", "ldap"},
			MaxAppPasswordsPerUser: 40,
			RevokeOnPasswordChange: true,
			EnforceSender:          true,
		},
		Portal: Portal{
			SessionKeyFile: "portal.key",
			ReauthAfter:    Duration(10 * time.Minute),
			OIDC: OIDC{
				UsernameClaim:     "preferred_username",
				UsernameAttribute: "name",
				RequireMFA:        true,
				MFAAMR:            slices.Clone(defaultAMR),
			},
		},
		Limits: Limits{
			MaxConnections:      10000,
			MaxConnectionsPerIP: 50,
			PreauthTimeout:      Duration(60 * time.Second),
			IdleTimeout:         Duration(30 * time.Minute),
			ShutdownGrace:       Duration(30 * time.Second),
			MaxLineLength:       8192,
			MaxLiteralSize:      8192,
			MaxMessageSize:      50 * 1000 * 1000,
			MaxRecipients:       100,
			MaxPDUSize:          1 << 20,
			DialTimeout:         Duration(10 * time.Second),
			RecheckInterval:     Duration(30 * time.Second),
		},
		Throttle: Throttle{
			MaxFailuresPerIP:   20,
			MaxFailuresPerUser: 10,
			Window:             Duration(10 * time.Minute),
		},
		Log:   Log{Format: "text", Level: "info"},
		Audit: Audit{Retain: DefaultAuditRetain},
	}
}

var defaultAMR = []string{"mfa", "otp", "hwk", "swk", "sms"}

package config

import (
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestCheckSecretsFileLine: every secret-file problem names file:line and
// the key, once, without a doubled prefix, and never the secret.
func TestCheckSecretsFileLine(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "legate.yaml")
	body := `listen:
  imap: 127.0.0.1:10143
  submission: 127.0.0.1:10587
  ldap: 127.0.0.1:10389
upstream:
  imap:
    address: 127.0.0.1:143
    tls: none
    master_user: legate
    master_password_file: imap.secret
  smtp:
    address: 127.0.0.1:587
    tls: none
    master_user: legate
    master_password_file: smtp.secret
  ldap:
    address: 127.0.0.1:389
    tls: none
    bind_dn: cn=legate,dc=example,dc=com
    bind_password_file: ldap.secret
policy:
  allow_plaintext_loopback: true
`
	if err := os.WriteFile(file, []byte(body), 0o600); err != nil {
		t.Fatal(err)
	}
	// imap.secret missing; smtp.secret world-readable; ldap.secret empty.
	os.WriteFile(filepath.Join(dir, "smtp.secret"), []byte("hunter2-secret\n"), 0o600)
	os.Chmod(filepath.Join(dir, "smtp.secret"), 0o644)
	os.WriteFile(filepath.Join(dir, "ldap.secret"), []byte("\n"), 0o600)
	c, err := Load(file)
	if err != nil {
		t.Fatal(err)
	}
	err = c.CheckSecrets()
	var es Errors
	if !errors.As(err, &es) || len(es) != 3 {
		t.Fatalf("CheckSecrets = %v, want 3 config.Errors", err)
	}
	want := []struct {
		prefix string
		is     error
	}{
		{file + ":10: upstream.imap.master_password_file: cannot read secret file " + filepath.Join(dir, "imap.secret"), fs.ErrNotExist},
		{file + ":15: upstream.smtp.master_password_file: secret file is world-readable", ErrSecretExposed},
		{file + ":20: upstream.ldap.bind_password_file: secret file is empty", ErrSecretEmpty},
	}
	for i, w := range want {
		got := es[i].Error()
		if !strings.HasPrefix(got, w.prefix) {
			t.Errorf("error %d = %q, want prefix %q", i, got, w.prefix)
		}
		if !errors.Is(es[i], w.is) {
			t.Errorf("error %d = %q does not match %v", i, got, w.is)
		}
		if strings.Contains(got, "config:") || strings.Count(got, "secret") > 2 || strings.Contains(got, "hunter2") {
			t.Errorf("error %d = %q: doubled prefix or the secret", i, got)
		}
	}

	// WithoutFiles clears exactly the reported keys, on a copy.
	cp := c.WithoutFiles(es[:1])
	if cp.Upstream.IMAP.MasterPasswordFile != "" || cp.Upstream.SMTP.MasterPasswordFile == "" {
		t.Errorf("WithoutFiles: imap %q smtp %q", cp.Upstream.IMAP.MasterPasswordFile, cp.Upstream.SMTP.MasterPasswordFile)
	}
	if c.Upstream.IMAP.MasterPasswordFile == "" {
		t.Error("WithoutFiles changed the original")
	}

	// All fine: nil, and a plain nil error (no typed nil).
	os.WriteFile(filepath.Join(dir, "imap.secret"), []byte("a"), 0o600)
	os.Chmod(filepath.Join(dir, "smtp.secret"), 0o600)
	os.WriteFile(filepath.Join(dir, "ldap.secret"), []byte("b"), 0o600)
	if err := c.CheckSecrets(); err != nil {
		t.Errorf("CheckSecrets with good files = %v", err)
	}
}

// TestReadSecretFileNoPrefix: ReadSecretFile's own messages carry no
// "config: secret:" prefix (callers add the key).
func TestReadSecretFileNoPrefix(t *testing.T) {
	_, err := ReadSecretFile(filepath.Join(t.TempDir(), "nope"))
	if err == nil || strings.HasPrefix(err.Error(), "config:") || strings.Count(err.Error(), "nope") != 1 {
		t.Errorf("missing file: %q", err)
	}
}

func TestWarnings(t *testing.T) {
	tests := []struct {
		name string
		src  string
		want []string // substrings, one per warning, in order; none: no warning
	}{
		{"loopback try-out", minimal, nil},
		{"plaintext loopback on a public listener", strings.Replace(minimal, "127.0.0.1:10143", "0.0.0.0:10143", 1),
			[]string{"legate.yaml:2: listen.imap: 0.0.0.0:10143 is not a loopback address and there is no tls.cert_file"}},
		{"plaintext everywhere", strings.Replace(strings.Replace(minimal, "127.0.0.1:10143", "192.0.2.1:143", 1),
			"allow_plaintext_loopback: true", "require_tls: false", 1),
			[]string{"listen.imap: policy.require_tls is false: passwords from 192.0.2.1:143 cross the network in clear text"}},
		{"loopback exemption without effect", minimal + "  require_tls: false\n",
			[]string{"legate.yaml:10: policy.allow_plaintext_loopback: has no effect"}},
		{"trust everyone", minimal + "  trusted_networks: [10.0.0.0/8, 0.0.0.0/0]\n",
			[]string{"policy.trusted_networks[1]: 0.0.0.0/0 trusts every address"}},
		{"listener for a refused protocol", minimal + "  protocols: [smtp]\n",
			[]string{"legate.yaml:2: listen.imap: is set, but imap is not in policy.protocols"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := Parse("legate.yaml", []byte(tt.src))
			if err != nil {
				t.Fatal(err)
			}
			ws := c.Warnings()
			if len(ws) != len(tt.want) {
				t.Fatalf("warnings %q, want %d", ws.Error(), len(tt.want))
			}
			for i, w := range tt.want {
				if !strings.Contains(ws[i].Error(), w) {
					t.Errorf("warning %d = %q, want %q", i, ws[i].Error(), w)
				}
			}
		})
	}
}

// TestCheckFilesFileLine: certificate, key and CA files are checked with
// file:line and the key too.
func TestCheckFilesFileLine(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "legate.yaml")
	body := minimal + `tls:
  cert_file: tls.crt
  key_file: tls.key
`
	body = strings.Replace(body, "    tls: none\n", "    tls: implicit\n    ca_file: ca.pem\n", 1)
	os.WriteFile(file, []byte(body), 0o600)
	os.WriteFile(filepath.Join(dir, "tls.crt"), []byte("x"), 0o644)
	os.Mkdir(filepath.Join(dir, "tls.key"), 0o700)
	c, err := Load(file)
	if err != nil {
		t.Fatal(err)
	}
	var es Errors
	if err := c.CheckFiles(); !errors.As(err, &es) || len(es) != 2 {
		t.Fatalf("CheckFiles = %v, want 2 errors", err)
	}
	if got := es[0].Error(); !strings.HasPrefix(got, file+":7: upstream.imap.ca_file: cannot read "+filepath.Join(dir, "ca.pem")) || !errors.Is(es[0], fs.ErrNotExist) {
		t.Errorf("missing CA: %q", got)
	}
	if got := es[1].Error(); !strings.HasPrefix(got, file+":14: tls.key_file: ") || !strings.Contains(got, "not a regular file") {
		t.Errorf("directory as key: %q", got)
	}
	cp := c.WithoutFiles(es)
	if cp.TLS.CertFile != "" || cp.Upstream.IMAP.CAFile != "" {
		t.Errorf("WithoutFiles kept %q %q", cp.TLS.CertFile, cp.Upstream.IMAP.CAFile)
	}
}

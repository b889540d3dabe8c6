package config

import (
	"strings"
	"testing"
)

// TestPassClientAddress: upstream.*.pass_client_address defaults to true,
// false switches it off, and anything but a boolean is an error with
// file:line.
func TestPassClientAddress(t *testing.T) {
	c, err := Parse("legate.yaml", []byte(minimal))
	if err != nil {
		t.Fatal(err)
	}
	if !c.Upstream.IMAP.PassClientAddress || !c.Upstream.SMTP.PassClientAddress {
		t.Errorf("defaults: got imap %v, smtp %v, want true", c.Upstream.IMAP.PassClientAddress, c.Upstream.SMTP.PassClientAddress)
	}
	src := strings.Replace(minimal, "    master_password_file: imap.secret\n",
		"    master_password_file: imap.secret\n    pass_client_address: false\n", 1)
	c, err = Parse("legate.yaml", []byte(src))
	if err != nil {
		t.Fatal(err)
	}
	if c.Upstream.IMAP.PassClientAddress {
		t.Error("pass_client_address: false: got true")
	}
	_, err = Parse("legate.yaml", []byte(strings.Replace(src, "pass_client_address: false", "pass_client_address: maybe", 1)))
	if want := `legate.yaml:9: upstream.imap.pass_client_address: want true or false, got "maybe"`; err == nil || !strings.Contains(err.Error(), want) {
		t.Errorf("got %v, want %q", err, want)
	}
}

// TestSMTPPassClientAddress: upstream.smtp.pass_client_address defaults to true
// and can be turned off.
func TestSMTPPassClientAddress(t *testing.T) {
	for _, c := range []struct {
		extra string
		want  bool
	}{
		{"", true},
		{"    pass_client_address: true\n", true},
		{"    pass_client_address: false\n", false},
	} {
		src := `listen:
  submission: 127.0.0.1:10587
upstream:
  smtp:
    address: 127.0.0.1:587
    tls: none
    master_user: legate
    master_password_file: smtp.secret
` + c.extra + `policy:
  allow_plaintext_loopback: true
`
		cfg, err := Parse("legate.yaml", []byte(src))
		if err != nil {
			t.Fatalf("Parse(%q): %v", c.extra, err)
		}
		if got := cfg.Upstream.SMTP.PassesClientAddress(); got != c.want {
			t.Errorf("pass_client_address with %q: got %v, want %v", c.extra, got, c.want)
		}
	}
}

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

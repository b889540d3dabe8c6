package config

import "testing"

// TestPassClientAddress: upstream.smtp.pass_client_address defaults to true
// and can be turned off.
func TestPassClientAddress(t *testing.T) {
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

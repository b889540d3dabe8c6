package systemtest

import (
	"crypto/tls"
	"crypto/x509"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/legate-proxy/legate/internal/config"
	"github.com/legate-proxy/legate/internal/testenv"
)

// handshake dials addr with TLS and returns the connection and the leaf.
func handshake(addr string, tc *tls.Config) (*tls.Conn, *x509.Certificate, error) {
	d := &net.Dialer{Timeout: 5 * time.Second}
	c, err := tls.DialWithDialer(d, "tcp", addr, tc)
	if err != nil {
		return nil, nil, err
	}
	return c, c.ConnectionState().PeerCertificates[0], nil
}

// TestTLSMinimumVersion: TLS 1.0 and 1.1 clients are refused on every
// implicit-TLS listener; the same client allowing TLS 1.2 gets in.
func TestTLSMinimumVersion(t *testing.T) {
	t.Parallel()
	lg := StartLegate(t, LegateOptions{})
	// Control: the old-version client does speak TLS 1.1 to a server that
	// allows it, so a refusal below is the listener's doing.
	permissive := lg.Certs.ServerTLS.Clone()
	permissive.MinVersion = tls.VersionTLS10
	ln, err := tls.Listen("tcp", "127.0.0.1:0", permissive)
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			c.(*tls.Conn).Handshake()
			c.Close()
		}
	}()
	old := lg.ClientTLS()
	old.MinVersion, old.MaxVersion = tls.VersionTLS10, tls.VersionTLS11
	if c, _, err := handshake(ln.Addr().String(), old); err != nil {
		t.Fatalf("control: TLS 1.1 client to a TLS 1.0+ server: %v", err)
	} else if v := c.ConnectionState().Version; v != tls.VersionTLS11 {
		t.Fatalf("control: negotiated %s, want TLS 1.1", tls.VersionName(v))
	} else {
		c.Close()
	}
	for _, key := range []string{"imaps", "submissions", "ldaps"} {
		addr := lg.AddrOf(t, key)
		for _, v := range []uint16{tls.VersionTLS10, tls.VersionTLS11} {
			tc := lg.ClientTLS()
			tc.MinVersion, tc.MaxVersion = tls.VersionTLS10, v
			c, _, err := handshake(addr, tc)
			if err == nil {
				c.Close()
				t.Errorf("%s: handshake with max version %s: succeeded, want refused", key, tls.VersionName(v))
			}
		}
		tc := lg.ClientTLS()
		tc.MinVersion, tc.MaxVersion = tls.VersionTLS10, tls.VersionTLS12
		c, _, err := handshake(addr, tc)
		if err != nil {
			t.Errorf("%s: handshake with max version TLS 1.2: %v", key, err)
			continue
		}
		if got := c.ConnectionState().Version; got != tls.VersionTLS12 {
			t.Errorf("%s: negotiated %s, want TLS 1.2", key, tls.VersionName(got))
		}
		c.Close()
	}
}

func copyFile(t *testing.T, src, dst string) {
	t.Helper()
	b, err := os.ReadFile(src)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(dst+".tmp", b, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(dst+".tmp", dst); err != nil {
		t.Fatal(err)
	}
}

func leafSerial(t *testing.T, certFile string) string {
	t.Helper()
	c, err := tls.LoadX509KeyPair(certFile, certFile[:len(certFile)-len(filepath.Ext(certFile))]+".key")
	if err != nil {
		t.Fatal(err)
	}
	x, err := x509.ParseCertificate(c.Certificate[0])
	if err != nil {
		t.Fatal(err)
	}
	return x.SerialNumber.String()
}

// TestTLSCertificateReload: daemon.Reload with tls.cert_file holding a new
// certificate serves it to new connections on every TLS listener, without a
// restart; a connection opened before keeps working.
func TestTLSCertificateReload(t *testing.T) {
	t.Parallel()
	oldCerts, newCerts := testenv.NewCerts(t), testenv.NewCerts(t)
	dir := t.TempDir()
	certFile, keyFile := filepath.Join(dir, "tls.pem"), filepath.Join(dir, "tls.key")
	copyFile(t, oldCerts.CertFile, certFile)
	copyFile(t, oldCerts.KeyFile, keyFile)
	lg := StartLegate(t, LegateOptions{Mutate: func(c *config.Config) {
		c.TLS = config.TLS{CertFile: certFile, KeyFile: keyFile}
	}})
	roots := x509.NewCertPool()
	for _, f := range []string{oldCerts.CAFile, newCerts.CAFile} {
		b, _ := os.ReadFile(f)
		roots.AppendCertsFromPEM(b)
	}
	tc := &tls.Config{RootCAs: roots, ServerName: "localhost", MinVersion: tls.VersionTLS12}
	oldSerial, newSerial := leafSerial(t, oldCerts.CertFile), leafSerial(t, newCerts.CertFile)

	// An IMAPS connection from before the reload.
	before, err := tls.Dial("tcp", lg.AddrOf(t, "imaps"), tc)
	if err != nil {
		t.Fatal(err)
	}
	defer before.Close()
	ic := &RawIMAP{Conn: before}
	ic.r = newReader(before)
	if _, err := ic.ReadLine(5 * time.Second); err != nil {
		t.Fatal(err)
	}
	if got := before.ConnectionState().PeerCertificates[0].SerialNumber.String(); got != oldSerial {
		t.Fatalf("before reload: serial %s, want %s", got, oldSerial)
	}

	copyFile(t, newCerts.CertFile, certFile)
	copyFile(t, newCerts.KeyFile, keyFile)
	cfg := *lg.Config
	if err := lg.Reload(&cfg); err != nil {
		t.Fatalf("Reload: %v", err)
	}
	for _, key := range []string{"imaps", "submissions", "ldaps"} {
		c, leaf, err := handshake(lg.AddrOf(t, key), tc)
		if err != nil {
			t.Errorf("%s after reload: %v", key, err)
			continue
		}
		c.Close()
		if got := leaf.SerialNumber.String(); got != newSerial {
			t.Errorf("%s after reload: serial %s, want the new certificate's %s (old was %s)", key, got, newSerial, oldSerial)
		}
	}
	if ans, _, err := ic.Command("a1", "CAPABILITY", 5*time.Second); err != nil || !strings.HasPrefix(ans, "OK") {
		t.Errorf("connection from before the reload: CAPABILITY got %q, %v; want OK", ans, err)
	}
	// A bad certificate file is refused and the current one kept.
	if err := os.WriteFile(certFile, []byte("not a certificate"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := lg.Reload(&cfg); err == nil {
		t.Error("Reload with a broken certificate file: got nil error")
	}
	if c, leaf, err := handshake(lg.AddrOf(t, "imaps"), tc); err != nil || leaf.SerialNumber.String() != newSerial {
		t.Errorf("after a refused reload: %v, want the new certificate still served", err)
	} else {
		c.Close()
	}
}

// TestUpstreamVerification: the upstream's certificate is checked by
// default; a certificate from another CA makes logins UNAVAILABLE. With
// insecure_skip_verify the login works and a loud warning is logged.
func TestUpstreamVerification(t *testing.T) {
	ups := StartUpstreams(t, UpstreamOptions{Mail: true})
	wrongCA := testenv.NewCerts(t).CAFile
	lg := StartLegate(t, LegateOptions{Upstreams: ups, Mutate: func(c *config.Config) {
		c.Upstream.IMAP.CAFile = wrongCA
	}})
	pw := lg.CreateAppPassword(t, "alice", "Laptop")
	const warning = "UPSTREAM CERTIFICATE VERIFICATION IS OFF"
	if strings.Contains(lg.Logs.String(), warning) {
		t.Fatalf("warning logged while verification is on")
	}
	c, _ := DialIMAP(t, lg.AddrOf(t, "imaps"), lg.ClientTLS())
	ans, err := c.Login("a1", "alice", pw, 15*time.Second)
	if err != nil || !strings.HasPrefix(ans, "NO [UNAVAILABLE]") {
		t.Errorf("login with an unverifiable upstream: got %q, %v; want NO [UNAVAILABLE]", ans, err)
	}
	if l := lg.Logs.String(); !strings.Contains(l, "certificate") {
		t.Errorf("log does not say why the upstream failed (want a certificate error):\n%s", tailLines(l, 10))
	}

	cfg := *lg.Config
	cfg.Upstream.IMAP.InsecureSkipVerify = true
	if err := lg.Reload(&cfg); err != nil {
		t.Fatalf("Reload: %v", err)
	}
	var warnLine string
	for _, l := range strings.Split(lg.Logs.String(), "\n") {
		if strings.Contains(l, warning) {
			warnLine = l
		}
	}
	if !strings.Contains(warnLine, "level=WARN") || !strings.Contains(warnLine, "upstream.imap") {
		t.Errorf("want a WARN line naming upstream.imap with %q, got %q", warning, warnLine)
	}
	c2, _ := DialIMAP(t, lg.AddrOf(t, "imaps"), lg.ClientTLS())
	ans, err = c2.Login("a2", "alice", pw, 15*time.Second)
	if err != nil || !strings.HasPrefix(ans, "OK") {
		t.Errorf("login with insecure_skip_verify: got %q, %v; want OK", ans, err)
	}
}

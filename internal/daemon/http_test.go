package daemon

import (
	"crypto/tls"
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/legate-proxy/legate/internal/testenv"
)

// fakeUpstream accepts connections and holds them until the test ends; with
// tc it speaks TLS.
func fakeUpstream(t *testing.T, tc *tls.Config) net.Listener {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	if tc != nil {
		ln = tls.NewListener(ln, tc)
	}
	var wg sync.WaitGroup
	var mu sync.Mutex
	var conns []net.Conn
	wg.Go(func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			if tc != nil {
				wg.Go(func() { c.(*tls.Conn).Handshake() })
			}
			mu.Lock()
			conns = append(conns, c)
			mu.Unlock()
		}
	})
	t.Cleanup(func() {
		ln.Close()
		mu.Lock()
		for _, c := range conns {
			c.Close()
		}
		mu.Unlock()
		wg.Wait()
	})
	return ln
}

const masterSecret = "s3cret-master-pw"

// upstreamConfig configures upstream.imap (and optionally upstream.smtp).
func upstreamConfig(dir, key, addr, mode, caFile string) string {
	s := fmt.Sprintf("  %s:\n    address: %s\n    tls: %s\n    master_user: legate\n    master_password_file: %s/master.secret\n",
		key, addr, mode, dir)
	if caFile != "" {
		s += "    ca_file: " + caFile + "\n    server_name: localhost\n"
	}
	return s
}

func TestHealthAndReady(t *testing.T) {
	certs := testenv.NewCerts(t)
	imapUp := fakeUpstream(t, nil)
	smtpUp := fakeUpstream(t, certs.ServerTLS)
	dir := t.TempDir()
	writeFile(t, filepath.Join(dir, "master.secret"), masterSecret)
	path := filepath.Join(dir, "legate.yaml")
	writeFile(t, path, testConfig(dir, "  allow_plaintext_loopback: true\n",
		"upstream:\n"+upstreamConfig(dir, "imap", imapUp.Addr().String(), "none", "")+
			upstreamConfig(dir, "smtp", smtpUp.Addr().String(), "implicit", certs.CAFile)))
	// listen.imap too: front-ends and HTTP side by side.
	data, _ := os.ReadFile(path)
	writeFile(t, path, strings.Replace(string(data), "listen:\n", "listen:\n  imap: 127.0.0.1:0\n", 1))
	d := startDaemon(t, path)
	if d.Addr("imap") == nil {
		t.Fatal("listen.imap not started")
	}

	if code, body := get(t, d, "/healthz"); code != 200 || body != "ok\n" {
		t.Errorf("/healthz: got %d %q, want 200 \"ok\\n\"", code, body)
	}
	if code, body := get(t, d, "/readyz"); code != 200 || body != "ok\n" {
		t.Errorf("/readyz with every upstream up: got %d %q, want 200 ok", code, body)
	}
	resp, err := http.Post("http://"+d.HTTPAddr().String()+"/metrics", "text/plain", nil)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusMethodNotAllowed {
		t.Errorf("POST /metrics: got %d, want 405", resp.StatusCode)
	}
	if code, _ := get(t, d, "/nothing"); code != 404 {
		t.Errorf("GET /nothing: got %d, want 404", code)
	}

	// The IMAP upstream goes away: 503 naming it, and only it.
	imapUp.Close()
	code, body := get(t, d, "/readyz")
	if code != 503 || !strings.Contains(body, "upstream.imap: ") || strings.Contains(body, "upstream.smtp") {
		t.Errorf("/readyz with upstream.imap down: got %d %q, want 503 naming upstream.imap only", code, body)
	}
	if strings.Contains(body, masterSecret) {
		t.Errorf("/readyz shows the master password: %q", body)
	}

	// Reload: smtp now expects implicit TLS from a plain TCP server (the
	// handshake fails); imap points at a live one.
	plainUp := fakeUpstream(t, nil)
	imapUp2 := fakeUpstream(t, nil)
	writeFile(t, path, strings.Replace(testConfig(dir, "  allow_plaintext_loopback: true\n",
		"upstream:\n"+upstreamConfig(dir, "imap", imapUp2.Addr().String(), "none", "")+
			upstreamConfig(dir, "smtp", plainUp.Addr().String(), "implicit", certs.CAFile)),
		"listen:\n", "listen:\n  imap: 127.0.0.1:0\n", 1))
	if err := d.ReloadFile(path); err != nil {
		t.Fatal(err)
	}
	code, body = get(t, d, "/readyz")
	if code != 503 || !strings.Contains(body, "upstream.smtp: ") || !strings.Contains(body, "tls handshake") ||
		strings.Contains(body, "upstream.imap") {
		t.Errorf("/readyz with a plain server behind implicit TLS: got %d %q, want 503 naming upstream.smtp's handshake", code, body)
	}

	// Draining: 503 whatever the checks say.
	d.draining.Store(true)
	if code, body := get(t, d, "/readyz"); code != 503 || !strings.Contains(body, "draining") {
		t.Errorf("/readyz while draining: got %d %q, want 503 draining", code, body)
	}
	d.draining.Store(false)

	// Close stops listen.http.
	addr := d.HTTPAddr().String()
	d.Close()
	if c, err := net.Dial("tcp", addr); err == nil {
		c.Close()
		t.Errorf("listen.http still accepts after Close")
	}
}

func TestReadyStoreFailure(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "legate.yaml")
	writeFile(t, path, testConfig(dir, "", ""))
	d := startDaemon(t, path)
	if code, _ := get(t, d, "/readyz"); code != 200 {
		t.Fatalf("/readyz: got %d, want 200", code)
	}
	// Close the store under the running HTTP endpoint.
	d.store.Close()
	code, body := get(t, d, "/readyz")
	if code != 503 || !strings.HasPrefix(body, "not ready:\nstore: ") {
		t.Errorf("/readyz with the store closed: got %d %q, want 503 naming the store", code, body)
	}
}

func TestNoHTTPListener(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "legate.yaml")
	writeFile(t, path, strings.Replace(testConfig(dir, "", ""), "  http: 127.0.0.1:0\n", "  admin: "+dir+"/admin.sock\n", 1))
	d := startDaemon(t, path)
	if d.HTTPAddr() != nil {
		t.Errorf("HTTPAddr without listen.http: got %v, want nil", d.HTTPAddr())
	}
	if d.Metrics() == nil {
		t.Error("Metrics without listen.http: got nil, want metrics all the same")
	}
}

package daemon

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"github.com/legate-proxy/legate/internal/control"
)

// fakeIMAP is an IMAP server that accepts any AUTHENTICATE PLAIN (the
// master login) and answers every later command "tag OK".
func fakeIMAP(t *testing.T) net.Listener {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
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
			mu.Lock()
			conns = append(conns, c)
			mu.Unlock()
			wg.Go(func() {
				defer c.Close()
				_ = c.SetDeadline(time.Now().Add(10 * time.Second))
				br := bufio.NewReader(c)
				fmt.Fprint(c, "* OK [CAPABILITY IMAP4rev1 SASL-IR AUTH=PLAIN] fake ready\r\n")
				for {
					line, err := br.ReadString('\n')
					if err != nil {
						return
					}
					tag, rest, _ := strings.Cut(strings.TrimRight(line, "\r\n"), " ")
					cmd, _, _ := strings.Cut(rest, " ")
					switch strings.ToUpper(cmd) {
					case "AUTHENTICATE":
						fmt.Fprintf(c, "%s OK [CAPABILITY IMAP4rev1 IDLE] Logged in\r\n", tag)
					case "LOGOUT":
						fmt.Fprintf(c, "* BYE bye\r\n%s OK LOGOUT done\r\n", tag)
						return
					default:
						fmt.Fprintf(c, "%s OK %s done\r\n", tag, cmd)
					}
				}
			})
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

// scrape parses /metrics with the Prometheus text parser and returns the
// value of name with exactly the given labels, and whether it was found.
func scrape(t *testing.T, d *Daemon, name string, labels map[string]string) (float64, bool) {
	t.Helper()
	resp, err := http.Get("http://" + d.HTTPAddr().String() + "/metrics")
	if err != nil {
		t.Fatalf("GET /metrics: %v", err)
	}
	defer resp.Body.Close()
	p := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := p.TextToMetricFamilies(resp.Body)
	if err != nil {
		t.Fatalf("parse /metrics: %v", err)
	}
	fam, ok := fams[name]
	if !ok {
		return 0, false
	}
next:
	for _, m := range fam.GetMetric() {
		if len(m.GetLabel()) != len(labels) {
			continue
		}
		for _, l := range m.GetLabel() {
			if labels[l.GetName()] != l.GetValue() {
				continue next
			}
		}
		switch {
		case m.GetCounter() != nil:
			return m.GetCounter().GetValue(), true
		case m.GetGauge() != nil:
			return m.GetGauge().GetValue(), true
		case m.GetHistogram() != nil:
			return float64(m.GetHistogram().GetSampleCount()), true
		}
	}
	return 0, false
}

// imapDaemon starts a daemon with listen.imap (and listenExtra, lines
// under listen:) in front of a fake IMAP upstream, with policyLines under
// policy:, and creates an app password for alice.
func imapDaemon(t *testing.T, policyLines, listenExtra string) (*Daemon, control.Created) {
	t.Helper()
	up := fakeIMAP(t)
	dir := t.TempDir()
	writeFile(t, filepath.Join(dir, "master.secret"), masterSecret)
	path := filepath.Join(dir, "legate.yaml")
	writeFile(t, path, strings.Replace(testConfig(dir, policyLines,
		"upstream:\n"+upstreamConfig(dir, "imap", up.Addr().String(), "none", "")),
		"listen:\n", "listen:\n  imap: 127.0.0.1:0\n"+listenExtra, 1))
	d := startDaemon(t, path)
	ap, err := d.Control().CreateAppPassword(context.Background(), control.CreateArgs{User: "alice", Name: "laptop", Via: "test"})
	if err != nil {
		t.Fatal(err)
	}
	return d, ap
}

func TestMetricsIMAPRelay(t *testing.T) {
	d, ap := imapDaemon(t, "  allow_plaintext_loopback: true\n", "")

	c, err := net.DialTimeout("tcp", d.Addr("imap").String(), 3*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(10 * time.Second))
	br := bufio.NewReader(c)
	expect := func(prefix string) {
		t.Helper()
		l, err := br.ReadString('\n')
		if err != nil || !strings.HasPrefix(l, prefix) {
			t.Fatalf("got %q (%v), want a line starting %q", l, err, prefix)
		}
	}
	expect("* OK")
	fmt.Fprintf(c, "a LOGIN alice %s\r\n", ap.Secret)
	expect("a OK")
	fmt.Fprint(c, "b NOOP\r\nc LOGOUT\r\n")
	rest, err := io.ReadAll(br)
	if err != nil || !strings.Contains(string(rest), "b OK NOOP done") || !strings.HasSuffix(string(rest), "c OK LOGOUT done\r\n") {
		t.Fatalf("relayed session: got %q (%v), want the upstream's NOOP and LOGOUT answers", rest, err)
	}
	// The relay reports its last bytes just before the session ends.
	if !waitFor(2*time.Second, func() bool { return d.Registry().Count("") == 0 }) {
		t.Fatal("session still registered after LOGOUT")
	}

	for _, tc := range []struct {
		name   string
		labels map[string]string
		want   float64
	}{
		// Exactly what passed after the login (its answer is Legate's own).
		{"legate_relayed_bytes_total", map[string]string{"protocol": "imap", "direction": "to_client"}, float64(len(rest))},
		{"legate_relayed_bytes_total", map[string]string{"protocol": "imap", "direction": "to_upstream"}, float64(len("b NOOP\r\nc LOGOUT\r\n"))},
		{"legate_upstream_connect_seconds", map[string]string{"protocol": "imap"}, 1}, // sample count
		{"legate_upstream_errors_total", map[string]string{"protocol": "imap"}, 0},
	} {
		got, ok := scrape(t, d, tc.name, tc.labels)
		if !ok || got != tc.want {
			t.Errorf("%s %v: got %v (found %v), want %v", tc.name, tc.labels, got, ok, tc.want)
		}
	}
	if got, _ := scrape(t, d, "legate_relayed_bytes_total", map[string]string{"protocol": "imap", "direction": "to_client"}); got <= 0 {
		t.Errorf(`legate_relayed_bytes_total{protocol="imap",direction="to_client"}: got %v, want > 0`, got)
	}
}

package ldap_test

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/legate-proxy/legate/internal/auth"
	"github.com/legate-proxy/legate/internal/directory"
	"github.com/legate-proxy/legate/internal/session"
	"github.com/legate-proxy/legate/internal/testenv"
	"github.com/legate-proxy/legate/internal/upstream"
	"github.com/legate-proxy/legate/policy"
	ldapproxy "github.com/legate-proxy/legate/proxy/ldap"
	"github.com/legate-proxy/legate/store"
	"github.com/legate-proxy/legate/store/bolt"
)

// env is Legate's LDAP front-end in front of a real slapd, with the LDAP
// directory (cached) and a real bbolt store behind the login service.
type env struct {
	slapd     *testenv.Slapd
	certs     *testenv.Certs
	store     *bolt.Store
	sessions  *session.Registry
	srv       *ldapproxy.Server
	addr      string // plain LDAP with StartTLS
	ldapsAddr string
	pwDir     string
}

type envOptions struct {
	extraEntries int
	cacheTTL     time.Duration
	mutate       func(*ldapproxy.Options)
}

// tlogWriter sends slog output to the test log.
type tlogWriter struct{ t testing.TB }

func (w tlogWriter) Write(b []byte) (int, error) {
	w.t.Log(strings.TrimRight(string(b), "\n"))
	return len(b), nil
}

func testLogger(t testing.TB) *slog.Logger {
	return slog.New(slog.NewTextHandler(tlogWriter{t}, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

func newEnv(t *testing.T, o envOptions) *env {
	t.Helper()
	testenv.Require(t, "slapd", "slapadd", "ldapsearch", "ldapwhoami", "ldapcompare")
	s := testenv.StartSlapd(t, testenv.SlapdOptions{ExtraEntries: o.extraEntries})
	ctx := context.Background()
	up := &upstream.Config{Address: s.Addr, Mode: upstream.ModeSTARTTLS, TLS: s.TLS.Clone(),
		MasterUser: s.ServiceDN, MasterPassword: s.ServicePassword, DialTimeout: 3 * time.Second, IOTimeout: 10 * time.Second}
	dir, err := directory.NewLDAP(directory.LDAPOptions{Upstream: up, BaseDN: "ou=people," + s.BaseDN,
		AdminGroups: []string{s.GroupDN("admins")}})
	if err != nil {
		t.Fatal(err)
	}
	st, err := bolt.Open(ctx, bolt.Options{Path: filepath.Join(t.TempDir(), "legate.db")})
	if err != nil {
		t.Fatal(err)
	}
	pol := policy.Default() // require_tls, revoke_on_password_change
	svc := auth.New(auth.Options{Store: st, Directory: directory.NewCached(dir, o.cacheTTL, nil), Policy: &pol, Logger: testLogger(t)})
	e := &env{slapd: s, certs: testenv.NewCerts(t), store: st, sessions: session.New(), pwDir: t.TempDir()}
	opts := ldapproxy.Options{Auth: svc, Sessions: e.sessions, Upstream: up, TLS: e.certs.ServerTLS,
		Logger: testLogger(t), PoolSize: 2}
	if o.mutate != nil {
		o.mutate(&opts)
	}
	e.srv = ldapproxy.NewServer(opts)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	lns, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	e.addr, e.ldapsAddr = ln.Addr().String(), lns.Addr().String()
	errc := make(chan error, 2)
	go func() { errc <- e.srv.Serve(ln) }()
	go func() { errc <- e.srv.ServeTLS(lns) }()
	t.Cleanup(func() {
		e.srv.Close()
		for range 2 {
			if err := <-errc; !errors.Is(err, ldapproxy.ErrServerClosed) {
				t.Errorf("Serve returned %v, want ErrServerClosed", err)
			}
		}
		dir.Close()
		st.Close()
	})
	return e
}

// appPassword creates an app password and writes it to a 0600 file for
// the -y option of ldap-utils; it returns the file and the record's id.
func (e *env) appPassword(t *testing.T, user, name string) (file, id string) {
	t.Helper()
	rec, secret, err := e.store.Create(context.Background(), store.CreateRequest{User: user, Name: name})
	if err != nil {
		t.Fatalf("create app password for %s: %v", user, err)
	}
	return e.secretFile(t, secret), rec.ID
}

func (e *env) secretFile(t *testing.T, secret string) string {
	t.Helper()
	f, err := os.CreateTemp(e.pwDir, "pw")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := io.WriteString(f, secret); err != nil { // -y takes the whole file: no newline
		t.Fatal(err)
	}
	f.Close()
	return f.Name()
}

// run runs an ldap-utils command against Legate and returns its output and
// exit code.
func (e *env) run(t *testing.T, bin string, args ...string) (string, int) {
	t.Helper()
	path, err := testenv.LookPath(bin)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, path, args...)
	cmd.Env = append(os.Environ(), "LDAPCONF=/dev/null", "LDAPRC=/dev/null", "LDAPTLS_CACERT="+e.certs.CAFile, "LDAPTLS_REQCERT=demand")
	out, err := cmd.CombinedOutput()
	code := 0
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		code = ee.ExitCode()
	} else if err != nil {
		t.Fatalf("%s: %v", bin, err)
	}
	return string(out), code
}

func (e *env) url() string      { return "ldap://" + e.addr }
func (e *env) ldapsURL() string { return "ldaps://" + e.ldapsAddr }

func loopback() netip.Addr { return netip.MustParseAddr("127.0.0.1") }

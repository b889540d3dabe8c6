// Package oauthserver runs a real OAuth 2.0 authorization server for tests
// of upstream token logins: zitadel/oidc's op, serving the client
// credentials grant (with a client secret or a private-key JWT client
// assertion carrying x5t, as Microsoft Entra takes certificate
// credentials), the JWT bearer grant where a service account names the
// user as subject (Google's domain-wide delegation), and RFC 7662
// introspection for the mail server that checks the tokens. It listens on
// 127.0.0.1 only and counts the tokens it issues.
package oauthserver

import (
	"bytes"
	"context"
	"crypto"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha1"
	"crypto/sha256"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"errors"
	"io"
	"math/big"
	"net"
	"net/http"
	"net/url"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/zitadel/oidc/v3/pkg/oidc"
	"github.com/zitadel/oidc/v3/pkg/op"

	"github.com/legate-proxy/legate/internal/opstore"
)

// Options configure Start.
type Options struct {
	// TokenLifetime is how long issued tokens live; zero means 1h.
	TokenLifetime time.Duration
}

// Server is a running authorization server.
type Server struct {
	// Issuer is the server's base URL (http://127.0.0.1:port).
	Issuer string
	// TokenURL and IntrospectionURL are its endpoints.
	TokenURL         string
	IntrospectionURL string

	st       *storage
	lifetime atomic.Int64
	down     atomic.Bool
	srv      *http.Server
}

// provider lets a service account name another subject in a JWT bearer
// assertion (op's default insists on sub == iss).
type provider struct {
	*op.Provider
	st *storage
}

func (p provider) JWTProfileVerifier(ctx context.Context) *op.JWTProfileVerifier {
	return op.NewJWTProfileVerifier(p.st, op.IssuerFromContext(ctx), time.Hour, time.Second, op.SubjectCheck(p.st.checkSubject))
}

// Start starts a server on a free loopback port; it stops when the test
// ends.
func Start(t testing.TB, o Options) *Server {
	t.Helper()
	keys, err := opstore.NewKeys()
	if err != nil {
		t.Fatalf("oauthserver: %v", err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("oauthserver: %v", err)
	}
	s := &Server{Issuer: "http://" + ln.Addr().String()}
	s.SetTokenLifetime(o.TokenLifetime)
	s.st = &storage{
		Keys:     keys,
		lifetime: func() time.Duration { return time.Duration(s.lifetime.Load()) },
		clients:  map[string]*client{},
		tokens:   map[string]*token{},
		issued:   map[[2]string]int{},
	}
	var ck [32]byte
	_, _ = rand.Read(ck[:])
	cfg := &op.Config{CryptoKey: ck, CryptoKeyId: "test", AuthMethodPost: true}
	p, err := op.NewProvider(cfg, s.st, op.StaticIssuer(s.Issuer), op.WithAllowInsecure())
	if err != nil {
		t.Fatalf("oauthserver: %v", err)
	}
	s.TokenURL = p.TokenEndpoint().Absolute(s.Issuer)
	s.IntrospectionURL = p.IntrospectionEndpoint().Absolute(s.Issuer)
	router := op.CreateRouter(provider{Provider: p, st: s.st})
	tokenPath := p.TokenEndpoint().Relative()
	s.srv = &http.Server{
		Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if r.URL.Path == tokenPath {
				if s.down.Load() {
					http.Error(w, "token endpoint down for the test", http.StatusServiceUnavailable)
					return
				}
				if err := s.clientAssertion(r); err != nil {
					w.Header().Set("Content-Type", "application/json")
					w.WriteHeader(http.StatusUnauthorized)
					_ = json.NewEncoder(w).Encode(map[string]string{"error": "invalid_client", "error_description": err.Error()})
					return
				}
			}
			router.ServeHTTP(w, r)
		}),
		ReadHeaderTimeout: 5 * time.Second,
	}
	go func() { _ = s.srv.Serve(ln) }()
	t.Cleanup(func() { _ = s.srv.Close() })
	return s
}

// SetTokenLifetime changes the lifetime of tokens issued from now on; zero
// means 1h.
func (s *Server) SetTokenLifetime(d time.Duration) {
	if d <= 0 {
		d = time.Hour
	}
	s.lifetime.Store(int64(d))
}

// SetTokenEndpointDown makes the token endpoint answer 503 (introspection
// keeps working, as when only the authorization server's token service is
// out).
func (s *Server) SetTokenEndpointDown(down bool) { s.down.Store(down) }

// AddApp registers an app for the client credentials grant with a secret.
func (s *Server) AddApp(id, secret string) {
	s.put(&client{id: id, secret: secret, grants: []oidc.GrantType{oidc.GrantTypeClientCredentials}})
}

// SetSecret changes a client's secret (a revoked or rotated secret).
func (s *Server) SetSecret(id, secret string) {
	s.st.mu.Lock()
	defer s.st.mu.Unlock()
	if c, ok := s.st.clients[id]; ok {
		c.secret = secret
	}
}

// AddResourceServer registers a client that may introspect tokens (the
// mail server), authenticating with HTTP basic auth.
func (s *Server) AddResourceServer(id, secret string) {
	s.put(&client{id: id, secret: secret})
}

// AddCertApp registers an app that authenticates with a private-key JWT
// client assertion and returns its key and certificate, PEM encoded.
func (s *Server) AddCertApp(t testing.TB, id string) (keyPEM, certPEM []byte) {
	t.Helper()
	k, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: id},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour)}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &k.PublicKey, k)
	if err != nil {
		t.Fatal(err)
	}
	s1, s256 := sha1.Sum(der), sha256.Sum256(der)
	s.put(&client{id: id, secret: rand.Text(), grants: []oidc.GrantType{oidc.GrantTypeClientCredentials},
		certPub: &k.PublicKey, certX5T: base64.RawURLEncoding.EncodeToString(s1[:]),
		certX5TS: base64.RawURLEncoding.EncodeToString(s256[:])})
	keyPEM = pem.EncodeToMemory(&pem.Block{Type: "RSA PRIVATE KEY", Bytes: x509.MarshalPKCS1PrivateKey(k)})
	certPEM = pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
	return keyPEM, certPEM
}

// AddServiceAccount registers a service account that may use the JWT
// bearer grant for the subjects mayAct allows, and returns its key file in
// Google's service-account JSON format (token_uri is this server).
func (s *Server) AddServiceAccount(t testing.TB, email string, mayAct func(subject string) bool) []byte {
	t.Helper()
	k, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	kid := rand.Text()[:12]
	s.put(&client{id: email, saKeyID: kid, saPub: &k.PublicKey, mayAct: mayAct})
	der, err := x509.MarshalPKCS8PrivateKey(k)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := json.Marshal(map[string]string{
		"type":           "service_account",
		"client_email":   email,
		"private_key_id": kid,
		"private_key":    string(pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der})),
		"token_uri":      s.TokenURL,
	})
	return b
}

// Issued returns how many tokens were issued to client for subject (for
// app-only tokens the subject is the client).
func (s *Server) Issued(clientID, subject string) int {
	s.st.mu.Lock()
	defer s.st.mu.Unlock()
	return s.st.issued[[2]string{clientID, subject}]
}

// IssuedTotal returns how many tokens were issued in all.
func (s *Server) IssuedTotal() int {
	s.st.mu.Lock()
	defer s.st.mu.Unlock()
	n := 0
	for _, v := range s.st.issued {
		n += v
	}
	return n
}

func (s *Server) put(c *client) {
	s.st.mu.Lock()
	defer s.st.mu.Unlock()
	s.st.clients[c.id] = c
}

// clientAssertion checks an RFC 7523 client assertion on a client
// credentials request (op serves that grant with secrets only): RS256
// signed by the certificate named by x5t, iss = sub = client, aud this
// server, not expired. A valid one is replaced by the client's internal
// secret before op sees the request.
func (s *Server) clientAssertion(r *http.Request) error {
	if r.Method != http.MethodPost {
		return nil
	}
	body, err := io.ReadAll(io.LimitReader(r.Body, 64<<10))
	if err != nil {
		return err
	}
	r.Body = io.NopCloser(bytes.NewReader(body))
	form, err := url.ParseQuery(string(body))
	if err != nil || form.Get("client_assertion_type") == "" {
		return nil
	}
	if form.Get("client_assertion_type") != oidc.ClientAssertionTypeJWTAssertion {
		return errors.New("unsupported client_assertion_type")
	}
	parts := strings.Split(form.Get("client_assertion"), ".")
	if len(parts) != 3 {
		return errors.New("malformed assertion")
	}
	var hdr struct {
		Alg  string `json:"alg"`
		X5T  string `json:"x5t"`
		X5TS string `json:"x5t#S256"`
	}
	var claims struct {
		Iss string `json:"iss"`
		Sub string `json:"sub"`
		Aud string `json:"aud"`
		Exp int64  `json:"exp"`
	}
	if err := decodeSeg(parts[0], &hdr); err != nil {
		return err
	}
	if err := decodeSeg(parts[1], &claims); err != nil {
		return err
	}
	c, ok := s.st.getClient(claims.Iss)
	switch {
	case !ok || c.certPub == nil:
		return errors.New("unknown certificate client")
	case hdr.Alg != "RS256":
		return errors.New("alg must be RS256")
	case hdr.X5T != c.certX5T || (hdr.X5TS != "" && hdr.X5TS != c.certX5TS):
		return errors.New("x5t does not match the registered certificate")
	case claims.Sub != claims.Iss:
		return errors.New("sub must equal iss")
	case claims.Aud != s.TokenURL && claims.Aud != s.Issuer:
		return errors.New("wrong aud")
	case time.Unix(claims.Exp, 0).Before(time.Now()):
		return errors.New("assertion expired")
	}
	sig, err := base64.RawURLEncoding.DecodeString(parts[2])
	if err != nil {
		return err
	}
	sum := sha256.Sum256([]byte(parts[0] + "." + parts[1]))
	if err := rsa.VerifyPKCS1v15(c.certPub, crypto.SHA256, sum[:], sig); err != nil {
		return errors.New("bad signature")
	}
	form.Del("client_assertion")
	form.Del("client_assertion_type")
	form.Set("client_id", c.id)
	form.Set("client_secret", c.secret)
	enc := form.Encode()
	r.Body = io.NopCloser(strings.NewReader(enc))
	r.ContentLength = int64(len(enc))
	r.Header.Del("Content-Length")
	return nil
}

func decodeSeg(seg string, v any) error {
	b, err := base64.RawURLEncoding.DecodeString(seg)
	if err != nil {
		return errors.New("malformed assertion")
	}
	if err := json.Unmarshal(b, v); err != nil {
		return errors.New("malformed assertion")
	}
	return nil
}

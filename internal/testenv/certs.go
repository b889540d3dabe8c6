package testenv

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"testing"
	"time"
)

// Certs is a throw-away PKI for one test: a self-signed CA and a server
// certificate for localhost, 127.0.0.1 and ::1 signed by it (ECDSA P-256).
type Certs struct {
	// CAFile is the CA certificate (PEM), for clients and for upstream
	// "ca_file" settings.
	CAFile string
	// CertFile is the server certificate (PEM), leaf only.
	CertFile string
	// KeyFile is the server's private key (PKCS#8 PEM), mode 0600 and
	// owned by the test process. Servers started as root (Dovecot, slapd)
	// read it before dropping privileges.
	KeyFile string
	// CAPool holds the CA certificate.
	CAPool *x509.CertPool
	// ServerTLS serves the server certificate, for in-process servers.
	ServerTLS *tls.Config
	// ClientTLS trusts only the CA and expects ServerName "localhost".
	// Clone it before changing it.
	ClientTLS *tls.Config
}

// NewCerts creates a CA and a server certificate and writes them into a
// new directory from TempDir. Files are removed when the test ends.
func NewCerts(t testing.TB) *Certs {
	t.Helper()
	dir := TempDir(t)
	now := time.Now()

	caKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatalf("testenv: certs: %v", err)
	}
	caTmpl := &x509.Certificate{
		SerialNumber:          serial(t),
		Subject:               pkix.Name{CommonName: "Legate Test CA", Organization: []string{"Legate tests"}},
		NotBefore:             now.Add(-time.Hour),
		NotAfter:              now.Add(24 * time.Hour),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign | x509.KeyUsageDigitalSignature,
		BasicConstraintsValid: true,
		IsCA:                  true,
		MaxPathLenZero:        true,
	}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		t.Fatalf("testenv: certs: CA: %v", err)
	}
	caCert, err := x509.ParseCertificate(caDER)
	if err != nil {
		t.Fatalf("testenv: certs: CA: %v", err)
	}

	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatalf("testenv: certs: %v", err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: serial(t),
		Subject:      pkix.Name{CommonName: "localhost"},
		NotBefore:    now.Add(-time.Hour),
		NotAfter:     now.Add(24 * time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		DNSNames:     []string{"localhost"},
		IPAddresses:  []net.IP{net.IPv4(127, 0, 0, 1), net.IPv6loopback},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, caCert, &key.PublicKey, caKey)
	if err != nil {
		t.Fatalf("testenv: certs: server: %v", err)
	}
	keyDER, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		t.Fatalf("testenv: certs: key: %v", err)
	}

	c := &Certs{
		CAFile:   filepath.Join(dir, "ca.pem"),
		CertFile: filepath.Join(dir, "server.pem"),
		KeyFile:  filepath.Join(dir, "server.key"),
	}
	writePEM(t, c.CAFile, "CERTIFICATE", caDER, 0o644)
	writePEM(t, c.CertFile, "CERTIFICATE", der, 0o644)
	writePEM(t, c.KeyFile, "PRIVATE KEY", keyDER, 0o600)

	c.CAPool = x509.NewCertPool()
	c.CAPool.AddCert(caCert)
	pair := tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}
	c.ServerTLS = &tls.Config{Certificates: []tls.Certificate{pair}, MinVersion: tls.VersionTLS12}
	c.ClientTLS = &tls.Config{RootCAs: c.CAPool, ServerName: "localhost", MinVersion: tls.VersionTLS12}
	return c
}

func serial(t testing.TB) *big.Int {
	t.Helper()
	n, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
	if err != nil {
		t.Fatalf("testenv: certs: serial: %v", err)
	}
	return n
}

func writePEM(t testing.TB, path, typ string, der []byte, mode os.FileMode) {
	t.Helper()
	b := pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der})
	if err := os.WriteFile(path, b, mode); err != nil {
		t.Fatalf("testenv: certs: %v", err)
	}
}

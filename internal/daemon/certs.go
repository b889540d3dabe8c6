package daemon

import (
	"crypto/tls"
	"fmt"
	"sync/atomic"

	"github.com/legate-proxy/legate/internal/config"
	"github.com/legate-proxy/legate/internal/throttle"
)

// certHolder serves the current certificate to every TLS listener; a reload
// swaps it so new connections get the new one without a restart.
type certHolder struct {
	cert atomic.Pointer[tls.Certificate]
}

func newCertHolder(certFile, keyFile string) (*certHolder, error) {
	h := &certHolder{}
	return h, h.load(certFile, keyFile)
}

func (h *certHolder) load(certFile, keyFile string) error {
	c, err := tls.LoadX509KeyPair(certFile, keyFile)
	if err != nil {
		return fmt.Errorf("tls: %w", err)
	}
	h.cert.Store(&c)
	return nil
}

// serverConfig returns the listeners' TLS configuration: TLS 1.2 at least,
// Go's modern cipher defaults, the current certificate.
func (h *certHolder) serverConfig() *tls.Config {
	if h == nil {
		return nil
	}
	return &tls.Config{
		MinVersion: tls.VersionTLS12,
		GetCertificate: func(*tls.ClientHelloInfo) (*tls.Certificate, error) {
			return h.cert.Load(), nil
		},
	}
}

func throttleLimits(cfg *config.Config) throttle.Limits {
	return throttle.Limits{
		MaxFailuresPerIP:   cfg.Throttle.MaxFailuresPerIP,
		MaxFailuresPerUser: cfg.Throttle.MaxFailuresPerUser,
		Window:             cfg.Throttle.Window.Std(),
	}
}

func newThrottle(cfg *config.Config) *throttle.Throttle {
	return throttle.New(throttle.Options{Limits: throttleLimits(cfg)})
}

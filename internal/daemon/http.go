package daemon

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/legate-proxy/legate/internal/config"
	"github.com/legate-proxy/legate/internal/metrics"
	"github.com/legate-proxy/legate/internal/upstream"
	"github.com/legate-proxy/legate/store"
)

// readyTimeout bounds each check of /readyz.
const readyTimeout = 3 * time.Second

// newMetrics builds the daemon's metrics over its registry and store.
func (d *Daemon) newMetrics() *metrics.Metrics {
	o := metrics.Options{
		Sessions:     d.registry.Count,
		AppPasswords: metrics.CountAppPasswords(d.store),
	}
	if a, ok := d.store.(store.AuditStats); ok { // before InstrumentStore wraps it
		o.AuditStats = a.AuditStats
	}
	return metrics.New(o)
}

// Metrics returns the daemon's metrics.
func (d *Daemon) Metrics() *metrics.Metrics { return d.metrics }

// HTTPAddr returns the bound address of listen.http, or nil.
func (d *Daemon) HTTPAddr() net.Addr { return d.Addr("http") }

// buildHTTP builds listen.http: /metrics, /healthz, /readyz. It stays out
// of the drain, so that /readyz answers 503 while the daemon drains, and
// gets 2s to finish its requests at Close.
func buildHTTP(d *Daemon, _ *config.Config, _ *upstreams) (built, error) {
	srv := httpFront{&http.Server{
		Handler:           d.httpHandler(),
		ReadHeaderTimeout: 10 * time.Second,
		ReadTimeout:       30 * time.Second,
		WriteTimeout:      30 * time.Second,
		IdleTimeout:       2 * time.Minute,
		MaxHeaderBytes:    16 << 10,
	}}
	return built{srv: srv, serve: srv.Serve, closeGrace: 2 * time.Second}, nil
}

func (d *Daemon) httpHandler() http.Handler {
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", d.metrics.Handler())
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) {
		plain(w, http.StatusOK, "ok\n")
	})
	mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, r *http.Request) {
		if failed := d.notReady(r.Context()); len(failed) > 0 {
			plain(w, http.StatusServiceUnavailable, "not ready:\n"+strings.Join(failed, "\n")+"\n")
			return
		}
		plain(w, http.StatusOK, "ok\n")
	})
	return mux
}

func plain(w http.ResponseWriter, code int, body string) {
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(code)
	fmt.Fprint(w, body)
}

// notReady runs the readiness checks at once and returns one line per
// failure, sorted: draining, the store (a cheap read), and every configured
// upstream (a TCP connect; with implicit TLS, the handshake too).
func (d *Daemon) notReady(ctx context.Context) []string {
	if d.draining.Load() {
		return []string{"draining: shutting down"}
	}
	ctx, cancel := context.WithTimeout(ctx, readyTimeout)
	defer cancel()
	var (
		mu     sync.Mutex
		failed []string
		wg     sync.WaitGroup
	)
	fail := func(what string, err error) {
		mu.Lock()
		failed = append(failed, fmt.Sprintf("%s: %v", what, err))
		mu.Unlock()
	}
	wg.Go(func() {
		if _, err := d.store.List(ctx, ""); err != nil {
			fail("store", err)
		}
	})
	if ups := d.rt.Load().ups; ups != nil {
		for _, u := range []struct {
			key string
			cfg *upstream.Config
		}{{"upstream.imap", ups.IMAP}, {"upstream.smtp", ups.SMTP}, {"upstream.ldap", ups.LDAP}} {
			if u.cfg == nil {
				continue
			}
			if o := u.cfg.OAuth; o != nil {
				wg.Go(func() {
					if err := tokenReady(ctx, o); err != nil {
						fail(u.key+".oauth2", err)
					}
				})
			}
			wg.Go(func() {
				conn, err := u.cfg.Dial(ctx)
				if err != nil {
					fail(u.key, err)
					return
				}
				conn.Close()
			})
		}
	}
	wg.Wait()
	sort.Strings(failed)
	return failed
}

package demo

import (
	"context"
	"crypto/rand"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"strconv"
	"sync"
	"time"

	"github.com/legate-proxy/legate/internal/config"
	"github.com/legate-proxy/legate/internal/control"
	"github.com/legate-proxy/legate/internal/portal"
	"github.com/legate-proxy/legate/internal/portal/demoidp"
)

// demoPortal is the self-service page with the demo-only OpenID provider.
// The provider exists only here: `legate serve` has no way to start it.
type demoPortal struct {
	URL, IdPURL string
	Code        string // the demo user's one-time sign-in code
	servers     []*http.Server
	wg          sync.WaitGroup
}

// startPortal serves the portal on addr and the demo provider on a free
// loopback port. settings tells users how to reach the demo's listeners.
func startPortal(addr string, ctl *control.Service, settings config.ClientSettings, log *slog.Logger) (*demoPortal, error) {
	portalLn, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("demo: portal: %w", err)
	}
	idpLn, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		portalLn.Close()
		return nil, fmt.Errorf("demo: identity provider: %w", err)
	}
	dp := &demoPortal{URL: "http://" + portalLn.Addr().String(), IdPURL: "http://" + idpLn.Addr().String()}
	secret := randomHex(16)
	idp, err := demoidp.New(demoidp.Options{Issuer: dp.IdPURL, ClientID: "legate-demo", ClientSecret: secret,
		RedirectURIs: []string{dp.URL + "/callback"}, Users: []demoidp.User{{Username: demoUser, Email: demoAddress}},
		Logger: log})
	if err != nil {
		portalLn.Close()
		idpLn.Close()
		return nil, err
	}
	dp.Code = idp.Code(demoUser)
	pc := config.Default().Portal
	pc.ExternalURL = dp.URL
	pc.OIDC.Issuer = dp.IdPURL
	pc.OIDC.ClientID = "legate-demo"
	pc.ClientSettings = settings
	key := make([]byte, portal.KeySize)
	_, _ = rand.Read(key)
	p, err := portal.New(portal.Options{Control: ctl, Config: pc, ExternalURL: dp.URL, SessionKey: key,
		ClientSecret: secret, Logger: log})
	if err != nil {
		portalLn.Close()
		idpLn.Close()
		return nil, err
	}
	for _, s := range []struct {
		ln net.Listener
		h  http.Handler
	}{{portalLn, p}, {idpLn, idp}} {
		srv := &http.Server{Handler: s.h, ReadHeaderTimeout: 10 * time.Second}
		dp.servers = append(dp.servers, srv)
		dp.wg.Add(1)
		go func() {
			defer dp.wg.Done()
			_ = srv.Serve(s.ln)
		}()
	}
	return dp, nil
}

func (dp *demoPortal) close() {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	for _, s := range dp.servers {
		if s.Shutdown(ctx) != nil {
			s.Close()
		}
	}
	dp.wg.Wait()
}

// clientSetting describes one demo listener for the portal's "how to set
// up your client" table.
func clientSetting(a net.Addr) config.ClientSetting {
	if a == nil {
		return config.ClientSetting{}
	}
	host, port, _ := net.SplitHostPort(a.String())
	n, _ := strconv.Atoi(port)
	return config.ClientSetting{Host: host, Port: n, Security: "none"}
}

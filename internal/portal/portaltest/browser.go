package portaltest

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
	"github.com/legate-proxy/legate/internal/testenv"
)

// Browser is a headless Chromium driven with chromedp, with a fresh
// profile. Tabs made with NewTab share its process but not its cookies.
type Browser struct {
	t   testing.TB
	ctx context.Context
	env *Env
	// Shots is where Screenshot writes (a temp dir of the test).
	Shots string
}

// NewBrowser starts Chromium (skipping the test when it is missing,
// failing when CI=true). It is stopped by t.Cleanup.
func NewBrowser(t testing.TB, e *Env) *Browser {
	t.Helper()
	testenv.Require(t, "chromium")
	path, _ := testenv.LookPath("chromium")
	opts := []chromedp.ExecAllocatorOption{
		chromedp.ExecPath(path),
		chromedp.Headless, chromedp.NoSandbox, chromedp.DisableGPU, chromedp.NoFirstRun,
		chromedp.Flag("disable-quic", true),
		chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true),
		chromedp.Flag("disable-dev-shm-usage", true),
		chromedp.Flag("no-default-browser-check", true),
		chromedp.UserDataDir(t.TempDir()),
		chromedp.WindowSize(1000, 900),
	}
	if e != nil && strings.HasPrefix(e.URL, "https:") {
		opts = append(opts, chromedp.Flag("ignore-certificate-errors", true))
	}
	actx, cancelAlloc := chromedp.NewExecAllocator(context.Background(), opts...)
	ctx, cancel := chromedp.NewContext(actx)
	t.Cleanup(func() { cancel(); cancelAlloc() })
	if err := chromedp.Do(ctx); err != nil { // start the browser
		t.Fatalf("portaltest: start chromium: %v", err)
	}
	return &Browser{t: t, ctx: ctx, env: e, Shots: t.TempDir()}
}

// NewTab returns a browser tab in a new browser context (its own cookies,
// as a second person on another machine) that reports to t.
func (b *Browser) NewTab(t testing.TB) *Browser {
	ctx, cancel := chromedp.NewContext(b.ctx, chromedp.WithNewBrowserContext())
	t.Cleanup(cancel)
	if err := chromedp.Do(ctx); err != nil {
		t.Fatalf("portaltest: new tab: %v", err)
	}
	return &Browser{t: t, ctx: ctx, env: b.env, Shots: b.Shots}
}

// Do runs actions with a 30s limit, failing the test on error.
func (b *Browser) Do(what string, steps ...chromedp.Action[chromedp.Void]) {
	b.t.Helper()
	ctx, cancel := context.WithTimeout(b.ctx, 30*time.Second)
	defer cancel()
	if err := chromedp.Do(ctx, steps...); err != nil {
		loc, _ := chromedp.Run(b.ctx, chromedp.Location())
		b.t.Fatalf("portaltest: browser: %s: %v (page %s)", what, err, loc)
	}
}

// Text returns the text of the first element matching a CSS selector.
func (b *Browser) Text(css string) string {
	b.t.Helper()
	ctx, cancel := context.WithTimeout(b.ctx, 30*time.Second)
	defer cancel()
	s, err := chromedp.Run(ctx, chromedp.Text(chromedp.CSS(css)))
	if err != nil {
		b.t.Fatalf("portaltest: browser: text of %s: %v", css, err)
	}
	return s
}

// Eval evaluates a JavaScript expression that returns a string.
func (b *Browser) Eval(js string) string {
	b.t.Helper()
	s, err := chromedp.Run(b.ctx, chromedp.Evaluate[string](js))
	if err != nil {
		b.t.Fatalf("portaltest: browser: eval: %v", err)
	}
	return s
}

// Location returns the URL of the page.
func (b *Browser) Location() string {
	b.t.Helper()
	s, err := chromedp.Run(b.ctx, chromedp.Location())
	if err != nil {
		b.t.Fatalf("portaltest: browser: location: %v", err)
	}
	return s
}

// SignIn opens the portal, which sends the browser to the provider, fills
// in the user's name and code, and waits for the portal's page (or a
// refusal page) to load.
func (b *Browser) SignIn(user string) {
	b.t.Helper()
	b.SignInFrom(b.env.URL+"/", user)
}

// SignInFrom is SignIn from any portal URL that leads to the provider.
func (b *Browser) SignInFrom(url, user string) {
	b.t.Helper()
	b.Do("sign in as "+user,
		chromedp.Navigate(url),
		chromedp.WaitVisible(chromedp.ID("username")),
		chromedp.SendKeys(chromedp.ID("username"), user),
		chromedp.SendKeys(chromedp.ID("code"), b.env.IdP.Code(user)),
		chromedp.Click(chromedp.ID("signin")),
		chromedp.WaitVisible(chromedp.CSS("header.bar")), // the portal's page
	)
}

// Create fills in the create form with a name and submits it. It returns
// the secret the page shows ("" if it shows none, e.g. a refusal).
func (b *Browser) Create(name string) string {
	b.t.Helper()
	b.Do("create "+name,
		chromedp.Navigate(b.env.URL+"/"),
		chromedp.WaitVisible(chromedp.ID("name")),
		chromedp.SendKeys(chromedp.ID("name"), name),
		chromedp.Click(chromedp.ID("create-btn")),
		chromedp.WaitVisible(chromedp.CSS("#secret, #error")),
	)
	return b.Eval(`(document.getElementById("secret") || {getAttribute: () => ""}).getAttribute("data-secret") || ""`)
}

// Revoke clicks the Revoke button of the app password with that name and
// waits for the list to come back.
func (b *Browser) Revoke(name string) {
	b.t.Helper()
	sel := fmt.Sprintf(`li.pw[data-name=%q] button`, name)
	b.Do("revoke "+name,
		chromedp.Navigate(b.env.URL+"/"),
		chromedp.WaitVisible(chromedp.CSS(sel)),
		chromedp.Click(chromedp.CSS(sel)),
		chromedp.WaitVisible(chromedp.CSS(".banner-ok")),
	)
}

// Screenshot saves a full-page PNG under Shots and returns its path.
func (b *Browser) Screenshot(name string) string {
	b.t.Helper()
	buf, err := chromedp.Run(b.ctx, chromedp.FullScreenshot(100))
	if err != nil {
		b.t.Fatalf("portaltest: screenshot: %v", err)
	}
	path := filepath.Join(b.Shots, name+".png")
	if err := os.WriteFile(path, buf, 0o644); err != nil {
		b.t.Fatal(err)
	}
	b.t.Logf("screenshot %s", path)
	return path
}

// Lifecycle is the whole life of one app password the way a person goes
// through it: sign in as user, create an app password called name, read
// it from the page, check that use(secret) succeeds, revoke it on the
// page, check that use(secret) now fails. It returns the secret.
//
// use is the real login: the login service, or an IMAP client through the
// proxy.
func (b *Browser) Lifecycle(user, name string, use func(secret string) error) string {
	b.t.Helper()
	b.SignIn(user)
	secret := b.Create(name)
	if secret == "" {
		b.t.Fatalf("portaltest: lifecycle: no password shown after create; page says %q", b.Text("main"))
	}
	if err := use(secret); err != nil {
		b.t.Fatalf("portaltest: lifecycle: login with the new password: got %v, want success", err)
	}
	b.Revoke(name)
	if err := use(secret); err == nil {
		b.t.Fatalf("portaltest: lifecycle: login after revoke: got success, want failure")
	}
	return secret
}

package portal_test

import (
	"errors"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
	"github.com/legate-proxy/legate/internal/control"
	"github.com/legate-proxy/legate/internal/portal/portaltest"
)

// TestBrowserLifecycle signs in with a real browser at a real provider,
// creates "Laptop", logs in with it through the login service, revokes it
// on the page and sees the next login fail. It saves screenshots (and
// copies them to docs/ when UPDATE_SCREENSHOTS=1).
func TestBrowserLifecycle(t *testing.T) {
	e := start(t, portaltest.Options{})
	b := portaltest.NewBrowser(t, e.Env)

	// Two older devices, so that the list has something to show.
	ctx := t.Context()
	if _, err := e.backend.Local.CreateAppPassword(ctx, control.CreateArgs{User: "alice", Name: "Office printer",
		Scope: []string{"smtp"}, Networks: []netip.Prefix{netip.MustParsePrefix("192.0.2.0/24")}}); err != nil {
		t.Fatal(err)
	}
	old, err := e.backend.Local.CreateAppPassword(ctx, control.CreateArgs{User: "alice", Name: "Outlook 2010", ExpiresIn: 90 * 24 * time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	if !e.imapLogin("alice", old.Secret) {
		t.Fatal("login with the Outlook password: got deny, want allow")
	}
	use := func(secret string) error {
		if !e.imapLogin("alice", secret) {
			return errors.New("login refused")
		}
		return nil
	}

	b.SignIn("alice")
	if got := b.Text("header .user"); got != "alice" {
		t.Fatalf("signed-in user: got %q, want alice", got)
	}
	secret := b.Create("Laptop")
	if len(secret) != 19 {
		t.Fatalf("secret on the page: got %q, want XXXX-XXXX-XXXX-XXXX", secret)
	}
	if loc := b.Location(); strings.Contains(loc, secret) || !strings.HasSuffix(loc, "/passwords") {
		t.Errorf("page URL after create: got %s, want .../passwords without the secret", loc)
	}
	groups := b.Eval(`Array.from(document.querySelectorAll("#secret .grp")).map(e => e.textContent).join("|")`)
	if want := strings.ReplaceAll(secret, "-", "|"); groups != want {
		t.Errorf("groups shown: got %q, want %q", groups, want)
	}
	if got := b.Text("#settings"); !strings.Contains(got, "mail.example.com") || !strings.Contains(got, "993") {
		t.Errorf("client settings: got %q, want mail.example.com and 993", got)
	}
	if hidden := b.Eval(`String(document.getElementById("copy").hidden)`); hidden != "false" {
		t.Errorf("copy button hidden: got %s, want false (the inline script must run under the CSP)", hidden)
	}
	shotCreated := b.Screenshot("created")

	if err := use(secret); err != nil {
		t.Fatalf("login with the new password: %v", err)
	}
	e.backend.Store.Flush(ctx)
	b.Do("open list", chromedp.Navigate(e.URL+"/"), chromedp.WaitVisible(chromedp.ID("passwords")))
	if got := b.Text(`li.pw[data-name="Laptop"]`); !strings.Contains(got, "IMAP") || !strings.Contains(got, "127.0.0.1") {
		t.Errorf("Laptop row: got %q, want its last use (IMAP from 127.0.0.1)", got)
	}
	shotList := b.Screenshot("list")

	b.Revoke("Laptop")
	if got := b.Text(".banner-ok"); !strings.Contains(got, "Revoked “Laptop”") {
		t.Errorf("notice: got %q, want it to say Laptop was revoked", got)
	}
	if err := use(secret); err == nil {
		t.Fatal("login after revoke: got allow, want deny")
	}
	if n := b.Eval(`String(document.querySelectorAll("li.pw").length)`); n != "2" {
		t.Errorf("rows after revoke: got %s, want 2", n)
	}

	// The same page on a phone.
	b.Do("phone", chromedp.EmulateViewport(390, 844, chromedp.EmulateScale(2), chromedp.EmulateMobile))
	phoneSecret := b.Create("Phone")
	if phoneSecret == "" {
		t.Fatal("create on a phone: no secret shown")
	}
	if w := b.Eval(`String(document.documentElement.scrollWidth <= window.innerWidth)`); w != "true" {
		t.Errorf("phone layout: page wider than the screen")
	}
	shotPhone := b.Screenshot("created-phone")
	b.Do("phone list", chromedp.Navigate(e.URL+"/"), chromedp.WaitVisible(chromedp.ID("passwords")))
	shotPhoneList := b.Screenshot("list-phone")

	if os.Getenv("UPDATE_SCREENSHOTS") == "1" {
		for src, dst := range map[string]string{shotList: "portal.png", shotCreated: "portal-created.png",
			shotPhone: "portal-phone.png", shotPhoneList: "portal-phone-list.png"} {
			data, err := os.ReadFile(src)
			if err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(filepath.Join("..", "..", "docs", dst), data, 0o644); err != nil {
				t.Fatal(err)
			}
		}
	}
}

// TestBrowserRefusals: a sign-in without a second factor sees only the MFA
// message; an administrator sees the admin refusal; two people in two
// browser contexts see only their own passwords.
func TestBrowserRefusals(t *testing.T) {
	e := start(t, portaltest.Options{})
	b := portaltest.NewBrowser(t, e.Env)

	t.Run("mfa", func(t *testing.T) {
		tab := b.NewTab(t)
		tab.SignIn("mallory")
		if got := tab.Text("main"); !strings.Contains(got, "App passwords need multifactor sign-in") {
			t.Errorf("page: got %q, want the MFA message", got)
		}
		if n := tab.Eval(`String(document.querySelectorAll("#create, #passwords, header .user").length)`); n != "0" {
			t.Errorf("elements besides the message: got %s, want 0", n)
		}
		shot := tab.Screenshot("mfa")
		if os.Getenv("UPDATE_SCREENSHOTS") == "1" {
			data, err := os.ReadFile(shot)
			if err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(filepath.Join("..", "..", "docs", "portal-mfa.png"), data, 0o644); err != nil {
				t.Fatal(err)
			}
		}
	})
	t.Run("admin", func(t *testing.T) {
		tab := b.NewTab(t)
		tab.SignIn("root")
		if s := tab.Create("Laptop"); s != "" {
			t.Fatalf("admin got a password %q", s)
		}
		if got := tab.Text("#error"); got != "Administrators cannot have app passwords: sign in with multifactor authentication instead" {
			t.Errorf("error: got %q, want the admin refusal", got)
		}
	})
	t.Run("isolation", func(t *testing.T) {
		a, d := b.NewTab(t), b.NewTab(t)
		a.SignIn("alice")
		d.SignIn("dave")
		if a.Create("Alice laptop") == "" || d.Create("Dave phone") == "" {
			t.Fatal("create failed")
		}
		a.Do("list", chromedp.Navigate(e.URL+"/"), chromedp.WaitVisible(chromedp.ID("passwords")))
		d.Do("list", chromedp.Navigate(e.URL+"/"), chromedp.WaitVisible(chromedp.ID("passwords")))
		if got := a.Text("#passwords"); !strings.Contains(got, "Alice laptop") || strings.Contains(got, "Dave phone") {
			t.Errorf("alice's list: got %q, want only her password", got)
		}
		if got := d.Text("#passwords"); !strings.Contains(got, "Dave phone") || strings.Contains(got, "Alice laptop") {
			t.Errorf("dave's list: got %q, want only his password", got)
		}
		recs, _ := e.backend.Store.List(t.Context(), "alice")
		for _, r := range recs {
			if r.User != "alice" {
				t.Errorf("store: alice's list holds %+v", r)
			}
		}
	})
}

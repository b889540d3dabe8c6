package cli_test

import (
	"bufio"
	"errors"
	"io"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/legate-proxy/legate/internal/testenv"
)

// TestDemo runs `legate demo` as a newcomer would: the printed curl command
// lists the INBOX with the welcome message, the printed swaks command sends
// a message through the SMTP front-end, and curl then lists both; the
// printed ldapsearch command finds the demo user's entry.
func TestDemo(t *testing.T) {
	testenv.Require(t, "curl", "swaks", "ldapsearch")
	cmd := exec.Command(legateBin, "demo", "--imap", "127.0.0.1:0", "--smtp", "127.0.0.1:0", "--ldap", "127.0.0.1:0", "--portal", "127.0.0.1:0")
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() {
		cmd.Process.Kill()
		cmd.Wait()
	}()
	lines := make(chan string, 16)
	go func() {
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			lines <- sc.Text()
		}
		close(lines)
	}()
	var user, pw, curl, swaks, ldapsearch, portalURL, portalCode string
	deadline := time.After(30 * time.Second)
	for curl == "" || swaks == "" || ldapsearch == "" || portalCode == "" {
		select {
		case l, ok := <-lines:
			if !ok {
				t.Fatal("demo exited early")
			}
			switch {
			case strings.HasPrefix(l, "user: "):
				user = strings.TrimPrefix(l, "user: ")
			case strings.HasPrefix(l, "app password: "):
				pw = strings.TrimPrefix(l, "app password: ")
			case strings.HasPrefix(l, "curl "):
				curl = l
			case strings.HasPrefix(l, "portal: "):
				portalURL = strings.TrimPrefix(l, "portal: ")
			case strings.HasPrefix(l, "portal sign-in: "):
				f := strings.Fields(l)
				portalCode = f[len(f)-1]
			case strings.HasPrefix(l, "swaks "):
				swaks = l
			case strings.HasPrefix(l, "ldapsearch "):
				ldapsearch = l
			}
		case <-deadline:
			t.Fatal("demo printed no curl, swaks and ldapsearch commands within 30s")
		}
	}
	if user != "demo" || !secretRE.MatchString(pw) {
		t.Fatalf("demo printed user %q, password %q", user, pw)
	}
	out, err := exec.Command("sh", "-c", curl).CombinedOutput()
	if err != nil || !strings.Contains(string(out), "Welcome to Legate") {
		t.Fatalf("printed curl command: %v\n%s", err, out)
	}
	out, err = exec.Command("sh", "-c", swaks+" --header 'Subject: sent through the demo'").CombinedOutput()
	if err != nil || !strings.Contains(string(out), "250 2.0.0") {
		t.Fatalf("printed swaks command: %v\n%s", err, out)
	}
	out, err = exec.Command("sh", "-c", curl).CombinedOutput()
	if err != nil || !strings.Contains(string(out), "sent through the demo") || strings.Count(string(out), "FETCH") != 2 {
		t.Fatalf("INBOX after swaks: %v\n%s", err, out)
	}
	// The self-service page: sign in with the printed code, see the demo's
	// app password listed (by name, never the secret).
	page := demoPortalSignIn(t, portalURL, user, portalCode)
	if !strings.Contains(page, "App passwords") || !strings.Contains(page, ">demo<") || strings.Contains(page, pw) {
		t.Errorf("portal page after sign-in: want the list with the \"demo\" password and no secret; got:\n%.2000s", page)
	}
	// A wrong password is refused by the proxy.
	bad := strings.Replace(curl, pw, "AAAA-BBBB-CCCC-DDDD", 1)
	if out, err := exec.Command("sh", "-c", bad).CombinedOutput(); err == nil {
		t.Fatalf("curl with a wrong password succeeded:\n%s", out)
	}
	// The printed ldapsearch command binds with the app password and finds
	// the demo user in the embedded directory.
	out, err = exec.Command("sh", "-c", ldapsearch).CombinedOutput()
	if err != nil || !strings.Contains(string(out), "mail: demo@legate.test") {
		t.Fatalf("printed ldapsearch command: %v\n%s", err, out)
	}
	// A wrong password gets invalidCredentials (49), ldapsearch's exit code.
	bad = strings.Replace(ldapsearch, pw, "AAAA-BBBB-CCCC-DDDD", 1)
	out, err = exec.Command("sh", "-c", bad).CombinedOutput()
	var ee *exec.ExitError
	if !errors.As(err, &ee) || ee.ExitCode() != 49 {
		t.Fatalf("ldapsearch with a wrong password: got %v, want exit code 49\n%s", err, out)
	}
}

// demoPortalSignIn signs in at the demo's portal with the printed code and
// returns the page the portal shows.
func demoPortalSignIn(t *testing.T, portalURL, user, code string) string {
	t.Helper()
	jar, _ := cookiejar.New(nil)
	c := &http.Client{Jar: jar, Timeout: 10 * time.Second}
	resp, err := c.Get(portalURL + "/")
	if err != nil {
		t.Fatalf("portal: %v", err)
	}
	resp.Body.Close()
	id := resp.Request.URL.Query().Get("id")
	if id == "" || !strings.HasSuffix(resp.Request.URL.Path, "/signin") {
		t.Fatalf("portal sent us to %s, want the demo provider's sign-in page", resp.Request.URL)
	}
	signin := *resp.Request.URL
	signin.RawQuery = ""
	resp, err = c.PostForm(signin.String(), url.Values{"id": {id}, "username": {user}, "code": {code}})
	if err != nil {
		t.Fatalf("sign in: %v", err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK || !strings.HasPrefix(resp.Request.URL.String(), portalURL) {
		t.Fatalf("after sign-in: status %d at %s, want the portal", resp.StatusCode, resp.Request.URL)
	}
	return string(body)
}

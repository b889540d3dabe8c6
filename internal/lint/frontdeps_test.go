package lint

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"os/exec"
	"strings"
	"testing"
)

// forbiddenForFrontEnds says why a front-end must not depend on a package
// (issue 14.3): the front-ends speak the login contract (internal/login)
// and know nothing of where app passwords are stored.
func forbiddenForFrontEnds(path string) (why string, bad bool) {
	switch {
	case strings.HasPrefix(path, "go.etcd.io/"):
		return "etcd or bbolt", true
	case path == "google.golang.org/grpc" || strings.HasPrefix(path, "google.golang.org/grpc/"):
		return "gRPC", true
	case strings.Contains(path, "bbolt"):
		return "bbolt", true
	case path == module+"/store" || strings.HasPrefix(path, module+"/store/"):
		return "the store", true
	case path == module+"/internal/auth" || path == module+"/internal/directory":
		return "the login service's implementation", true
	}
	return "", false
}

const module = "github.com/legate-proxy/legate"

// TestFrontEndsDependOnTheContractOnly: no package under proxy/ depends,
// even indirectly, on etcd, bbolt, gRPC, the store or the login service's
// implementation — the front-ends import internal/login only.
func TestFrontEndsDependOnTheContractOnly(t *testing.T) {
	cmd := exec.Command("go", "list", "-e", "-deps", "-json=ImportPath,Imports,DepOnly,Error", module+"/proxy/...")
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("go list: %v\n%s", err, stderr.String())
	}
	type pkg struct {
		ImportPath string
		Imports    []string
		DepOnly    bool
		Error      *struct{ Err string }
	}
	pkgs := map[string]*pkg{}
	var roots []string
	dec := json.NewDecoder(bytes.NewReader(out))
	for {
		var p pkg
		if err := dec.Decode(&p); errors.Is(err, io.EOF) {
			break
		} else if err != nil {
			t.Fatal(err)
		}
		if p.Error != nil {
			t.Fatalf("go list %s: %s", p.ImportPath, p.Error.Err)
		}
		pkgs[p.ImportPath] = &p
		if !p.DepOnly {
			roots = append(roots, p.ImportPath)
		}
	}
	if len(roots) < 3 {
		t.Fatalf("go list found %d packages under proxy/ (%v), want at least imap, smtp and ldap", len(roots), roots)
	}
	for _, root := range roots {
		// Breadth-first from the front-end, remembering how each package
		// was reached so that a failure names the import chain.
		via := map[string]string{root: ""}
		queue := []string{root}
		for len(queue) > 0 {
			p := queue[0]
			queue = queue[1:]
			if why, bad := forbiddenForFrontEnds(p); bad {
				chain := []string{p}
				for q := via[p]; q != ""; q = via[q] {
					chain = append([]string{q}, chain...)
				}
				t.Errorf("%s depends on %s (%s): %s", root, p, why, strings.Join(chain, " → "))
				continue
			}
			if pkgs[p] == nil {
				continue
			}
			for _, imp := range pkgs[p].Imports {
				if _, seen := via[imp]; !seen {
					via[imp] = p
					queue = append(queue, imp)
				}
			}
		}
	}
}

// The rule itself catches what it must (a test that can fail).
func TestForbiddenForFrontEnds(t *testing.T) {
	for path, want := range map[string]bool{
		"go.etcd.io/bbolt":             true,
		"go.etcd.io/etcd/client/v3":    true,
		"google.golang.org/grpc":       true,
		"google.golang.org/grpc/codes": true,
		module + "/store":              true,
		module + "/store/bolt":         true,
		module + "/internal/auth":      true,
		module + "/internal/login":     false,
		module + "/internal/session":   false,
		module + "/policy":             false,
		module + "/storefront":         false,
		"google.golang.org/grpcx":      false,
		"github.com/go-ldap/ldap/v3":   false,
	} {
		if _, got := forbiddenForFrontEnds(path); got != want {
			t.Errorf("forbiddenForFrontEnds(%q) = %v, want %v", path, got, want)
		}
	}
}

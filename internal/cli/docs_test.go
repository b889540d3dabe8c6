package cli

import (
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

// TestDocsCoverCommands: every command has a synopsis for -h and a section
// in docs/cli.md, and every flag of demo is documented there.
func TestDocsCoverCommands(t *testing.T) {
	doc, err := os.ReadFile(filepath.Join("..", "..", "docs", "cli.md"))
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range commands() {
		if _, ok := synopses[c.name]; !ok {
			t.Errorf("command %s has no synopsis", c.name)
		}
		if !regexp.MustCompile(`(?m)^## ` + regexp.QuoteMeta(c.name) + `\b`).Match(doc) {
			t.Errorf("docs/cli.md has no section for %s", c.name)
		}
	}
	for _, f := range []string{"--imap", "--smtp", "--ldap", "--portal"} {
		if !strings.Contains(string(doc), "`"+f+" ADDR`") {
			t.Errorf("docs/cli.md's demo section lacks %s", f)
		}
	}
}

// TestContractSections: docs/contract.md keeps the numbering §1…§10 that
// code comments cite ("docs/contract.md §N").
func TestContractSections(t *testing.T) {
	doc, err := os.ReadFile(filepath.Join("..", "..", "docs", "contract.md"))
	if err != nil {
		t.Fatal(err)
	}
	got := regexp.MustCompile(`(?m)^## (\d+)\. `).FindAllStringSubmatch(string(doc), -1)
	if len(got) != 10 {
		t.Fatalf("docs/contract.md has %d numbered sections, want 10", len(got))
	}
	for i, m := range got {
		if m[1] != fmt.Sprint(i+1) {
			t.Errorf("section %d is numbered %s", i+1, m[1])
		}
	}
}

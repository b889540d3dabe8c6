package store

import (
	"strings"
	"testing"
)

// FuzzNormalize checks the app-password normaliser on arbitrary input: it
// never panics, is idempotent, drops every dash and blank, folds ASCII case,
// and treats the ways a user may type a secret as the same secret.
func FuzzNormalize(f *testing.F) {
	for _, s := range []string{"", "ABCD-EFGH-JKMN-PQRS", "abcd efgh jkmn pqrs", "a\tb-c d", "ÄÖÜ-ß", "----", "\x00\xff", Generate()} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		n := Normalize(s)
		if Normalize(n) != n {
			t.Fatalf("Normalize not idempotent: %q -> %q -> %q", s, n, Normalize(n))
		}
		if strings.ContainsAny(n, "- \t") {
			t.Fatalf("Normalize(%q) = %q still has a dash or blank", s, n)
		}
		for i := 0; i < len(n); i++ {
			if 'A' <= n[i] && n[i] <= 'Z' {
				t.Fatalf("Normalize(%q) = %q has upper case", s, n)
			}
		}
		if len(n) > len(s) {
			t.Fatalf("Normalize(%q) = %q grew", s, n)
		}
		variants := []string{strings.ToUpper(s), strings.ReplaceAll(s, "-", " "), strings.ReplaceAll(s, " ", "")}
		for _, v := range variants {
			if isASCII(s) && Normalize(v) != n {
				t.Fatalf("Normalize(%q) = %q, but Normalize(%q) = %q", s, n, v, Normalize(v))
			}
		}
	})
}

func isASCII(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] >= 0x80 {
			return false
		}
	}
	return true
}

// TestGenerateShape: every generated secret is four groups of four from the
// alphabet, and normalises to 16 alphabet characters.
func TestGenerateShape(t *testing.T) {
	seen := map[string]bool{}
	for range 1000 {
		s := Generate()
		if len(s) != 19 || s[4] != '-' || s[9] != '-' || s[14] != '-' {
			t.Fatalf("got %q, want XXXX-XXXX-XXXX-XXXX", s)
		}
		n := Normalize(s)
		if len(n) != SecretLen || strings.Trim(n, Alphabet) != "" {
			t.Fatalf("Normalize(%q) = %q, want %d characters of %q", s, n, SecretLen, Alphabet)
		}
		if seen[n] {
			t.Fatalf("duplicate secret %q in 1000", s)
		}
		seen[n] = true
	}
}

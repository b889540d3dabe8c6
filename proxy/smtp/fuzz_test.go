package smtp

import (
	"bytes"
	"strings"
	"testing"
)

func TestParsePlain(t *testing.T) {
	cases := []struct {
		in                    string
		authzid, user, secret string
		ok                    bool
	}{
		{"\x00alice\x00pw", "", "alice", "pw", true},
		{"alice\x00alice\x00pw", "alice", "alice", "pw", true},
		{"\x00alice\x00", "", "alice", "", true},
		{"\x00\x00pw", "", "", "", false},
		{"alice\x00pw", "", "", "", false},
		{"a\x00b\x00c\x00d", "", "", "", false},
		{"", "", "", "", false},
		{"\x00" + strings.Repeat("u", 256) + "\x00pw", "", "", "", false},
	}
	for _, c := range cases {
		z, u, s, ok := parsePlain([]byte(c.in))
		if ok != c.ok || z != c.authzid || u != c.user || s != c.secret {
			t.Errorf("parsePlain(%q): got %q %q %q %v, want %q %q %q %v", c.in, z, u, s, ok, c.authzid, c.user, c.secret, c.ok)
		}
	}
}

func TestOwnsAddress(t *testing.T) {
	addrs := []string{"alice@example.com", "Alice.Smith@Example.org", "postmaster"}
	cases := []struct {
		from string
		want bool
	}{
		{"alice@example.com", true},
		{"alice@EXAMPLE.COM", true},
		{"Alice.Smith@example.org", true},
		{"ALICE@example.com", false},
		{"alice.smith@example.org", false},
		{"alice@example.com.evil", false},
		{"alice@evil.example.com", false},
		{"\"alice@example.com\"@evil.com", false},
		{"postmaster", true},
		{"Postmaster", false},
		{"alice", false},
		{"@example.com", false},
		{"alice@", false},
		{"", false},
	}
	for _, c := range cases {
		if got := ownsAddress(addrs, c.from); got != c.want {
			t.Errorf("ownsAddress(%q): got %v, want %v", c.from, got, c.want)
		}
	}
}

func TestLoginServer(t *testing.T) {
	var gotUser, gotSecret string
	check := func(z, u, s string) error { gotUser, gotSecret = u, s; return nil }
	l := newLoginServer(check)
	ch, done, err := l.Next(nil)
	if string(ch) != "Username:" || done || err != nil {
		t.Fatalf("step 1: got %q %v %v, want Username:", ch, done, err)
	}
	ch, done, err = l.Next([]byte("alice"))
	if string(ch) != "Password:" || done || err != nil {
		t.Fatalf("step 2: got %q %v %v, want Password:", ch, done, err)
	}
	_, done, err = l.Next([]byte("pw"))
	if !done || err != nil || gotUser != "alice" || gotSecret != "pw" {
		t.Fatalf("step 3: got done=%v err=%v user=%q secret=%q, want alice/pw", done, err, gotUser, gotSecret)
	}
	if _, _, err := l.Next([]byte("more")); err == nil {
		t.Errorf("step 4: got nil error, want unexpected response")
	}
}

// FuzzPlain feeds arbitrary PLAIN responses: never a panic, and a success
// always hands over the exact fields.
func FuzzPlain(f *testing.F) {
	for _, s := range []string{"\x00alice\x00pw", "alice\x00alice\x00pw", "\x00\x00", "", "a\x00b\x00c\x00d", "\xff\xfe\x00\x00"} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		var calls int
		p := newPlainServer(func(z, u, s string) error {
			calls++
			if joined := z + "\x00" + u + "\x00" + s; joined != string(b) {
				t.Fatalf("fields %q %q %q do not rebuild %q", z, u, s, b)
			}
			if u == "" {
				t.Fatalf("empty user accepted")
			}
			return nil
		})
		_, done, _ := p.Next(b)
		if !done {
			t.Fatalf("PLAIN with a response not done")
		}
		if calls > 1 {
			t.Fatalf("check called %d times", calls)
		}
		if _, _, err := p.Next(b); err == nil {
			t.Fatalf("second response accepted")
		}
	})
}

// FuzzLogin drives the LOGIN exchange with arbitrary responses.
func FuzzLogin(f *testing.F) {
	f.Add([]byte("alice"), []byte("pw"), true)
	f.Add([]byte(""), []byte(""), false)
	f.Add([]byte("a\x00b"), []byte("\x00"), true)
	f.Fuzz(func(t *testing.T, user, secret []byte, initial bool) {
		l := newLoginServer(func(z, u, s string) error {
			if u != string(user) || s != string(secret) || bytes.IndexByte(user, 0) >= 0 || len(user) == 0 {
				t.Fatalf("got %q/%q from %q/%q", u, s, user, secret)
			}
			return nil
		})
		var err error
		var done bool
		if initial {
			_, done, err = l.Next(user)
		} else {
			if _, _, err = l.Next(nil); err != nil {
				t.Fatal(err)
			}
			_, done, err = l.Next(user)
		}
		if err != nil || done {
			return
		}
		_, _, _ = l.Next(secret)
	})
}

// FuzzOwnsAddress checks the sender comparison: never a panic, an address
// always owns itself, and ownership survives domain case changes but not
// local-part ones.
func FuzzOwnsAddress(f *testing.F) {
	for _, s := range [][2]string{{"alice@example.com", "alice@EXAMPLE.com"}, {"a@b", "A@b"}, {"x", "x"}, {"\"a@b\"@c", "a@b"}, {"@", "@"}} {
		f.Add(s[0], s[1])
	}
	f.Fuzz(func(t *testing.T, owned, from string) {
		got := ownsAddress([]string{owned}, from)
		if strings.TrimSpace(owned) == owned && owned != "" && !ownsAddress([]string{owned}, owned) {
			t.Fatalf("%q does not own itself", owned)
		}
		if got {
			fl, fd, fok := splitAddress(from)
			ol, od, ook := splitAddress(strings.TrimSpace(owned))
			if !fok && from != owned || fok && (!ook || fl != ol || !strings.EqualFold(fd, od)) {
				t.Fatalf("ownsAddress(%q, %q) = true with different parts", owned, from)
			}
		}
	})
}

package imap

import (
	"bufio"
	"crypto/tls"
	"encoding/base64"
	"fmt"
	"io"
	"net"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// fakeUpstream is a tiny IMAP server for unit tests: it accepts the master
// login (SASL PLAIN with authzid, or LOGIN user*master), answers
// CAPABILITY, and after login answers every command with "tag OK <NAME>
// done", remembering the lines. IDLE waits for DONE; "TICK n" sends n
// untagged "* OK tick" lines 100ms apart; "BIG n" answers with a FETCH
// response carrying a literal of n bytes.
type fakeUpstream struct {
	fakeConfig
	t        testing.TB
	ln       net.Listener
	tls      *tls.Config // for STARTTLS / implicit
	implicit bool

	mu     sync.Mutex
	logins []string            // user names logged in as
	lines  []string            // commands received after login
	ids    []map[string]string // fields of IDs received before login
	conns  []net.Conn
	wg     sync.WaitGroup
}

// fakeConfig is what a test can vary in the fake upstream.
type fakeConfig struct {
	masterUser string
	masterPass string
	// noSASLIR leaves SASL-IR out of the greeting; noOKCaps leaves the
	// capabilities out of the login's tagged OK.
	noSASLIR, noOKCaps bool
	refuse             bool // refuse every master login
}

const postLoginCaps = "IMAP4rev1 IDLE LITERAL+ FAKEPOST"

func startFake(t testing.TB, cfg fakeConfig, tlsCfg *tls.Config, implicit bool) *fakeUpstream {
	t.Helper()
	f := &fakeUpstream{fakeConfig: cfg, tls: tlsCfg, implicit: implicit}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	f.t, f.ln = t, ln
	if f.masterUser == "" {
		f.masterUser, f.masterPass = "legate", "master-secret"
	}
	f.wg.Add(1)
	go func() {
		defer f.wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			f.mu.Lock()
			f.conns = append(f.conns, c)
			f.mu.Unlock()
			f.wg.Add(1)
			go func() {
				defer f.wg.Done()
				defer c.Close()
				f.serve(c)
			}()
		}
	}()
	t.Cleanup(f.close)
	return f
}

func (f *fakeUpstream) close() {
	f.ln.Close()
	f.mu.Lock()
	for _, c := range f.conns {
		c.Close()
	}
	f.mu.Unlock()
	f.wg.Wait()
}

func (f *fakeUpstream) addr() string { return f.ln.Addr().String() }

func (f *fakeUpstream) loginList() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]string(nil), f.logins...)
}

func (f *fakeUpstream) idList() []map[string]string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]map[string]string(nil), f.ids...)
}

func (f *fakeUpstream) received() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]string(nil), f.lines...)
}

func (f *fakeUpstream) serve(c net.Conn) {
	if f.implicit {
		tc := tls.Server(c, f.tls)
		if tc.Handshake() != nil {
			return
		}
		c = tc
	}
	var wmu sync.Mutex
	send := func(s string) error {
		wmu.Lock()
		defer wmu.Unlock()
		_, err := io.WriteString(c, s+"\r\n")
		return err
	}
	p := &parser{r: bufio.NewReader(c), maxLine: 1 << 20, maxLiteral: 1 << 20,
		cont: func() error { return send("+ go ahead") }}
	caps := "IMAP4rev1 LITERAL+ AUTH=PLAIN"
	if !f.noSASLIR {
		caps += " SASL-IR"
	}
	if f.tls != nil && !f.implicit {
		caps += " STARTTLS"
	}
	send("* OK [CAPABILITY " + caps + "] fake ready")
	loggedIn := ""
	for {
		cmd, err := p.readCommand()
		if err != nil {
			return
		}
		if loggedIn != "" {
			f.mu.Lock()
			f.lines = append(f.lines, cmd.tag+" "+cmd.name)
			f.mu.Unlock()
		}
		switch {
		case cmd.name == "CAPABILITY":
			if loggedIn != "" {
				send("* CAPABILITY " + postLoginCaps)
			} else {
				send("* CAPABILITY " + caps)
			}
			send(cmd.tag + " OK done")
		case cmd.name == "STARTTLS" && loggedIn == "":
			send(cmd.tag + " OK go")
			tc := tls.Server(c, f.tls)
			if tc.Handshake() != nil {
				return
			}
			c = tc
			p.r = bufio.NewReader(c)
		case cmd.name == "AUTHENTICATE" && loggedIn == "":
			var ir string
			if len(cmd.args) == 2 {
				ir = cmd.args[1].val
			} else {
				send("+ ")
				l, err := p.readLine()
				if err != nil {
					return
				}
				ir = string(l)
			}
			raw, _ := base64.StdEncoding.DecodeString(ir)
			parts := strings.Split(string(raw), "\x00")
			if len(parts) == 3 && parts[1] == f.masterUser && parts[2] == f.masterPass && !f.refuse {
				loggedIn = parts[0]
			}
			f.answerLogin(send, cmd.tag, loggedIn)
		case cmd.name == "LOGIN" && loggedIn == "":
			u, sep, m := "", "", ""
			if len(cmd.args) == 2 {
				u, m, _ = strings.Cut(cmd.args[0].val, "*")
				sep = cmd.args[1].val
			}
			if m == f.masterUser && sep == f.masterPass && !f.refuse {
				loggedIn = u
			}
			f.answerLogin(send, cmd.tag, loggedIn)
		case cmd.name == "ID" && loggedIn == "":
			fields, ok := idFields(cmd.args)
			if !ok {
				send(cmd.tag + " BAD bad ID")
				continue
			}
			f.mu.Lock()
			f.ids = append(f.ids, fields)
			f.mu.Unlock()
			send("* ID NIL")
			send(cmd.tag + " OK ID done")
		case loggedIn == "":
			send(cmd.tag + " BAD not logged in")
		case cmd.name == "IDLE":
			send("+ idling")
			if l, err := p.readLine(); err != nil || string(l) != "DONE" {
				return
			}
			send(cmd.tag + " OK IDLE done")
		case cmd.name == "TICK":
			n := 0
			if len(cmd.args) == 1 {
				n, _ = strconv.Atoi(cmd.args[0].val)
			}
			go func() {
				for range n {
					time.Sleep(100 * time.Millisecond)
					if send("* OK tick") != nil {
						return
					}
				}
			}()
			send(cmd.tag + " OK TICK started")
		case cmd.name == "BIG":
			n := 0
			if len(cmd.args) == 1 {
				n, _ = strconv.Atoi(cmd.args[0].val)
			}
			send(fmt.Sprintf("* 1 FETCH (BODY[] {%d}\r\n%s)", n, strings.Repeat("y", n)))
			send(cmd.tag + " OK BIG done")
		case cmd.name == "LOGOUT":
			send("* BYE bye")
			send(cmd.tag + " OK LOGOUT done")
			return
		default:
			send(fmt.Sprintf("%s OK %s done", cmd.tag, cmd.name))
		}
	}
}

func (f *fakeUpstream) answerLogin(send func(string) error, tag, user string) {
	if user == "" {
		send(tag + " NO [AUTHENTICATIONFAILED] Authentication failed.")
		return
	}
	f.mu.Lock()
	f.logins = append(f.logins, user)
	f.mu.Unlock()
	if f.noOKCaps {
		send(tag + " OK Logged in")
		return
	}
	send(tag + " OK [CAPABILITY " + postLoginCaps + "] Logged in")
}

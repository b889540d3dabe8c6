package testenv

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"
)

// Sink is Postfix's smtp-sink listening on a loopback port: it accepts
// any SMTP transaction (no authentication) and dumps each message into a
// file of its own.
//
// smtp-sink's dump format (see smtp-sink(1), Postfix 3.7): lines end in
// LF, not CRLF; dot-stuffing is undone; an aborted transaction leaves no
// file. Before the message it writes its own lines:
//
//	X-Client-Addr: 127.0.0.1
//	X-Client-Proto: ESMTP
//	X-Helo-Args: <EHLO argument>        (only if the client sent HELO/EHLO)
//	X-Mail-Args: <from@example> ...     (the MAIL FROM arguments)
//	X-Rcpt-Args: <to@example> ...       (one per RCPT TO)
//	Received: from <helo> ([127.0.0.1])
//		by smtp-sink (smtp-sink) with ESMTP id <hex>;
//		<date>
//
// and after the message one empty line. Body removes all of these.
type Sink struct {
	// Addr is "127.0.0.1:port".
	Addr string
	// Dir holds one file per message.
	Dir string

	t       testing.TB
	proc    *process
	watch   *closeWatcher // nil where inotify is unavailable
	outPath string
}

// StartSink starts smtp-sink on a free loopback port and stops it when
// the test ends. As root it runs as nobody (smtp-sink refuses to run as
// root) in a directory nobody owns.
func StartSink(t testing.TB) *Sink {
	t.Helper()
	Require(t, "smtp-sink")
	bin, err := LookPath("smtp-sink")
	if err != nil {
		t.Fatalf("testenv: sink: %v", err)
	}
	base := TempDir(t)
	s := &Sink{Dir: filepath.Join(base, "msgs"), t: t, outPath: filepath.Join(base, "smtp-sink.out")}
	if err := os.Mkdir(s.Dir, 0o755); err != nil {
		t.Fatalf("testenv: sink: %v", err)
	}
	s.watch, err = watchCloses(s.Dir)
	if err != nil {
		t.Fatalf("testenv: sink: %v", err)
	}
	var args []string
	if os.Geteuid() == 0 {
		if err := Chown(s.Dir, "nobody"); err != nil {
			t.Fatalf("testenv: sink: %v", err)
		}
		args = append(args, "-u", "nobody")
	}
	for attempt := 1; ; attempt++ {
		s.Addr = FreeAddr(t)
		// The dump template gets a random hex suffix from smtp-sink.
		a := append(args, "-h", "sink.test", "-d", s.Dir+"/%Y%m%d%H%M%S.", s.Addr, "64")
		cmd := exec.Command(bin, a...)
		cmd.Dir = base
		p, err := startProcess("smtp-sink", cmd, s.outPath)
		if err != nil {
			t.Fatalf("testenv: sink: %v", err)
		}
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		err = p.waitReady(ctx, s.Addr)
		cancel()
		if err == nil {
			s.proc = p
			break
		}
		if serr := p.stop(5 * time.Second); serr != nil {
			t.Logf("testenv: sink: %v", serr)
		}
		out := tail(20, s.outPath)
		if attempt < 3 && strings.Contains(out, "in use") {
			continue
		}
		t.Fatalf("testenv: sink: %v\n%s", err, out)
	}
	t.Cleanup(func() {
		if err := s.proc.stop(5 * time.Second); err != nil {
			t.Errorf("testenv: sink: %v", err)
		}
		if s.watch != nil {
			s.watch.close()
		}
	})
	return s
}

// Messages returns the raw dump files of all complete messages in arrival
// order. A file smtp-sink still has open (a transaction in progress) is
// left out. On Linux the order is the order in which smtp-sink closed the
// files (inotify), which is the order of its replies to "."; elsewhere it
// is by modification time, which cannot separate messages that arrive
// within a few milliseconds.
func (s *Sink) Messages() [][]byte {
	msgs, err := s.messages()
	if err != nil {
		s.t.Errorf("testenv: sink: %v", err)
	}
	return msgs
}

func (s *Sink) messages() ([][]byte, error) {
	entries, err := os.ReadDir(s.Dir)
	if err != nil {
		return nil, err
	}
	type file struct {
		path string
		pos  int       // close order (inotify)
		mod  time.Time // fallback order
	}
	var open map[string]bool
	if s.watch == nil {
		open = openFiles(s.proc.cmd.Process.Pid)
	}
	var files []file
	for _, e := range entries {
		f := file{path: filepath.Join(s.Dir, e.Name())}
		if s.watch != nil {
			// Complete means smtp-sink closed it.
			pos, closed, err := s.watch.position(e.Name())
			if err != nil {
				return nil, err
			}
			if !closed {
				continue
			}
			f.pos = pos
		} else {
			if open[f.path] {
				continue
			}
			fi, err := e.Info()
			if err != nil {
				return nil, err
			}
			f.mod = fi.ModTime()
		}
		files = append(files, f)
	}
	sort.Slice(files, func(i, j int) bool {
		a, b := files[i], files[j]
		if a.pos != b.pos {
			return a.pos < b.pos
		}
		if !a.mod.Equal(b.mod) {
			return a.mod.Before(b.mod)
		}
		return a.path < b.path
	})
	var msgs [][]byte
	for _, f := range files {
		b, err := os.ReadFile(f.path)
		if errors.Is(err, os.ErrNotExist) {
			continue // an aborted transaction's file, removed after close
		}
		if err != nil {
			return nil, err
		}
		if s.watch == nil && open == nil && !bytes.HasSuffix(b, []byte("\n\n")) {
			continue // no /proc: a dump always ends with an empty line
		}
		msgs = append(msgs, b)
	}
	return msgs, nil
}

// WaitMessages waits until at least n messages arrived and returns them.
func (s *Sink) WaitMessages(ctx context.Context, n int) ([][]byte, error) {
	for {
		msgs, err := s.messages()
		if err != nil {
			return nil, fmt.Errorf("testenv: sink: %w", err)
		}
		if len(msgs) >= n {
			return msgs, nil
		}
		select {
		case <-ctx.Done():
			return msgs, fmt.Errorf("testenv: sink: %d messages, want %d: %w", len(msgs), n, ctx.Err())
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// Body returns message i (in arrival order) as the SMTP client sent it
// in DATA, minus smtp-sink's added lines, with LF line endings. It fails
// the test if there is no message i.
func (s *Sink) Body(i int) []byte {
	s.t.Helper()
	msgs := s.Messages()
	if i < 0 || i >= len(msgs) {
		s.t.Fatalf("testenv: sink: message %d of %d", i, len(msgs))
	}
	_, body := splitDump(msgs[i])
	return body
}

// Envelope returns the MAIL FROM and RCPT TO arguments of message i, as
// smtp-sink recorded them (e.g. "<alice@example.com> SIZE=123").
func (s *Sink) Envelope(i int) (from string, rcpts []string) {
	s.t.Helper()
	msgs := s.Messages()
	if i < 0 || i >= len(msgs) {
		s.t.Fatalf("testenv: sink: message %d of %d", i, len(msgs))
	}
	hdr, _ := splitDump(msgs[i])
	for _, l := range hdr {
		if v, ok := strings.CutPrefix(l, "X-Mail-Args: "); ok {
			from = v
		}
		if v, ok := strings.CutPrefix(l, "X-Rcpt-Args: "); ok {
			rcpts = append(rcpts, v)
		}
	}
	return from, rcpts
}

// splitDump separates smtp-sink's own lines from the message.
func splitDump(dump []byte) (sinkLines []string, body []byte) {
	rest := dump
	for len(rest) > 0 {
		line, after, _ := bytes.Cut(rest, []byte("\n"))
		l := string(line)
		switch {
		case strings.HasPrefix(l, "X-Client-Addr: "), strings.HasPrefix(l, "X-Client-Proto: "),
			strings.HasPrefix(l, "X-Helo-Args: "), strings.HasPrefix(l, "X-Mail-Args: "),
			strings.HasPrefix(l, "X-Rcpt-Args: "):
			sinkLines = append(sinkLines, l)
			rest = after
			continue
		case strings.HasPrefix(l, "Received: "):
			// smtp-sink's Received header: this line and two folded ones.
			sinkLines = append(sinkLines, l)
			rest = after
			for k := 0; k < 2 && len(rest) > 0 && rest[0] == '\t'; k++ {
				_, rest, _ = bytes.Cut(rest, []byte("\n"))
			}
		}
		break
	}
	return sinkLines, bytes.TrimSuffix(rest, []byte("\n"))
}

// openFiles returns the files process pid has open, or nil if /proc
// cannot tell.
func openFiles(pid int) map[string]bool {
	dir := "/proc/" + strconv.Itoa(pid) + "/fd"
	entries, err := os.ReadDir(dir)
	if err != nil {
		return nil
	}
	open := map[string]bool{}
	for _, e := range entries {
		if target, err := os.Readlink(filepath.Join(dir, e.Name())); err == nil {
			open[target] = true
		}
	}
	return open
}

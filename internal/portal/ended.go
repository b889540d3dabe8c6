package portal

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"
)

// maxEnded bounds the table of signed-out sessions. When it is full, a
// sign-out ends every session started until then instead (all users sign
// in again): never more memory, never a sign-out that does not hold.
const maxEnded = 10000

// endedSessions are the sessions signed out before their cookie expired:
// their ids until they could not be used anyway (MaxSessionAge after
// their start), plus a time before which every session is ended (after
// an overflow). It is kept in a file beside the session key, rewritten
// atomically on each sign-out, because the session cookies survive a
// restart of the portal and so must their ending.
type endedSessions struct {
	path string // "" keeps it in memory only
	max  int    // maxEnded (smaller in tests)

	saveMu sync.Mutex           // serialises save
	mu     sync.Mutex           // guards ids and before
	ids    map[string]time.Time // session id -> when its cookie dies anyway
	before time.Time            // sessions started before this are ended
}

// loadEndedSessions reads path (a missing file is an empty table),
// dropping entries that have run out by now.
func loadEndedSessions(path string, now time.Time) (*endedSessions, error) {
	e := &endedSessions{path: path, max: maxEnded, ids: map[string]time.Time{}}
	if path == "" {
		return e, nil
	}
	data, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return e, nil
	}
	if err != nil {
		return nil, fmt.Errorf("portal: ended sessions: %w", err)
	}
	sc := bufio.NewScanner(bytes.NewReader(data))
	for n := 1; sc.Scan(); n++ {
		f := strings.Fields(sc.Text())
		if len(f) != 2 {
			return nil, fmt.Errorf("portal: ended sessions: %s:%d: malformed line", path, n)
		}
		sec, err := strconv.ParseInt(f[1], 10, 64)
		if err != nil {
			return nil, fmt.Errorf("portal: ended sessions: %s:%d: malformed time", path, n)
		}
		t := time.Unix(sec, 0)
		if f[0] == "*" {
			e.before = t
		} else if t.After(now) && len(e.ids) < e.max {
			e.ids[f[0]] = t
		}
	}
	return e, nil
}

// has reports whether the session id, started at start, was ended.
func (e *endedSessions) has(id string, start time.Time) bool {
	e.mu.Lock()
	defer e.mu.Unlock()
	if start.Before(e.before) {
		return true
	}
	_, ok := e.ids[id]
	return ok
}

// end ends a session started at start and saves the table. If the table
// is full, every session started until now ends instead. Readers wait only
// for the change in memory, not for the file.
func (e *endedSessions) end(id string, start, now time.Time) error {
	e.mu.Lock()
	for k, t := range e.ids {
		if !t.After(now) {
			delete(e.ids, k)
		}
	}
	if len(e.ids) >= e.max {
		e.before = now.Add(time.Second) // whole seconds in the file: round up
		clear(e.ids)
	} else {
		e.ids[id] = start.Add(MaxSessionAge)
	}
	e.mu.Unlock()
	return e.save()
}

// save writes the table to a temporary file, syncs it and renames it over
// the old one (mode 0600: the ids are not secrets, but are nobody's
// business). Saves are serialised and each writes the newest table, so
// the file never goes back to an older one.
func (e *endedSessions) save() error {
	if e.path == "" {
		return nil
	}
	e.saveMu.Lock()
	defer e.saveMu.Unlock()
	var b bytes.Buffer
	e.mu.Lock()
	if !e.before.IsZero() {
		fmt.Fprintf(&b, "* %d\n", e.before.Unix())
	}
	for id, t := range e.ids {
		fmt.Fprintf(&b, "%s %d\n", id, t.Unix())
	}
	e.mu.Unlock()
	tmp, err := os.CreateTemp(filepath.Dir(e.path), ".ended-*")
	if err != nil {
		return fmt.Errorf("portal: ended sessions: %w", err)
	}
	defer os.Remove(tmp.Name())
	if _, err = tmp.Write(b.Bytes()); err == nil {
		err = tmp.Sync()
	}
	if cerr := tmp.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp.Name(), e.path)
	}
	if err != nil {
		return fmt.Errorf("portal: ended sessions: %w", err)
	}
	return nil
}

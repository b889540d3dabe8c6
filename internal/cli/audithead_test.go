package cli_test

import (
	"bufio"
	"encoding/binary"
	"encoding/json"
	"io"
	"net"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"
)

var headRE = regexp.MustCompile(`^([0-9]+) ([0-9a-f]{64})\n$`)

// Tail truncation of the audit log (issue 18.6): cutting the last records
// and rewriting the stored head passes a plain --verify, but not --verify
// --head with a head printed (or logged) before.
func TestAuditHeadCatchesTailTruncation(t *testing.T) {
	cfg := writeConfig(t, "")
	for _, name := range []string{"Laptop", "Phone"} {
		if r := legate(t, "", "apppass", "create", "--config", cfg, "--user", "alice", "--name", name); r.code != 0 {
			t.Fatalf("create: exit %d, %s", r.code, r.stderr)
		}
	}
	r := legate(t, "", "audit", "--config", cfg, "--head")
	m := headRE.FindStringSubmatch(r.stdout)
	if r.code != 0 || m == nil {
		t.Fatalf("audit --head: exit %d, stdout %q, stderr %q; want SEQ HASH", r.code, r.stdout, r.stderr)
	}
	head := m[1] + ":" + m[2]
	if r := legate(t, "", "audit", "--config", cfg, "--verify", "--head", head); r.code != 0 {
		t.Fatalf("--verify --head %s on an intact log: exit %d, %s%s", head, r.code, r.stdout, r.stderr)
	}
	// The head keeps matching while the log grows.
	if r := legate(t, "", "apppass", "create", "--config", cfg, "--user", "bob", "--name", "Tablet"); r.code != 0 {
		t.Fatalf("create: exit %d, %s", r.code, r.stderr)
	}
	if r := legate(t, "", "audit", "--config", cfg, "--verify", "--head="+head); r.code != 0 {
		t.Fatalf("--verify --head= after growth: exit %d, %s%s", r.code, r.stdout, r.stderr)
	}

	// The attacker removes the last two records and rewrites the head.
	db, err := bolt.Open(filepath.Join(filepath.Dir(cfg), "legate.db"), 0o600, nil)
	if err != nil {
		t.Fatal(err)
	}
	err = db.Update(func(tx *bolt.Tx) error {
		a, meta := tx.Bucket([]byte("audit")), tx.Bucket([]byte("meta"))
		seq := binary.BigEndian.Uint64(meta.Get([]byte("audit_seq")))
		for range 2 {
			if err := a.Delete(binary.BigEndian.AppendUint64(nil, seq)); err != nil {
				return err
			}
			seq--
		}
		var last struct{ Hash []byte }
		if err := json.Unmarshal(a.Get(binary.BigEndian.AppendUint64(nil, seq)), &last); err != nil {
			return err
		}
		if err := meta.Put([]byte("audit_seq"), binary.BigEndian.AppendUint64(nil, seq)); err != nil {
			return err
		}
		return meta.Put([]byte("audit_head"), last.Hash)
	})
	db.Close()
	if err != nil {
		t.Fatal(err)
	}

	r = legate(t, "", "audit", "--config", cfg, "--verify")
	if r.code != 0 || !strings.Contains(r.stdout, "audit chain OK") {
		t.Fatalf("plain --verify (kept as it was): exit %d, %q %q; want OK (the chain alone cannot tell)", r.code, r.stdout, r.stderr)
	}
	r = legate(t, "", "audit", "--config", cfg, "--verify", "--head", head)
	if r.code != 1 || !strings.Contains(r.stderr, "TRUNCATED") {
		t.Errorf("--verify --head %s after truncation: exit %d, stderr %q; want 1 and TRUNCATED", head, r.code, r.stderr)
	}
	wrong := m[1] + ":" + strings.Repeat("0", 64)
	r = legate(t, "", "audit", "--config", cfg, "--verify", "--head", wrong)
	if r.code != 1 {
		t.Errorf("--verify --head with a wrong hash: exit %d, want 1", r.code)
	}
	if r := legate(t, "", "audit", "--config", cfg, "--verify", "--head", "12:zz"); r.code != 2 {
		t.Errorf("--head 12:zz: exit %d, want 2 (usage)", r.code)
	}
	if r := legate(t, "", "audit", "--config", cfg, "--head", head); r.code != 2 {
		t.Errorf("--head SEQ:HASH without --verify: exit %d, want 2 (usage)", r.code)
	}
}

// adminRaw sends one request line to the admin socket and returns the raw
// answer, to check what the socket itself hands out.
func adminRaw(t *testing.T, sock, req string) string {
	t.Helper()
	c, err := net.Dial("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(10 * time.Second))
	if _, err := io.WriteString(c, req+"\n"); err != nil {
		t.Fatal(err)
	}
	line, err := bufio.NewReader(c).ReadString('\n')
	if err != nil {
		t.Fatalf("admin answer: %v (%q)", err, line)
	}
	return line
}

package store

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/json"
	"fmt"
	"runtime"
	"strings"
	"testing"
	"time"
)

// TestReplicaMemoryPerPassword measures what the replica costs per app
// password, loaded the way Open loads it (JSON decode, then compact).
func TestReplicaMemoryPerPassword(t *testing.T) {
	const n = 50_000
	vals := make([][]byte, n)
	now := time.Now().UTC()
	for i := range vals {
		h := sha256.Sum256(fmt.Appendf(nil, "%d", i))
		v, err := MarshalRecord(AppPassword{
			ID: NewID(), User: fmt.Sprintf("user%05d@example.org", i/5), Name: fmt.Sprintf("device %d", i%5),
			Created: now, HashAlg: HashHMACSHA256, Hash: h[:],
		})
		if err != nil {
			t.Fatal(err)
		}
		vals[i] = v
	}
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	r := NewReplica()
	for i, v := range vals {
		p, err := UnmarshalRecord(fmt.Sprint(i), v)
		if err != nil || !Usable(p) {
			t.Fatalf("decode %d: %v, %v", i, Usable(p), err)
		}
		r.byHash[[sha256.Size]byte(p.Hash)] = compact(p)
	}
	runtime.GC()
	runtime.ReadMemStats(&after)
	per := float64(after.HeapAlloc-before.HeapAlloc) / n
	runtime.KeepAlive(r)
	runtime.KeepAlive(vals) // freed during the measurement it would be subtracted
	t.Logf("replica: %.0f bytes per app password, %.1f MB for %d", per, per*n/1e6, n)
	if per > 1024 {
		t.Errorf("replica: got %.0f bytes per app password, want at most 1024", per)
	}
	if len(r.byHash) != n {
		t.Errorf("replica: got %d records, want %d", len(r.byHash), n)
	}
}

func TestHasherMatchesHMAC(t *testing.T) {
	key := []byte("0123456789abcdef0123456789abcdef")
	h := newHasher(key)
	for _, secret := range []string{"", "ABCD-EFGH-JKMN-PQRS", "abcdefghjkmnpqrs", " a b\tc-D ", strings.Repeat("X-", 1000), "short"} {
		m := hmac.New(sha256.New, key)
		m.Write([]byte(Normalize(secret)))
		want := m.Sum(nil)
		for range 2 { // the second call reuses a pooled instance
			got := h.sum(secret)
			if !hmac.Equal(got[:], want) {
				t.Errorf("sum(%.20q): got %x, want %x", secret, got, want)
			}
		}
	}
}

func TestCtEqualString(t *testing.T) {
	for _, tc := range []struct {
		in, ref string
		want    bool
	}{
		{"alice", "alice", true},
		{"", "", true},
		{"alice", "", false},
		{"", "alice", false},
		{"alice", "alicf", false},
		{"alice", "alice2", false},
		{"alice2", "alice", false},
		{"alice\x00", "alice", false},
	} {
		if got := ctEqualString(tc.in, tc.ref); got != tc.want {
			t.Errorf("ctEqualString(%q, %q): got %v, want %v", tc.in, tc.ref, got, tc.want)
		}
	}
}

// No JSON view of an app password carries its keyed hash (issue 17.8); the
// stored encoding does, byte-compatible with the records written before.
func TestAppPasswordJSONHasNoHash(t *testing.T) {
	p := AppPassword{ID: "abcdefgh", User: "alice", Name: "Laptop", Created: time.Unix(1e9, 0).UTC(),
		HashAlg: HashHMACSHA256, Hash: make([]byte, sha256.Size)}
	v, err := json.Marshal(p)
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(string(v), "hash") {
		t.Errorf("json.Marshal(AppPassword): got %s, want no hash", v)
	}
	stored, err := MarshalRecord(p)
	if err != nil {
		t.Fatal(err)
	}
	want := `{"id":"abcdefgh","user":"alice","name":"Laptop","created":"2001-09-09T01:46:40Z","hash_alg":"hmac-sha256","hash":"AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA="}`
	if string(stored) != want {
		t.Errorf("MarshalRecord: got %s, want %s", stored, want)
	}
	back, err := UnmarshalRecord("abcdefgh", stored)
	if err != nil || back.HashAlg != HashHMACSHA256 || len(back.Hash) != sha256.Size || back.Name != "Laptop" {
		t.Errorf("UnmarshalRecord: got %+v, %v", back, err)
	}
}

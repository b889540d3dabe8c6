package config

import (
	"strconv"
	"strings"
	"testing"
	"time"
)

func TestAuditRetain(t *testing.T) {
	c, err := Parse("legate.yaml", []byte(minimal))
	if err != nil {
		t.Fatal(err)
	}
	if got := c.Audit.Retain.Std(); got != 400*24*time.Hour {
		t.Errorf("default audit.retain: got %v, want 400d", got)
	}
	for _, tc := range []struct {
		src, wantErr string
		want         time.Duration
	}{
		{"audit:\n  retain: 30d\n", "", 30 * 24 * time.Hour},
		{"audit:\n  retain: 0s\n", "", 0},
		{"audit:\n  retain: 12h\n", "audit.retain: 12h0m0s is shorter than 1d", 0},
		{"audit:\n  retain: forever\n", "audit.retain", 0},
		{"audit:\n  keep: 30d\n", "audit.keep", 0},
	} {
		src := minimal + tc.src
		c, err := Parse("legate.yaml", []byte(src))
		if tc.wantErr != "" {
			line := strings.Count(minimal, "\n") + 2
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) || !strings.Contains(err.Error(), "legate.yaml:"+strconv.Itoa(line)) {
				t.Errorf("%q: got %v, want legate.yaml:%d and %q", tc.src, err, line, tc.wantErr)
			}
			continue
		}
		if err != nil {
			t.Errorf("%q: %v", tc.src, err)
			continue
		}
		if got := c.Audit.Retain.Std(); got != tc.want {
			t.Errorf("%q: got %v, want %v", tc.src, got, tc.want)
		}
	}
}

package daemon

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// TestSystemdUnit runs `systemd-analyze verify` on deploy/legate.service,
// with ExecStart pointing at a built binary (verify wants it to exist).
// Unknown keys only warn, so any output fails the test too.
func TestSystemdUnit(t *testing.T) {
	analyze, err := exec.LookPath("systemd-analyze")
	if err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatal("systemd-analyze not installed (Debian package systemd; scripts/install-deps.sh)")
		}
		t.Skip("systemd-analyze not installed")
	}
	unit, err := os.ReadFile(filepath.Join("..", "..", "deploy", "legate.service"))
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"Type=simple", "ExecReload=/bin/kill -HUP $MAINPID", "StateDirectory=legate",
		"RuntimeDirectory=legate", "ConfigurationDirectory=legate", "NoNewPrivileges=yes", "ProtectSystem=strict",
		"CapabilityBoundingSet=CAP_NET_BIND_SERVICE", "SystemCallFilter=@system-service",
		"RestrictAddressFamilies=AF_INET AF_INET6 AF_UNIX"} {
		if !strings.Contains(string(unit), "\n"+want+"\n") {
			t.Errorf("legate.service lacks %q", want)
		}
	}
	bin := legateBinary(t)
	text := strings.ReplaceAll(string(unit), "/usr/local/bin/legate", bin)
	path := filepath.Join(t.TempDir(), "legate.service")
	if err := os.WriteFile(path, []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command(analyze, "verify", path).CombinedOutput()
	if err != nil || len(strings.TrimSpace(string(out))) > 0 {
		t.Errorf("systemd-analyze verify: %v\n%s", err, out)
	}
}

// TestContainerfile checks what matters in deploy/Containerfile (no
// container engine here to build it).
func TestContainerfile(t *testing.T) {
	data, err := os.ReadFile(filepath.Join("..", "..", "deploy", "Containerfile"))
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"FROM docker.io/library/golang:1.26", "CGO_ENABLED=0", "USER 65532:65532",
		"VOLUME /var/lib/legate", "EXPOSE ", "./cmd/legate"} {
		if !strings.Contains(string(data), want) {
			t.Errorf("Containerfile lacks %q", want)
		}
	}
}

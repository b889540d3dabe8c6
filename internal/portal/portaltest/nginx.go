package portaltest

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/legate-proxy/legate/internal/testenv"
)

// NginxOptions configure StartNginx.
type NginxOptions struct {
	// Addr is where nginx listens with TLS, e.g. "127.0.0.1:18443"; required.
	Addr string
	// Backend is the portal's plain-HTTP address, e.g. "127.0.0.1:12345".
	Backend string
	// CertFile and KeyFile are nginx's certificate and key (PEM).
	CertFile, KeyFile string
}

// nginxConf is a private nginx terminating TLS for the portal, the way
// docs/portal.md shows: the client address and scheme go in
// X-Forwarded-For (set, not appended) and X-Forwarded-Proto, the Host
// header passes through.
const nginxConf = `daemon off;
master_process off;
worker_processes 1;
pid {{dir}}/nginx.pid;
error_log {{dir}}/error.log info;
events { worker_connections 64; }
http {
  access_log {{dir}}/access.log;
  client_body_temp_path {{dir}}/body;
  proxy_temp_path {{dir}}/proxy;
  fastcgi_temp_path {{dir}}/fastcgi;
  uwsgi_temp_path {{dir}}/uwsgi;
  scgi_temp_path {{dir}}/scgi;
  server {
    listen {{addr}} ssl;
    ssl_certificate {{cert}};
    ssl_certificate_key {{key}};
    location / {
      proxy_pass http://{{backend}};
      proxy_set_header Host $http_host;
      proxy_set_header X-Forwarded-For $remote_addr;
      proxy_set_header X-Forwarded-Proto $scheme;
    }
  }
}
`

// StartNginx runs a private nginx (nginx -c FILE -p DIR, never the system
// service) in front of the portal until the test ends. It skips the test
// when nginx is missing (fails when CI=true).
func StartNginx(t testing.TB, o NginxOptions) {
	t.Helper()
	testenv.Require(t, "nginx")
	bin, _ := testenv.LookPath("nginx")
	dir := t.TempDir()
	conf := strings.NewReplacer("{{dir}}", dir, "{{addr}}", o.Addr, "{{cert}}", o.CertFile,
		"{{key}}", o.KeyFile, "{{backend}}", o.Backend).Replace(nginxConf)
	confPath := filepath.Join(dir, "nginx.conf")
	if err := os.WriteFile(confPath, []byte(conf), 0o600); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(bin, "-c", confPath, "-p", dir, "-e", filepath.Join(dir, "error.log"))
	out, err := os.Create(filepath.Join(dir, "stdout.log"))
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stdout, cmd.Stderr = out, out
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		t.Fatalf("portaltest: start nginx: %v", err)
	}
	done := make(chan struct{})
	go func() { cmd.Wait(); out.Close(); close(done) }()
	t.Cleanup(func() {
		syscall.Kill(-cmd.Process.Pid, syscall.SIGTERM)
		select {
		case <-done:
		case <-time.After(5 * time.Second):
			syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
			<-done
		}
	})
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := testenv.WaitPort(ctx, o.Addr); err != nil {
		log, _ := os.ReadFile(filepath.Join(dir, "error.log"))
		t.Fatalf("portaltest: nginx did not listen on %s: %v\n%s", o.Addr, err, log)
	}
	select {
	case <-done:
		log, _ := os.ReadFile(filepath.Join(dir, "error.log"))
		t.Fatalf("portaltest: nginx exited: %s", log)
	default:
	}
}

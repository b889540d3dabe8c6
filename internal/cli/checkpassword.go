package cli

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"syscall"

	"github.com/legate-proxy/legate/internal/decision"
)

// exitStatus makes a command exit with this code without printing an error
// (checkpassword's 0/1/111 contract).
type exitStatus int

func (e exitStatus) Error() string { return fmt.Sprintf("exit status %d", int(e)) }

// runCheckpassword implements `legate checkpassword [--socket PATH] PROG
// [ARGS...]`, the checkpassword interface Dovecot's passdb calls (docs/contract.md §9):
// user\0password\0 on fd 3; exit 0 running PROG on allow (with USER set to
// the canonical name), 1 on deny, 111 when Legate cannot be asked.
func runCheckpassword(ctx context.Context, env Env, args []string) error {
	fs, _ := flags(env, "checkpassword")
	def := env.Getenv("LEGATE_DECISION_SOCKET")
	if def == "" {
		def = "/run/legate/decision.sock"
	}
	socket := fs.String("socket", def, "the daemon's decision socket (listen.decision)")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return err
		}
		return exitStatus(decision.ExitUnavailable)
	}
	prog := fs.Args()
	if len(prog) == 0 {
		fmt.Fprintln(env.Stderr, "legate checkpassword: no program to run on success (Dovecot passes checkpassword-reply)")
		return exitStatus(decision.ExitUnavailable)
	}
	fd3 := os.NewFile(3, "fd3")
	if fd3 == nil {
		fmt.Fprintln(env.Stderr, "legate checkpassword: fd 3 is not open")
		return exitStatus(decision.ExitUnavailable)
	}
	code, user, err := decision.Checkpassword(ctx, *socket, fd3, env.Getenv)
	fd3.Close()
	if err != nil {
		fmt.Fprintf(env.Stderr, "legate checkpassword: %v\n", err)
	}
	if code != decision.ExitAllow {
		return exitStatus(code)
	}
	path, err := exec.LookPath(prog[0])
	if err != nil {
		fmt.Fprintf(env.Stderr, "legate checkpassword: %v\n", err)
		return exitStatus(decision.ExitUnavailable)
	}
	envv := []string{"USER=" + user}
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "USER=") {
			envv = append(envv, kv)
		}
	}
	err = syscall.Exec(path, prog, envv)
	fmt.Fprintf(env.Stderr, "legate checkpassword: exec %s: %v\n", path, err)
	return exitStatus(decision.ExitUnavailable)
}

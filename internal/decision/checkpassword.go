package decision

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
)

// Exit codes of the checkpassword interface (as Dovecot reads them).
const (
	ExitAllow       = 0   // then argv[1] runs (checkpassword-reply)
	ExitDeny        = 1   // wrong credentials or refused by policy
	ExitUnavailable = 111 // temporary: Legate could not be asked
)

// MaxInput is the checkpassword limit on user\0password\0timestamp\0.
const MaxInput = 512

// Checkpassword is the client side of `legate checkpassword`: it reads
// "user\0password\0..." from in (fd 3, at most MaxInput bytes), takes the
// service, client address and secured flag from Dovecot's environment
// (SERVICE, TCPREMOTEIP, AUTH_SECURED) and asks the daemon at socket. It
// returns the exit code and, on allow, the canonical user name. err says why
// for the log (never containing the password).
func Checkpassword(ctx context.Context, socket string, in io.Reader, getenv func(string) string) (code int, user string, err error) {
	if getenv("AUTHORIZED") != "" {
		return ExitUnavailable, "", errors.New("userdb lookups (AUTHORIZED) are not supported: use checkpassword as a passdb only")
	}
	buf, err := io.ReadAll(io.LimitReader(in, MaxInput+1))
	if err != nil {
		return ExitUnavailable, "", fmt.Errorf("read fd 3: %w", err)
	}
	if len(buf) > MaxInput {
		return ExitDeny, "", fmt.Errorf("input longer than %d bytes", MaxInput)
	}
	fields := bytes.SplitN(buf, []byte{0}, 3)
	if len(fields) < 3 || len(fields[0]) == 0 {
		return ExitDeny, "", errors.New("input is not user\\0password\\0")
	}
	req := Request{User: string(fields[0]), Password: string(fields[1]), Service: getenv("SERVICE"),
		IP: getenv("TCPREMOTEIP"), Secured: getenv("AUTH_SECURED") != ""}
	a, err := Ask(ctx, socket, req)
	if err != nil {
		return ExitUnavailable, "", err
	}
	if !a.Allow {
		if a.Outcome == "unavailable" {
			return ExitUnavailable, "", errors.New("legate: directory or store unavailable")
		}
		return ExitDeny, "", fmt.Errorf("denied: %s (%s)", a.Outcome, a.Rule)
	}
	return ExitAllow, a.User, nil
}

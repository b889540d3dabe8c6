// Command legate is the legacy-authentication proxy: see `legate help`.
package main

import (
	"context"
	"os"

	"github.com/legate-proxy/legate/internal/cli"
)

func main() {
	os.Exit(cli.Run(context.Background(), os.Args[1:], cli.Env{Stdin: os.Stdin, Stdout: os.Stdout, Stderr: os.Stderr}))
}

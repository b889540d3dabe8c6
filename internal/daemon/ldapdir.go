package daemon

import (
	"fmt"

	"github.com/legate-proxy/legate/internal/config"
	"github.com/legate-proxy/legate/internal/directory"
)

func buildLDAPDirectory(cfg *config.Config) (directory.Directory, error) {
	return nil, fmt.Errorf("directory.type ldap: not wired yet")
}

package daemon

import "github.com/legate-proxy/legate/internal/config"

// listenerSpecs lists the protocol listeners; each front-end adds its own.
func (d *Daemon) listenerSpecs() []listenerSpec {
	return nil
}

var _ = config.Config{}

package store

import (
	"fmt"

	"github.com/legate-proxy/legate/internal/keyfile"
)

// KeySize is the length in bytes of the HMAC key file.
const KeySize = 32

// LoadKey reads the HMAC key at path, creating it (KeySize random
// bytes, mode 0600, fsynced together with its directory) when it does not
// exist. It refuses a key file that others can read or write, or whose length
// is not KeySize: a truncated or swapped key would silently make every stored
// app password fail, so it is better not to start.
func LoadKey(path string) ([]byte, error) {
	key, err := keyfile.LoadOrCreate(path, KeySize)
	if err != nil {
		return nil, fmt.Errorf("store: %w", err)
	}
	return key, nil
}

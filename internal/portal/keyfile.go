package portal

import (
	"fmt"

	"github.com/legate-proxy/legate/internal/keyfile"
)

// KeySize is the length in bytes of the session key file (an AES-256 key).
const KeySize = 32

// LoadOrCreateKey reads the session key at path, creating it (KeySize random
// bytes, mode 0600, synced with its directory) when it does not exist, like
// the store's HMAC key. It refuses a key file others can read or write, or
// one of the wrong length.
func LoadOrCreateKey(path string) ([]byte, error) {
	key, err := keyfile.LoadOrCreate(path, KeySize)
	if err != nil {
		return nil, fmt.Errorf("portal: session %w", err)
	}
	return key, nil
}

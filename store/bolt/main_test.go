package bolt

import (
	"testing"

	"go.uber.org/goleak"
)

// TestMain fails the package if any goroutine (such as a Store's flusher)
// outlives the tests.
func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

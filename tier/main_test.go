package tier_test

import (
	"testing"

	"go.uber.org/goleak"

	"github.com/stratalog/strata/internal/leakcheck"
)

// TestMain fails the package's tests if they leave goroutines behind. An
// S3 store's Close closes the idle connections of its transport; one whose
// response was still being read (a body closed unread, a request the test
// abandoned) goes back to the idle pool after Close and is closed by
// IdleConnTimeout instead: its two net/http goroutines are not a leak of
// the store's.
func TestMain(m *testing.M) {
	leakcheck.Main(m,
		goleak.IgnoreAnyFunction("net/http.(*persistConn).readLoop"),
		goleak.IgnoreAnyFunction("net/http.(*persistConn).writeLoop"),
	)
}

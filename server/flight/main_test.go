package flightserver_test

import (
	"testing"

	"github.com/stratalog/strata/internal/leakcheck"
)

// TestMain fails the package's tests if they leave goroutines behind.
func TestMain(m *testing.M) { leakcheck.Main(m) }

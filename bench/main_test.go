package bench

import (
	"os"
	"testing"

	"github.com/stratalog/strata/internal/leakcheck"
)

// TestMain fails the package's tests if they leave goroutines behind. Run
// with childEnv set, the binary is BenchmarkColdReplayAPI's broker
// instead.
func TestMain(m *testing.M) {
	if spec := os.Getenv(childEnv); spec != "" {
		os.Exit(runBrokerChild(spec))
	}
	leakcheck.Main(m)
}

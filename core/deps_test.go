package core_test

import (
	"os/exec"
	"strings"
	"testing"
)

// forbiddenDeps are what the core must not depend on, directly or through
// its dependencies: wire protocols belong to the front ends, and metrics
// libraries to the adapters of the core's hooks (package metrics).
var forbiddenDeps = []string{
	"google.golang.org/grpc",
	"google.golang.org/protobuf",
	"github.com/stratalog/strata/api/stratapb",
	"github.com/prometheus",
	"github.com/stratalog/strata/metrics",
}

// The core knows nothing of gRPC or protobuf: go list -deps of the
// package (tests excluded) names none of them.
func TestCoreImportsNoWireProtocol(t *testing.T) {
	out, err := exec.Command("go", "list", "-deps", "github.com/stratalog/strata/core").CombinedOutput()
	if err != nil {
		t.Fatalf("go list -deps: %v\n%s", err, out)
	}
	for _, dep := range strings.Fields(string(out)) {
		for _, bad := range forbiddenDeps {
			if dep == bad || strings.HasPrefix(dep, bad+"/") {
				t.Errorf("package core depends on %s: the core is protocol-free and knows no metrics library; move the code that needs it to a front end (server/grpc) or an adapter of the core's hooks (metrics)", dep)
			}
		}
	}
}

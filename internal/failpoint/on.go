//go:build failpoints

package failpoint

import (
	"fmt"
	"os"
	"strconv"
	"strings"
	"sync"
)

// Enabled reports whether this binary was built with failpoints.
const Enabled = true

var (
	mu    sync.Mutex
	armed = parse(os.Getenv("STRATA_FAILPOINTS"))
)

func parse(s string) map[string]int {
	m := map[string]int{}
	for _, f := range strings.Split(s, ",") {
		f = strings.TrimSpace(f)
		if f == "" {
			continue
		}
		name, n, ok := strings.Cut(f, "=")
		count := 1
		if ok {
			c, err := strconv.Atoi(n)
			if err != nil || c < 1 {
				fmt.Fprintf(os.Stderr, "failpoint: bad STRATA_FAILPOINTS entry %q: use name=N with N >= 1\n", f)
				os.Exit(2)
			}
			count = c
		}
		m[name] = count
	}
	return m
}

// Hit counts a pass through the named point and crashes the process when
// the point is armed and this is the pass it was armed for.
func Hit(name string) {
	mu.Lock()
	n, ok := armed[name]
	if ok {
		n--
		armed[name] = n
	}
	mu.Unlock()
	if ok && n == 0 {
		fmt.Fprintf(os.Stderr, "failpoint %s: crashing\n", name)
		os.Exit(ExitCode)
	}
}

package main

import (
	"bufio"
	"bytes"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/stratalog/strata/auth"
	"github.com/stratalog/strata/internal/testcerts"
)

var flightListenRE = regexp.MustCompile(`flight listening" flight_addr=(127\.0\.0\.1:\d+)`)

// serveFlightBin starts `strata serve` with its Flight server on a free
// loopback port (the flag from the environment, as STRATA_FLIGHT_LISTEN)
// and returns its gRPC and Flight addresses; env is more of its
// environment.
func serveFlightBin(t *testing.T, dataDir string, env ...string) (cmd *exec.Cmd, addr, flightAddr string) {
	t.Helper()
	cmd = exec.Command(binary, "serve", "--listen", "127.0.0.1:0", "--data-dir", dataDir, "--seal-bytes", "256KiB", "--local-retention-bytes", "0")
	cmd.Env = append(append(os.Environ(), "STRATA_FLIGHT_LISTEN=127.0.0.1:0"), env...)
	stderr, _ := cmd.StderrPipe()
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	found, ffound := make(chan string, 1), make(chan string, 1)
	logs := make(chan string, 1)
	go func() {
		var all strings.Builder
		sc := bufio.NewScanner(stderr)
		for sc.Scan() {
			all.WriteString(sc.Text() + "\n")
			if m := listenRE.FindStringSubmatch(sc.Text()); m != nil {
				found <- m[1]
			}
			if m := flightListenRE.FindStringSubmatch(sc.Text()); m != nil {
				ffound <- m[1]
			}
		}
		logs <- all.String()
	}()
	for addr == "" || flightAddr == "" {
		select {
		case addr = <-found:
		case flightAddr = <-ffound:
		case l := <-logs:
			t.Fatalf("broker exited before listening:\n%s", l)
		case <-time.After(60 * time.Second):
			cmd.Process.Kill()
			t.Fatalf("broker did not start")
		}
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	return cmd, addr, flightAddr
}

var flightTotalRE = regexp.MustCompile(`(?m)^total: (\d+) rows in (\d+) batches, [0-9.]+ MB, \S+: \d+ rows/s, [0-9.]+ MB/s$`)

// A real `strata serve --flight-listen` process, read by `strata flight
// get`: every record of the topic, one partition's offset range, a time
// range, the rows printed; bad input fails with a message; SIGTERM stops
// both servers cleanly.
func TestFlightServeAndGet(t *testing.T) {
	cmd, addr, faddr := serveFlightBin(t, t.TempDir())
	cli(t, "", nil, "topic", "create", "fl", "--partitions", "2", "--broker", addr)
	var in strings.Builder
	const n = 3000
	for i := range n {
		fmt.Fprintf(&in, "k%d=value-%d-%s\n", i%10, i, strings.Repeat("x", 100))
	}
	if got := strings.TrimSpace(cli(t, in.String(), nil, "produce", "fl", "--key-separator", "=", "--broker", addr)); got != fmt.Sprint(n) {
		t.Fatalf("produce acknowledged %q, want %d", got, n)
	}
	hw := hwms(t, cli(t, "", nil, "topic", "describe", "fl", "--broker", addr))
	if len(hw) != 2 || hw[0]+hw[1] != n || hw[0] < 10 {
		t.Fatalf("high watermarks %v", hw)
	}

	out := cli(t, "", nil, "flight", "get", "fl", "--flight", faddr)
	m := flightTotalRE.FindStringSubmatch(out)
	if m == nil || m[1] != fmt.Sprint(n) {
		t.Fatalf("flight get of the whole topic printed:\n%s\nwant a total of %d rows", out, n)
	}
	for p := range 2 {
		if want := fmt.Sprintf("partition %d: offsets [0, %d): %d rows", p, hw[p], hw[p]); !strings.Contains(out, want) {
			t.Fatalf("flight get printed:\n%s\nwant %q", out, want)
		}
	}

	out = cli(t, "", nil, "flight", "get", "fl", "--flight", faddr, "--partition", "1", "--from-offset", "3", "--to-offset", "10", "--print")
	if !strings.Contains(out, "partition 1: offsets [3, 10): 7 rows in 1 batches") || !strings.Contains(out, "total: 7 rows") {
		t.Fatalf("flight get of offsets [3, 10) printed:\n%s", out)
	}
	var rows []map[string]any
	dec := json.NewDecoder(strings.NewReader(out))
	for {
		var r map[string]any
		if dec.Decode(&r) != nil {
			break
		}
		rows = append(rows, r)
	}
	if len(rows) != 7 || rows[0]["offset"] != float64(3) || rows[0]["partition"] != float64(1) {
		t.Fatalf("printed rows %v, want 7 from offset 3 of partition 1", rows)
	}
	val, _ := base64.StdEncoding.DecodeString(fmt.Sprint(rows[0]["value"]))
	key, _ := base64.StdEncoding.DecodeString(fmt.Sprint(rows[0]["key"]))
	if !bytes.HasPrefix(val, []byte("value-")) || !bytes.HasPrefix(key, []byte("k")) {
		t.Fatalf("printed row %v: key %q value %q", rows[0], key, val)
	}

	// Every record was produced in the last minute, none in the future.
	from := time.Now().Add(-time.Hour).UTC().Format(time.RFC3339)
	to := fmt.Sprint(time.Now().Add(time.Hour).UnixMilli())
	out = cli(t, "", nil, "flight", "get", "fl", "--flight", faddr, "--from-time", from, "--to-time", to)
	if m := flightTotalRE.FindStringSubmatch(out); m == nil || m[1] != fmt.Sprint(n) {
		t.Fatalf("flight get of the last hour printed:\n%s\nwant %d rows", out, n)
	}
	out = cli(t, "", nil, "flight", "get", "fl", "--flight", faddr, "--to-time", from)
	if m := flightTotalRE.FindStringSubmatch(out); m == nil || m[1] != "0" {
		t.Fatalf("flight get of before an hour ago printed:\n%s\nwant 0 rows", out)
	}

	for _, tc := range []struct {
		args []string
		says string
	}{
		{[]string{"flight", "get", "nope", "--flight", faddr}, "not found: topic \"nope\" does not exist"},
		{[]string{"flight", "get", "fl", "--flight", faddr, "--partition", "5"}, "partitions 0-1"},
		{[]string{"flight", "get", "fl", "--flight", faddr, "--from-offset", "3"}, "add --partition P"},
		{[]string{"flight", "get", "fl", "--flight", faddr, "--partition", "0", "--to-offset", "999999"}, "out of range: to_offset 999999"},
		{[]string{"flight", "get", "fl", "--flight", faddr, "--from-time", "noon"}, "RFC 3339"},
		{[]string{"flight", "put"}, "usage: strata flight get"},
	} {
		c := exec.Command(binary, tc.args...)
		var errb bytes.Buffer
		c.Stderr = &errb
		if err := c.Run(); err == nil || !strings.Contains(errb.String(), tc.says) {
			t.Errorf("strata %v: %v, stderr %q; want a failure saying %q", tc.args, err, errb.String(), tc.says)
		}
	}

	cmd.Process.Signal(syscall.SIGTERM)
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("broker exited with %v after SIGTERM", err)
		}
	case <-time.After(60 * time.Second):
		t.Fatal("broker did not stop within 60s of SIGTERM")
	}
}

// The Flight server has the broker's TLS, tokens and ACLs: a principal
// without an ACL is denied, no token is unauthenticated, consume on the
// topic lets a principal read it.
func TestFlightOverTLSWithTokens(t *testing.T) {
	ca := testcerts.NewCA(t, "flight")
	srv := ca.Issue(t, "broker", testcerts.Options{CommonName: "broker"})
	adminTok, aliceTok := auth.NewToken(), auth.NewToken()
	tokenFile := writeFile(t, "tokens.yaml", "principals:\n  - name: admin\n    tokens: [\""+mustHash(t, adminTok)+"\"]\n  - name: alice\n    tokens: [\""+mustHash(t, aliceTok)+"\"]\n")
	_, addr, faddr := serveFlightBin(t, t.TempDir(), "STRATA_TLS_CERT="+srv.CertFile, "STRATA_TLS_KEY="+srv.KeyFile, "STRATA_TOKEN_FILE="+tokenFile, "STRATA_SUPER_USERS=admin")
	admin, alice := []string{"STRATA_TOKEN=" + adminTok}, []string{"STRATA_TOKEN=" + aliceTok}
	cli(t, "", admin, "topic", "create", "t", "--partitions", "1", "--broker", addr, "--tls-ca", ca.CertFile)
	cli(t, "a\nb\nc\n", admin, "produce", "t", "--broker", addr, "--tls-ca", ca.CertFile)
	get := func(args ...string) []string {
		return append([]string{"flight", "get", "t", "--flight", faddr}, args...)
	}

	if out := cli(t, "", admin, get("--tls-ca", ca.CertFile)...); !strings.Contains(out, "total: 3 rows") {
		t.Fatalf("admin's flight get over TLS:\n%s", out)
	}
	if e := cliFails(t, "", alice, get("--tls-ca", ca.CertFile)...); !strings.Contains(e, "permission denied") || !strings.Contains(e, `principal "alice" may not describe on topic "t"`) {
		t.Fatalf("alice's flight get without an ACL:\n%s", e)
	}
	if e := cliFails(t, "", []string{"STRATA_TOKEN="}, get("--tls-ca", ca.CertFile)...); !strings.Contains(e, "unauthenticated") {
		t.Fatalf("flight get without a token:\n%s", e)
	}
	if e := cliFails(t, "", admin, get()...); !strings.Contains(e, "sent over TLS only") {
		t.Fatalf("a token without TLS flags:\n%s", e)
	}
	cli(t, "", admin, "acl", "add", "--principal", "alice", "--topic", "t", "--operation", "consume", "--broker", addr, "--tls-ca", ca.CertFile)
	if out := cli(t, "", alice, get("--tls-ca", ca.CertFile, "--print")...); !strings.Contains(out, "total: 3 rows") || strings.Count(out, `"offset":`) != 3 {
		t.Fatalf("alice's flight get with consume on t:\n%s", out)
	}
}

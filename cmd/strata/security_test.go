package main

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stratalog/strata/auth"
	"github.com/stratalog/strata/internal/testcerts"
)

// cliFails runs the CLI expecting it to fail, and returns its stderr.
func cliFails(t testing.TB, stdin string, env []string, args ...string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, binary, args...)
	cmd.Stdin = strings.NewReader(stdin)
	cmd.Env = append(os.Environ(), env...)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	if err := cmd.Run(); err == nil {
		t.Fatalf("strata %v succeeded, want a failure:\n%s", args, out.String())
	}
	return errb.String()
}

func writeFile(t testing.TB, name, data string) string {
	p := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(p, []byte(data), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// A real broker over TLS with bearer tokens: the CLI authenticates with
// STRATA_TOKEN, a principal without an ACL is denied and nothing reaches
// the log, `strata acl add` grants, and every refusal is logged without
// the token.
func TestEndToEndTLSAndTokens(t *testing.T) {
	ca := testcerts.NewCA(t, "e2e")
	srv := ca.Issue(t, "broker", testcerts.Options{CommonName: "broker"})
	adminTok, aliceTok := auth.NewToken(), auth.NewToken()
	tokenFile := writeFile(t, "tokens.yaml", "principals:\n  - name: admin\n    tokens: [\""+mustHash(t, adminTok)+"\"]\n  - name: alice\n    tokens: [\""+mustHash(t, aliceTok)+"\"]\n")
	s := serveBin(t, t.TempDir(), "", "STRATA_TLS_CERT="+srv.CertFile, "STRATA_TLS_KEY="+srv.KeyFile, "STRATA_TOKEN_FILE="+tokenFile, "STRATA_SUPER_USERS=admin")
	admin := []string{"STRATA_TOKEN=" + adminTok}
	alice := []string{"STRATA_TOKEN=" + aliceTok}
	conn := func(args ...string) []string { return append(args, "--broker", s.addr, "--tls-ca", ca.CertFile) }

	cli(t, "", admin, conn("topic", "create", "t", "--partitions", "1")...)
	if e := cliFails(t, "a\n", alice, conn("produce", "t")...); !strings.Contains(e, "permission denied") || !strings.Contains(e, `principal "alice" may not describe on topic "t"`) {
		t.Fatalf("alice's produce without an ACL:\n%s", e)
	}
	if e := cliFails(t, "", alice, conn("topic", "delete", "t")...); !strings.Contains(e, "permission denied") {
		t.Fatalf("alice's delete:\n%s", e)
	}
	if e := cliFails(t, "", []string{"STRATA_TOKEN=" + auth.NewToken()}, conn("topic", "list")...); !strings.Contains(e, "unauthenticated") {
		t.Fatalf("a wrong token:\n%s", e)
	}
	if e := cliFails(t, "", []string{"STRATA_TOKEN="}, conn("topic", "list")...); !strings.Contains(e, "unauthenticated") || !strings.Contains(e, "no bearer token") {
		t.Fatalf("no token:\n%s", e)
	}
	if e := cliFails(t, "", alice, "topic", "list", "--broker", s.addr); !strings.Contains(e, "sent over TLS only") {
		t.Fatalf("a token without TLS flags:\n%s", e)
	}
	// A client that does not trust the broker's certificate (a self-signed
	// one, or another CA's) is told what to give.
	if e := cliFails(t, "", admin, "topic", "list", "--broker", s.addr, "--tls-ca", testcerts.NewCA(t, "other").CertFile); !strings.Contains(e, "not signed by a CA in --tls-ca") {
		t.Fatalf("an untrusted broker certificate:\n%s", e)
	}
	if hw := hwms(t, cli(t, "", admin, conn("topic", "describe", "t")...)); len(hw) != 1 || hw[0] != 0 {
		t.Fatalf("high watermarks %v after denied produces, want [0]", hw)
	}

	if out := cli(t, "", admin, conn("acl", "add", "--principal", "alice", "--topic", "t", "--operation", "produce,consume")...); !strings.Contains(out, "added") {
		t.Fatalf("acl add: %s", out)
	}
	if e := cliFails(t, "", admin, conn("acl", "add", "--principal", "alice", "--topic", "t*", "--operation", "produce")...); !strings.Contains(e, "can match no topic") {
		t.Fatalf("an invalid pattern:\n%s", e)
	}
	if got := strings.TrimSpace(cli(t, "a\nb\nc\n", alice, conn("produce", "t")...)); got != "3" {
		t.Fatalf("alice's produce after the grant acknowledged %q, want 3", got)
	}
	if out := cli(t, "", alice, conn("consume", "t", "--partition", "0", "--from", "earliest", "--max", "3")...); strings.Count(out, "\n") != 3 {
		t.Fatalf("alice's consume after the grant:\n%s", out)
	}
	if out := cli(t, "", admin, conn("acl", "list")...); !strings.Contains(out, "alice") || !strings.Contains(out, "produce,consume") {
		t.Fatalf("acl list:\n%s", out)
	}
	var listed []struct {
		Principal    string   `json:"principal"`
		ResourceType string   `json:"resource_type"`
		Pattern      string   `json:"pattern"`
		Name         *string  `json:"name"`
		Operations   []string `json:"operations"`
	}
	if err := json.Unmarshal([]byte(cli(t, "", admin, conn("acl", "list", "-o", "json")...)), &listed); err != nil {
		t.Fatalf("acl list -o json: %v", err)
	}
	found := false
	for _, a := range listed {
		if a.Principal == "alice" && a.ResourceType == "topic" && a.Name != nil && *a.Name == "t" && a.Pattern == "literal" && strings.Join(a.Operations, ",") == "produce,consume" {
			found = true
		}
	}
	if !found {
		t.Fatalf("acl list -o json has no literal produce,consume ACL for alice on t: %+v", listed)
	}
	if e := cliFails(t, "", alice, conn("acl", "list")...); !strings.Contains(e, "describe on cluster") {
		t.Fatalf("alice's acl list:\n%s", e)
	}
	s.stop(t)
	logs := s.logs.String()
	if !strings.Contains(logs, "principal=alice") || !strings.Contains(logs, "authentication failed") {
		t.Fatalf("the broker did not log the refusals:\n%s", logs)
	}
	for _, tok := range []string{adminTok, aliceTok} {
		if strings.Contains(logs, tok) {
			t.Fatal("the broker logged a token")
		}
	}
}

func mustHash(t testing.TB, tok string) string {
	h, err := auth.HashToken(tok)
	if err != nil {
		t.Fatal(err)
	}
	return h
}

// A broker told to enforce security it cannot set up does not start.
func TestServeRefusesBadSecurityConfig(t *testing.T) {
	ca := testcerts.NewCA(t, "bad")
	good := ca.Issue(t, "good", testcerts.Options{CommonName: "broker"})
	expired := ca.Issue(t, "expired", testcerts.Options{CommonName: "broker", NotBefore: time.Now().Add(-48 * time.Hour), NotAfter: time.Now().Add(-24 * time.Hour)})
	for _, tc := range []struct {
		name string
		args []string
		says string
	}{
		{"token file that does not parse", []string{"--token-file", writeFile(t, "bad.yaml", "principals: [unclosed")}, "does not parse"},
		{"plaintext token", []string{"--token-file", writeFile(t, "plain.yaml", "principals:\n  - name: a\n    token: "+auth.NewToken()+"\n")}, "plaintext token"},
		{"expired certificate", []string{"--tls-cert", expired.CertFile, "--tls-key", expired.KeyFile}, "expired at"},
		{"client CA without TLS", []string{"--tls-client-ca", ca.CertFile}, "needs TLS"},
		{"super users without authentication", []string{"--super-users", "admin", "--tls-cert", good.CertFile, "--tls-key", good.KeyFile}, "needs authentication"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := cliFails(t, "", nil, append([]string{"serve", "--listen", "127.0.0.1:0", "--data-dir", t.TempDir()}, tc.args...)...)
			if !strings.Contains(e, tc.says) {
				t.Fatalf("serve %v: want an error saying %q, got:\n%s", tc.args, tc.says, e)
			}
		})
	}
}

package auth_test

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stratalog/strata/auth"
)

func TestTokenFile(t *testing.T) {
	tok := auth.NewToken()
	h, err := auth.HashToken(tok)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(h, "sha256:") || len(h) != len("sha256:")+64 {
		t.Fatalf("hash %q", h)
	}
	yamlFile := "principals:\n  - name: alice\n    tokens: [\"" + h + "\"]\n    produce_bytes_per_second: 1000\n  - name: svc\n    fetch_bytes_per_second: 0\n"
	jsonFile := `{"principals":[{"name":"alice","tokens":["` + h + `"]}]}`
	for name, file := range map[string]string{"yaml": yamlFile, "json": jsonFile} {
		ts, err := auth.ParseTokens([]byte(file))
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if p, ok := ts.Principal(tok); !ok || p != "alice" {
			t.Fatalf("%s: token's principal %q %v", name, p, ok)
		}
		if _, ok := ts.Principal(tok + "x"); ok {
			t.Fatalf("%s: a wrong token was accepted", name)
		}
	}
	ts, _ := auth.ParseTokens([]byte(yamlFile))
	q, err := auth.NewQuotas(auth.QuotaConfigFromTokens(auth.QuotaConfig{ProduceBytesPerSecond: 7, FetchBytesPerSecond: 9}, ts))
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		who  string
		kind auth.QuotaKind
		want int64
	}{{"alice", auth.ProduceQuota, 1000}, {"alice", auth.FetchQuota, 9}, {"svc", auth.FetchQuota, 0}, {"svc", auth.ProduceQuota, 7}, {"other", auth.ProduceQuota, 7}} {
		if got := q.Rate(c.who, c.kind); got != c.want {
			t.Errorf("rate of %s kind %d: %d, want %d", c.who, c.kind, got, c.want)
		}
	}
}

func TestTokenFileBadInputIsAClearError(t *testing.T) {
	secret := auth.NewToken()
	for _, tc := range []struct{ name, file, says string }{
		{"not yaml", "principals: [unclosed", "does not parse as YAML"},
		{"not json", `{"principals": [`, "does not parse as JSON"},
		{"unknown field", "principals:\n  - name: a\n    tokenz: []\n", "does not parse"},
		{"plaintext token", "principals:\n  - name: alice\n    token: " + secret + "\n", "plaintext token"},
		{"plaintext in tokens", "principals:\n  - name: alice\n    tokens: [" + secret + "]\n", "is not a hash"},
		{"short hash", "principals:\n  - name: alice\n    tokens: [\"sha256:abcd\"]\n", "is not a hash"},
		{"empty", "", "names no principals"},
		{"twice", "principals:\n  - name: a\n  - name: a\n", "twice"},
		{"bad name", "principals:\n  - name: \"a,b\"\n", "invalid principal"},
		{"negative quota", "principals:\n  - name: a\n    produce_bytes_per_second: -1\n", "bytes per second"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := auth.ParseTokens([]byte(tc.file))
			if err == nil || !strings.Contains(err.Error(), tc.says) {
				t.Fatalf("got %v, want an error saying %q", err, tc.says)
			}
			if strings.Contains(err.Error(), secret) {
				t.Fatalf("the error quotes the token: %v", err)
			}
		})
	}
	if _, err := auth.LoadTokenFile(filepath.Join(t.TempDir(), "missing.yaml")); err == nil || !os.IsNotExist(unwrapAll(err)) {
		t.Fatalf("a missing token file: %v", err)
	}
	if _, err := auth.HashToken("short"); err == nil || !strings.Contains(err.Error(), "strata token new") {
		t.Fatalf("a short token was hashed: %v", err)
	}
}

func unwrapAll(err error) error {
	for {
		u, ok := err.(interface{ Unwrap() error })
		if !ok {
			return err
		}
		err = u.Unwrap()
	}
}

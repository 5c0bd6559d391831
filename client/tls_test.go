package client_test

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stratalog/strata/client"
	"github.com/stratalog/strata/internal/testcerts"
)

func TestLoadTLSConfigBadInput(t *testing.T) {
	ca := testcerts.NewCA(t, "c")
	good := ca.Issue(t, "good", testcerts.Options{CommonName: "alice", Client: true})
	expired := ca.Issue(t, "old", testcerts.Options{CommonName: "alice", Client: true, NotBefore: time.Now().Add(-48 * time.Hour), NotAfter: time.Now().Add(-time.Hour)})
	garbage := filepath.Join(t.TempDir(), "x.pem")
	os.WriteFile(garbage, []byte("nope"), 0o600)
	for _, tc := range []struct {
		name  string
		files client.TLSFiles
		says  string
	}{
		{"CA not PEM", client.TLSFiles{CAFile: garbage}, "holds no PEM certificate"},
		{"CA missing", client.TLSFiles{CAFile: garbage + ".none"}, "no such file"},
		{"cert without key", client.TLSFiles{CertFile: good.CertFile}, "both the certificate and its key"},
		{"expired client certificate", client.TLSFiles{CertFile: expired.CertFile, KeyFile: expired.KeyFile}, "expired at"},
	} {
		if _, err := client.LoadTLSConfig(tc.files); err == nil || !strings.Contains(err.Error(), tc.says) {
			t.Errorf("%s: got %v, want an error saying %q", tc.name, err, tc.says)
		}
	}
	cfg, err := client.LoadTLSConfig(client.TLSFiles{CAFile: ca.CertFile, CertFile: good.CertFile, KeyFile: good.KeyFile, ServerName: "b"})
	if err != nil || cfg.RootCAs == nil || len(cfg.Certificates) != 1 || cfg.ServerName != "b" {
		t.Fatalf("a good config: %+v %v", cfg, err)
	}
}

// WithToken never sends a token over a plaintext connection: Dial
// refuses the combination.
func TestTokenNeedsTLS(t *testing.T) {
	c, err := client.Dial("127.0.0.1:1", client.WithToken("strata_secret-secret-secret-secret"))
	if err == nil {
		c.Close()
		t.Fatal("a token over plaintext was accepted")
	}
	if !strings.Contains(err.Error(), "transport level security") || strings.Contains(err.Error(), "secret") {
		t.Fatalf("a token over plaintext: %v", err)
	}
}

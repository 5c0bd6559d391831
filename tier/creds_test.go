package tier_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stratalog/strata/internal/testenv"
	"github.com/stratalog/strata/tier"
)

// clearCredsEnv empties every variable of the credential chain, so a test
// sees only the source it sets. AWS_EC2_METADATA_DISABLED keeps a chain
// that found nothing from asking an instance metadata service.
func clearCredsEnv(t *testing.T) {
	for _, v := range []string{"AWS_ACCESS_KEY_ID", "AWS_ACCESS_KEY", "AWS_SECRET_ACCESS_KEY", "AWS_SECRET_KEY", "AWS_SESSION_TOKEN",
		"MINIO_ROOT_USER", "MINIO_ROOT_PASSWORD", "MINIO_ACCESS_KEY", "MINIO_SECRET_KEY", "AWS_PROFILE",
		"AWS_WEB_IDENTITY_TOKEN_FILE", "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI", "AWS_CONTAINER_CREDENTIALS_FULL_URI"} {
		t.Setenv(v, "")
	}
	dir := t.TempDir()
	t.Setenv("AWS_SHARED_CREDENTIALS_FILE", filepath.Join(dir, "no-credentials"))
	t.Setenv("AWS_CONFIG_FILE", filepath.Join(dir, "no-config"))
	t.Setenv("AWS_EC2_METADATA_DISABLED", "true")
}

// openByURL opens a fresh bucket of the test MinIO through a URL without
// keys (the chain supplies them) and round-trips an object.
func openByURL(t *testing.T, ep testenv.MinIOEndpoint) (*tier.S3Store, error) {
	t.Helper()
	b := make([]byte, 6)
	rand.Read(b)
	st, err := tier.Open(context.Background(), fmt.Sprintf("s3://strata-creds-%s/p?endpoint=%s&insecure=true&create=true", hex.EncodeToString(b), ep.Addr))
	if err != nil {
		return nil, err
	}
	t.Cleanup(func() { st.Close() })
	s3 := st.(*tier.S3Store)
	ctx := context.Background()
	if _, err := s3.Put(ctx, "k", bytes.NewReader([]byte("v")), 1); err != nil {
		return s3, err
	}
	rc, _, err := s3.Get(ctx, "k")
	if err != nil {
		return s3, err
	}
	rc.Close()
	return s3, nil
}

func TestS3CredentialsFromEnvironment(t *testing.T) {
	ep := testenv.MinIO(t)
	clearCredsEnv(t)
	t.Setenv("AWS_ACCESS_KEY_ID", ep.AccessKey)
	t.Setenv("AWS_SECRET_ACCESS_KEY", ep.SecretKey)
	s, err := openByURL(t, ep)
	if err != nil {
		t.Fatalf("keys from AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY: %v", err)
	}
	if got := s.CredentialSource(); got != tier.CredsEnvAWS {
		t.Fatalf("credential source %q; want %q", got, tier.CredsEnvAWS)
	}

	clearCredsEnv(t)
	t.Setenv("MINIO_ROOT_USER", ep.AccessKey)
	t.Setenv("MINIO_ROOT_PASSWORD", ep.SecretKey)
	if s, err = openByURL(t, ep); err != nil {
		t.Fatalf("keys from MINIO_ROOT_USER/MINIO_ROOT_PASSWORD: %v", err)
	}
	if got := s.CredentialSource(); got != tier.CredsEnvMinIO {
		t.Fatalf("credential source %q; want %q", got, tier.CredsEnvMinIO)
	}
}

func TestS3CredentialsFromSharedFile(t *testing.T) {
	ep := testenv.MinIO(t)
	clearCredsEnv(t)
	file := filepath.Join(t.TempDir(), "credentials")
	write := func(secret string) {
		body := fmt.Sprintf("[default]\naws_access_key_id = wrong\naws_secret_access_key = wrong\n\n[strata]\naws_access_key_id = %s\naws_secret_access_key = %s\n", ep.AccessKey, secret)
		if err := os.WriteFile(file, []byte(body), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	write(ep.SecretKey)
	t.Setenv("AWS_SHARED_CREDENTIALS_FILE", file)
	t.Setenv("AWS_PROFILE", "strata")
	s, err := openByURL(t, ep)
	if err != nil {
		t.Fatalf("keys from profile strata of the shared credentials file: %v", err)
	}
	if got := s.CredentialSource(); got != tier.CredsFile {
		t.Fatalf("credential source %q; want %q", got, tier.CredsFile)
	}

	// A wrong secret fails, and the error does not show it.
	const bad = "Wr0ngS3cretThatMustNotLeak"
	write(bad)
	_, err = openByURL(t, ep)
	if err == nil {
		t.Fatal("a wrong secret key in the credentials file authenticated")
	}
	if strings.Contains(err.Error(), bad) || strings.Contains(err.Error(), ep.SecretKey) {
		t.Fatalf("the error shows a secret key: %v", err)
	}
}

// The default profile is read when AWS_PROFILE is unset, and explicit
// keys still win over the chain.
func TestS3CredentialsDefaultProfileAndStatic(t *testing.T) {
	ep := testenv.MinIO(t)
	clearCredsEnv(t)
	file := filepath.Join(t.TempDir(), "credentials")
	if err := os.WriteFile(file, []byte(fmt.Sprintf("[default]\naws_access_key_id=%s\naws_secret_access_key=%s\n", ep.AccessKey, ep.SecretKey)), 0o600); err != nil {
		t.Fatal(err)
	}
	t.Setenv("AWS_SHARED_CREDENTIALS_FILE", file)
	if _, err := openByURL(t, ep); err != nil {
		t.Fatalf("default profile: %v", err)
	}
	t.Setenv("AWS_ACCESS_KEY_ID", "not-these")
	t.Setenv("AWS_SECRET_ACCESS_KEY", "not-these-either")
	s := newMinIOStore(t, tier.S3Config{})
	if got := s.CredentialSource(); got != tier.CredsStatic {
		t.Fatalf("explicit keys: credential source %q; want %q", got, tier.CredsStatic)
	}
}

func TestRedactURL(t *testing.T) {
	for in, want := range map[string]string{
		"s3://b/p?endpoint=h:9000&insecure=true":        "s3://b/p?endpoint=h:9000&insecure=true",
		"s3://AKIAEXAMPLE:s3cr3t@b/p":                   "s3://REDACTED@b/p",
		"s3://b/p?secret-key=s3cr3t&region=eu":          "s3://b/p?region=eu&secret-key=REDACTED",
		"s3://b/p?X-Amz-Signature=s3cr3t":               "s3://b/p?X-Amz-Signature=REDACTED",
		"s3://AKIAEXAMPLE:s3%zzcr3t@b/p?token=s3cr3t":   "s3://REDACTED@b/p?REDACTED",
		"file:///var/lib/strata/bucket":                 "file:///var/lib/strata/bucket",
		"s3://b/p?access_token=s3cr3t&endpoint=minio:9": "s3://b/p?access_token=REDACTED&endpoint=minio%3A9",
	} {
		got := tier.RedactURL(in)
		if got != want {
			t.Errorf("RedactURL(%q) = %q; want %q", in, got, want)
		}
		if strings.Contains(got, "s3cr3t") || strings.Contains(got, "AKIAEXAMPLE") {
			t.Errorf("RedactURL(%q) = %q shows a key", in, got)
		}
	}
}

// A bad URL's error never shows a key, whatever is wrong with it.
func TestOpenBadURLHidesSecrets(t *testing.T) {
	for _, u := range []string{
		"s3://AKIAEXAMPLE:s3cr3t@bucket/p",
		"s3://AKIAEXAMPLE:s3%zzcr3t@bucket/p",
		"s3://bucket/p?secret-key=s3cr3t",
		"s3://bucket/p?access-key=AKIAEXAMPLE&endpoint=h:1",
		"ftp://AKIAEXAMPLE:s3cr3t@bucket/p",
		"s3://bucket/p?token=s3cr3t&insecure=maybe",
	} {
		_, err := tier.Open(context.Background(), u)
		if err == nil {
			t.Errorf("%s: opened", u)
			continue
		}
		if strings.Contains(err.Error(), "s3cr3t") || strings.Contains(err.Error(), "AKIAEXAMPLE") {
			t.Errorf("the error of a bad URL shows a key: %v", err)
		}
	}
}

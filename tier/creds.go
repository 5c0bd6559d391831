package tier

// Object-store credentials: explicit keys, else the standard AWS chain
// (minio-go's providers), and URL redaction for logs and errors. Keys
// never appear in an error or a log line of this package.

import (
	"net"
	"net/http"
	"net/url"
	"os"
	"regexp"
	"strings"
	"sync"
	"time"

	"github.com/minio/minio-go/v7/pkg/credentials"
)

// Credential sources, as S3Store.CredentialSource names them.
const (
	CredsStatic    = "static"                  // S3Config.AccessKey / SecretKey
	CredsEnvAWS    = "env-aws"                 // AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, AWS_SESSION_TOKEN
	CredsEnvMinIO  = "env-minio"               // MINIO_ROOT_USER / MINIO_ROOT_PASSWORD (or MINIO_ACCESS_KEY / MINIO_SECRET_KEY)
	CredsFile      = "shared-credentials-file" // AWS_SHARED_CREDENTIALS_FILE or ~/.aws/credentials (and ~/.aws/config), profile AWS_PROFILE or default
	CredsIAM       = "iam"                     // web identity (AWS_WEB_IDENTITY_TOKEN_FILE), container (ECS/EKS) or instance role
	CredsAnonymous = "anonymous"               // nothing found: requests are unsigned
	CredsNone      = ""                        // not retrieved yet
)

// imdsTimeout bounds a credential request to the instance metadata
// service or a container credentials endpoint: off EC2 the address does
// not answer, and a store must not wait long to learn that.
const imdsTimeout = 3 * time.Second

// sourced wraps a chain provider and records, on a successful retrieval
// with keys, that its source is the one in use.
type sourced struct {
	credentials.Provider
	name string
	used *credSource
}

func (s sourced) RetrieveWithCredContext(cc *credentials.CredContext) (credentials.Value, error) {
	v, err := s.Provider.RetrieveWithCredContext(cc)
	if err == nil && (v.AccessKeyID != "" || v.SecretAccessKey != "") {
		s.used.set(s.name)
	}
	return v, err
}

func (s sourced) Retrieve() (credentials.Value, error) {
	return s.RetrieveWithCredContext(&credentials.CredContext{})
}

// credSource is the source of the credentials last retrieved.
type credSource struct {
	mu   sync.Mutex
	name string
}

func (c *credSource) set(name string) { c.mu.Lock(); c.name = name; c.mu.Unlock() }
func (c *credSource) get() string     { c.mu.Lock(); defer c.mu.Unlock(); return c.name }

// anonymousSource is last in the chain: it only records that nothing
// before it had keys.
type anonymousSource struct{ used *credSource }

func (a anonymousSource) RetrieveWithCredContext(*credentials.CredContext) (credentials.Value, error) {
	a.used.set(CredsAnonymous)
	return credentials.Value{SignerType: credentials.SignatureAnonymous}, nil
}
func (a anonymousSource) Retrieve() (credentials.Value, error) { return a.RetrieveWithCredContext(nil) }
func (anonymousSource) IsExpired() bool                        { return true }

// credentialsFor returns cfg's credentials: static when cfg gives keys,
// else the AWS chain in its usual order — environment (AWS_*, then
// MinIO's MINIO_*), the shared credentials file, then an IAM role (web
// identity, container, or the instance's, unless
// AWS_EC2_METADATA_DISABLED=true and no web-identity or container
// variable is set) — and anonymous when none has keys.
func credentialsFor(cfg S3Config, used *credSource) *credentials.Credentials {
	if cfg.AccessKey != "" || cfg.SecretKey != "" {
		used.set(CredsStatic)
		return credentials.NewStaticV4(cfg.AccessKey, cfg.SecretKey, cfg.SessionToken)
	}
	chain := []credentials.Provider{
		sourced{&credentials.EnvAWS{}, CredsEnvAWS, used},
		sourced{&credentials.EnvMinio{}, CredsEnvMinIO, used},
		sourced{&credentials.FileAWSCredentials{}, CredsFile, used},
	}
	if iamEnabled() {
		client := &http.Client{Timeout: imdsTimeout, Transport: &http.Transport{
			Proxy:       http.ProxyFromEnvironment,
			DialContext: (&net.Dialer{Timeout: time.Second}).DialContext,
		}}
		chain = append(chain, sourced{&credentials.IAM{Client: client}, CredsIAM, used})
	}
	chain = append(chain, anonymousSource{used})
	return credentials.NewChainCredentials(chain)
}

// iamEnabled reports whether the chain asks for an IAM role: always, but
// for an instance role when AWS_EC2_METADATA_DISABLED is true (as the AWS
// SDKs do).
func iamEnabled() bool {
	for _, v := range []string{"AWS_WEB_IDENTITY_TOKEN_FILE", "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI", "AWS_CONTAINER_CREDENTIALS_FULL_URI"} {
		if os.Getenv(v) != "" {
			return true
		}
	}
	return !strings.EqualFold(os.Getenv("AWS_EC2_METADATA_DISABLED"), "true")
}

// redacted stands for a secret removed from a URL.
const redacted = "REDACTED"

// secretParam matches query parameter names that may carry a secret.
var secretParam = regexp.MustCompile(`(?i)secret|password|passwd|token|key|credential|signature|auth`)

// userinfoRE matches the user information of a URL that did not parse.
var userinfoRE = regexp.MustCompile(`^([A-Za-z][A-Za-z0-9+.-]*://)[^/?#]*@`)

// RedactURL returns rawURL fit for a log line or an error: the user
// information (user and password) and the values of query parameters
// whose names suggest a secret (key, secret, token, password, signature,
// credential, auth) replaced by REDACTED. A URL that does not parse
// keeps only its scheme and host part, its user information removed.
func RedactURL(rawURL string) string {
	u, err := url.Parse(rawURL)
	if err != nil {
		s := userinfoRE.ReplaceAllString(rawURL, "${1}"+redacted+"@")
		if i := strings.IndexAny(s, "?#"); i >= 0 {
			s = s[:i] + "?" + redacted
		}
		return s
	}
	if u.User != nil {
		u.User = url.User(redacted)
	}
	if u.RawQuery != "" {
		q, err := url.ParseQuery(u.RawQuery)
		if err != nil {
			u.RawQuery = redacted
		} else {
			masked := false
			for k := range q {
				if secretParam.MatchString(k) {
					q[k], masked = []string{redacted}, true
				}
			}
			if masked { // else kept as written
				u.RawQuery = q.Encode()
			}
		}
	}
	return u.String()
}

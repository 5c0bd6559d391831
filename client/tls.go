package client

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"os"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
)

// WithTLS connects to every broker over TLS with cfg (nil: TLS 1.2 or
// later, verified against the system's roots). LoadTLSConfig builds one
// from PEM files.
func WithTLS(cfg *tls.Config) Option {
	if cfg == nil {
		cfg = &tls.Config{MinVersion: tls.VersionTLS12}
	}
	return func(c *clientConfig) {
		c.tls = true
		c.dial = append(c.dial, grpc.WithTransportCredentials(credentials.NewTLS(cfg)))
	}
}

// WithToken sends token on every call as "authorization: Bearer <token>"
// (docs/security.md). gRPC sends it over TLS only (WithTLS): a call over
// a plaintext connection fails before anything is sent.
func WithToken(token string) Option {
	return func(c *clientConfig) {
		c.perRPC = append(c.perRPC, grpc.WithPerRPCCredentials(bearerToken{token: token, secure: true}))
	}
}

// WithPlaintextToken is WithToken over a plaintext connection too: for a
// broker behind a proxy that terminates TLS on the same host, or tests on
// loopback. Anyone on the path can read the token.
func WithPlaintextToken(token string) Option {
	return func(c *clientConfig) {
		c.perRPC = append(c.perRPC, grpc.WithPerRPCCredentials(bearerToken{token: token}))
	}
}

type bearerToken struct {
	token  string
	secure bool
}

func (b bearerToken) GetRequestMetadata(context.Context, ...string) (map[string]string, error) {
	return map[string]string{"authorization": "Bearer " + b.token}, nil
}

func (b bearerToken) RequireTransportSecurity() bool { return b.secure }

// TLSFiles names a client's TLS files, all PEM.
type TLSFiles struct {
	// CAFile holds the CA certificates the brokers' certificates must
	// chain to; "": the system's roots. A self-signed broker certificate
	// is its own CA.
	CAFile string
	// CertFile and KeyFile are the client's certificate and key, for a
	// broker that requires mutual TLS; both or neither.
	CertFile, KeyFile string
	// ServerName is the name the brokers' certificates must carry; "":
	// the host of each broker's address.
	ServerName string
}

// LoadTLSConfig reads the files into a TLS config for WithTLS. It refuses
// an unreadable file, a CA file without certificates, a certificate
// without its key (or one that does not match it), and a client
// certificate that has expired or is not valid yet.
func LoadTLSConfig(f TLSFiles) (*tls.Config, error) {
	cfg := &tls.Config{MinVersion: tls.VersionTLS12, ServerName: f.ServerName}
	if f.CAFile != "" {
		pem, err := os.ReadFile(f.CAFile)
		if err != nil {
			return nil, fmt.Errorf("client: TLS CA file: %w", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("client: TLS CA file %s holds no PEM certificate: give the CA certificate the brokers' certificates are signed by (or a self-signed broker's certificate itself)", f.CAFile)
		}
		cfg.RootCAs = pool
	}
	switch {
	case f.CertFile == "" && f.KeyFile == "":
	case f.CertFile == "" || f.KeyFile == "":
		return nil, errors.New("client: a TLS client certificate needs both the certificate and its key (--tls-cert and --tls-key)")
	default:
		pair, err := tls.LoadX509KeyPair(f.CertFile, f.KeyFile)
		if err != nil {
			return nil, fmt.Errorf("client: TLS client certificate %s and key %s: %w", f.CertFile, f.KeyFile, err)
		}
		leaf := pair.Leaf
		if leaf == nil {
			if leaf, err = x509.ParseCertificate(pair.Certificate[0]); err != nil {
				return nil, fmt.Errorf("client: TLS client certificate %s: %w", f.CertFile, err)
			}
		}
		now := time.Now()
		switch {
		case now.After(leaf.NotAfter):
			return nil, fmt.Errorf("client: the TLS client certificate %s expired at %s: renew it", f.CertFile, leaf.NotAfter.UTC().Format(time.RFC3339))
		case now.Before(leaf.NotBefore):
			return nil, fmt.Errorf("client: the TLS client certificate %s is not valid before %s", f.CertFile, leaf.NotBefore.UTC().Format(time.RFC3339))
		}
		cfg.Certificates = []tls.Certificate{pair}
	}
	return cfg, nil
}

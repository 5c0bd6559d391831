package auth

import (
	"bytes"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"sync"
	"time"

	"google.golang.org/grpc/credentials"
)

// The broker's TLS: its certificate and key (--tls-cert, --tls-key) and,
// for mutual TLS, the CAs its clients' certificates must chain to
// (--tls-client-ca). Every file is re-read when it changes (its size or
// modification time, checked at each handshake), so a renewed
// certificate is served without a restart; a changed file that does not
// load (half written, a key that does not match) is logged and the last
// good one stays in use.
//
// Client certificates are requested in the handshake and verified right
// after it, against the client CAs as they are then, with the client-auth
// key usage; the outcome travels with the connection (ClientAuthInfo).
// A connection whose client presented no certificate, or one that does
// not verify, completes its TLS handshake but every RPC on it is refused
// with UNAUTHENTICATED and the reason (Guard), so a client learns why
// rather than seeing a bare handshake failure. The client still proves it
// holds the certificate's key in the handshake itself.

// TLSFiles names the broker's TLS files.
type TLSFiles struct {
	CertFile, KeyFile string // PEM; required
	ClientCAFile      string // PEM CA certificates; "" for no mutual TLS
}

// ServerTLS is the broker's TLS: its certificate and the client CAs, each
// reloaded when its files change.
type ServerTLS struct {
	cert *watched[*tls.Certificate]
	cas  *watched[*x509.CertPool] // nil: no mutual TLS
	now  func() time.Time
}

// LoadServerTLS loads the broker's TLS files and checks them: readable,
// a certificate that matches its key and is valid now, client CAs that
// hold at least one CA certificate valid now. Any failure is an error
// that names the file and says what to do: a broker must not run without
// the TLS it was told to use.
func LoadServerTLS(files TLSFiles, log *slog.Logger) (*ServerTLS, error) {
	if log == nil {
		log = slog.Default()
	}
	if files.CertFile == "" || files.KeyFile == "" {
		return nil, errors.New("auth: TLS needs both a certificate (--tls-cert) and its key (--tls-key)")
	}
	s := &ServerTLS{now: time.Now}
	var err error
	s.cert, err = watch(log, "TLS certificate", []string{files.CertFile, files.KeyFile}, func(b [][]byte) (*tls.Certificate, error) {
		return loadKeyPair(files.CertFile, b[0], b[1], s.now())
	})
	if err != nil {
		return nil, err
	}
	if leaf := s.cert.get().Leaf; leaf != nil && isSelfSigned(leaf) {
		log.Warn("the broker's TLS certificate is self-signed: clients must trust it directly (--tls-ca with this certificate)", "cert", files.CertFile, "subject", leaf.Subject.String())
	}
	if files.ClientCAFile != "" {
		s.cas, err = watch(log, "TLS client CA", []string{files.ClientCAFile}, func(b [][]byte) (*x509.CertPool, error) {
			return loadCAs(files.ClientCAFile, b[0], s.now())
		})
		if err != nil {
			return nil, err
		}
	}
	return s, nil
}

// MutualTLS reports whether clients must present a certificate.
func (s *ServerTLS) MutualTLS() bool { return s.cas != nil }

// Certificate returns the certificate served now (reloading its files if
// they changed).
func (s *ServerTLS) Certificate() *tls.Certificate { return s.cert.get() }

// Config returns the TLS config of the broker's listener: TLS 1.2 or
// later, the current certificate at each handshake and, with client CAs,
// a client certificate requested (Credentials verifies it).
func (s *ServerTLS) Config() *tls.Config {
	cfg := &tls.Config{
		MinVersion: tls.VersionTLS12,
		GetCertificate: func(*tls.ClientHelloInfo) (*tls.Certificate, error) {
			return s.cert.get(), nil
		},
	}
	if s.cas != nil {
		cfg.ClientAuth = tls.RequestClientCert
	}
	return cfg
}

// Credentials returns the gRPC transport credentials of the broker's
// listener (and of any other gRPC front end on it, such as Arrow Flight):
// TLS per Config, and the client certificate verified after the
// handshake, its outcome in ClientAuthInfo.
func (s *ServerTLS) Credentials() credentials.TransportCredentials {
	return &serverCreds{TransportCredentials: credentials.NewTLS(s.Config()), s: s}
}

// ClientAuthInfo is the AuthInfo of a connection to a broker with mutual
// TLS: the TLS state and what verifying the client's certificate found.
type ClientAuthInfo struct {
	credentials.TLSInfo
	Principal string // of a verified certificate (ClientCertPrincipal)
	Err       error  // why there is none: no certificate, or it did not verify
}

type serverCreds struct {
	credentials.TransportCredentials
	s *ServerTLS
}

func (c *serverCreds) ServerHandshake(raw net.Conn) (net.Conn, credentials.AuthInfo, error) {
	conn, ai, err := c.TransportCredentials.ServerHandshake(raw)
	if err != nil || c.s.cas == nil {
		return conn, ai, err
	}
	info, ok := ai.(credentials.TLSInfo)
	if !ok {
		conn.Close()
		return nil, nil, fmt.Errorf("auth: unexpected TLS auth info %T", ai)
	}
	out := ClientAuthInfo{TLSInfo: info}
	out.Principal, out.Err = c.s.verifyClient(info.State.PeerCertificates)
	return conn, out, nil
}

func (c *serverCreds) Clone() credentials.TransportCredentials {
	return &serverCreds{TransportCredentials: c.TransportCredentials.Clone(), s: c.s}
}

// verifyClient verifies a client's chain against the current client CAs
// and returns its principal.
func (s *ServerTLS) verifyClient(chain []*x509.Certificate) (string, error) {
	if len(chain) == 0 {
		return "", errors.New("no client certificate: this broker requires mutual TLS; give the client a certificate signed by the broker's client CA (--tls-cert and --tls-key)")
	}
	opts := x509.VerifyOptions{
		Roots:         s.cas.get(),
		Intermediates: x509.NewCertPool(),
		CurrentTime:   s.now(),
		KeyUsages:     []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
	}
	for _, c := range chain[1:] {
		opts.Intermediates.AddCert(c)
	}
	leaf := chain[0]
	if _, err := leaf.Verify(opts); err != nil {
		return "", fmt.Errorf("the client certificate (subject %q) is not trusted: %v", leaf.Subject.String(), err)
	}
	return ClientCertPrincipal(leaf)
}

// ClientCertPrincipal is the principal of a verified client certificate:
// its subject's common name when it has one, else its first URI SAN (a
// SPIFFE id, say), else its first DNS SAN, else its first e-mail SAN.
func ClientCertPrincipal(c *x509.Certificate) (string, error) {
	var p string
	switch {
	case c.Subject.CommonName != "":
		p = c.Subject.CommonName
	case len(c.URIs) > 0:
		p = c.URIs[0].String()
	case len(c.DNSNames) > 0:
		p = c.DNSNames[0]
	case len(c.EmailAddresses) > 0:
		p = c.EmailAddresses[0]
	default:
		return "", fmt.Errorf("the client certificate (serial %s) has no common name and no URI, DNS or e-mail SAN to be its principal", c.SerialNumber)
	}
	if err := ValidPrincipal(p); err != nil {
		return "", fmt.Errorf("the client certificate's identity cannot be a principal: %v", err)
	}
	return p, nil
}

func isSelfSigned(c *x509.Certificate) bool {
	return bytes.Equal(c.RawIssuer, c.RawSubject) && c.CheckSignature(c.SignatureAlgorithm, c.RawTBSCertificate, c.Signature) == nil
}

// loadKeyPair parses a certificate and key and checks the certificate is
// valid at now.
func loadKeyPair(name string, certPEM, keyPEM []byte, now time.Time) (*tls.Certificate, error) {
	pair, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		return nil, fmt.Errorf("auth: TLS certificate %s and its key do not load: %v (give a PEM certificate and the PEM private key it was issued for)", name, err)
	}
	if pair.Leaf == nil {
		if pair.Leaf, err = x509.ParseCertificate(pair.Certificate[0]); err != nil {
			return nil, fmt.Errorf("auth: TLS certificate %s: %v", name, err)
		}
	}
	if err := checkValidity(name, pair.Leaf, now); err != nil {
		return nil, err
	}
	return &pair, nil
}

func checkValidity(name string, c *x509.Certificate, now time.Time) error {
	switch {
	case now.After(c.NotAfter):
		return fmt.Errorf("auth: the certificate in %s (subject %q) expired at %s: renew it", name, c.Subject.String(), c.NotAfter.UTC().Format(time.RFC3339))
	case now.Before(c.NotBefore):
		return fmt.Errorf("auth: the certificate in %s (subject %q) is not valid before %s: check the clock, or issue one valid now", name, c.Subject.String(), c.NotBefore.UTC().Format(time.RFC3339))
	}
	return nil
}

// loadCAs parses PEM CA certificates; at least one must be a CA valid now.
func loadCAs(name string, data []byte, now time.Time) (*x509.CertPool, error) {
	pool := x509.NewCertPool()
	n := 0
	var lastErr error
	for rest := data; ; {
		var b *pem.Block
		b, rest = pem.Decode(rest)
		if b == nil {
			break
		}
		if b.Type != "CERTIFICATE" {
			continue
		}
		c, err := x509.ParseCertificate(b.Bytes)
		if err != nil {
			return nil, fmt.Errorf("auth: CA file %s: %v", name, err)
		}
		if err := checkValidity(name, c, now); err != nil {
			lastErr = err
			continue
		}
		pool.AddCert(c)
		n++
	}
	if n == 0 {
		if lastErr != nil {
			return nil, lastErr
		}
		return nil, fmt.Errorf("auth: CA file %s holds no PEM certificate: give the CA certificates client certificates are signed by", name)
	}
	return pool, nil
}

// watched is a value loaded from files, reloaded when one of them
// changes (size or modification time).
type watched[T any] struct {
	what  string
	files []string
	load  func([][]byte) (T, error)
	log   *slog.Logger

	mu     sync.Mutex // guards the fields below
	val    T
	stamps []stamp
	failed []stamp // the stamps of the last failed reload, logged once
}

type stamp struct {
	size int64
	mod  time.Time
}

func watch[T any](log *slog.Logger, what string, files []string, load func([][]byte) (T, error)) (*watched[T], error) {
	w := &watched[T]{what: what, files: files, load: load, log: log}
	st, err := w.stat()
	if err != nil {
		return nil, err
	}
	v, err := w.read()
	if err != nil {
		return nil, err
	}
	w.val, w.stamps = v, st
	return w, nil
}

func (w *watched[T]) stat() ([]stamp, error) {
	out := make([]stamp, len(w.files))
	for i, f := range w.files {
		fi, err := os.Stat(f)
		if err != nil {
			return nil, fmt.Errorf("auth: %s: %w", w.what, err)
		}
		out[i] = stamp{fi.Size(), fi.ModTime()}
	}
	return out, nil
}

func (w *watched[T]) read() (T, error) {
	var zero T
	data := make([][]byte, len(w.files))
	for i, f := range w.files {
		b, err := os.ReadFile(f)
		if err != nil {
			return zero, fmt.Errorf("auth: %s: %w", w.what, err)
		}
		data[i] = b
	}
	return w.load(data)
}

// get returns the value, reloaded first if a file changed.
func (w *watched[T]) get() T {
	w.mu.Lock()
	defer w.mu.Unlock()
	st, err := w.stat()
	if err != nil || equalStamps(st, w.stamps) || equalStamps(st, w.failed) {
		return w.val
	}
	v, err := w.read()
	if err != nil {
		w.failed = st
		w.log.Error("reloading failed; still using the previous one", "what", w.what, "files", w.files, "err", err)
		return w.val
	}
	w.val, w.stamps, w.failed = v, st, nil
	w.log.Info("reloaded", "what", w.what, "files", w.files)
	return w.val
}

func equalStamps(a, b []stamp) bool {
	if len(a) != len(b) || a == nil {
		return false
	}
	for i := range a {
		if a[i].size != b[i].size || !a[i].mod.Equal(b[i].mod) {
			return false
		}
	}
	return true
}

package auth_test

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/status"

	"github.com/stratalog/strata/api/stratapb"
	"github.com/stratalog/strata/auth"
	"github.com/stratalog/strata/core"
	"github.com/stratalog/strata/internal/brokertest"
	"github.com/stratalog/strata/internal/testcerts"
	grpcserver "github.com/stratalog/strata/server/grpc"
	"github.com/stratalog/strata/tier"
)

// syncBuffer is a log sink for a server's goroutines and the test.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// secure is a broker serving TLS (mutual TLS when mtls), bearer tokens of
// alice and admin (a super user) and ACLs, behind a Guard.
type secure struct {
	ca, stranger *testcerts.CA
	addr         string
	broker       *core.Broker
	acls         *auth.ACLStore
	log          *syncBuffer
	aliceToken   string
	adminToken   string
}

func startSecure(t *testing.T, mtls bool) *secure {
	t.Helper()
	s := &secure{ca: testcerts.NewCA(t, "strata-test"), stranger: testcerts.NewCA(t, "stranger"), log: &syncBuffer{},
		aliceToken: auth.NewToken(), adminToken: auth.NewToken()}
	srvPair := s.ca.Issue(t, "broker", testcerts.Options{CommonName: "broker"})
	log := slog.New(slog.NewTextHandler(s.log, nil))
	files := auth.TLSFiles{CertFile: srvPair.CertFile, KeyFile: srvPair.KeyFile}
	if mtls {
		files.ClientCAFile = s.ca.CertFile
	}
	stls, err := auth.LoadServerTLS(files, log)
	if err != nil {
		t.Fatal(err)
	}
	tokens, err := auth.ParseTokens([]byte("principals:\n  - name: alice\n    tokens: [" + hash(t, s.aliceToken) + "]\n  - name: admin\n    tokens: [" + hash(t, s.adminToken) + "]\n"))
	if err != nil {
		t.Fatal(err)
	}
	store := tier.NewMemStore()
	s.acls = auth.NewACLStore(store, auth.ACLStoreConfig{Logger: log})
	if err := s.acls.Load(context.Background()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.acls.Close)
	g, err := auth.NewGuard(auth.Config{Enforce: true, Tokens: tokens, MutualTLS: mtls, SuperUsers: []string{"admin"}, ACLs: s.acls, Logger: log})
	if err != nil {
		t.Fatal(err)
	}
	scfg := grpcserver.DefaultConfig()
	scfg.ACLs = s.acls
	s.broker, _, s.addr = brokertest.StartServer(t, brokertest.Config(t, store), scfg, append(g.ServerOptions(), grpc.Creds(stls.Credentials()))...)
	return s
}

func hash(t *testing.T, tok string) string {
	h, err := auth.HashToken(tok)
	if err != nil {
		t.Fatal(err)
	}
	return h
}

type bearer string

func (b bearer) GetRequestMetadata(context.Context, ...string) (map[string]string, error) {
	return map[string]string{"authorization": "Bearer " + string(b)}, nil
}
func (bearer) RequireTransportSecurity() bool { return true }

// dial connects over TLS trusting s.ca, with a client certificate when
// pair is not nil and a bearer token when token is not "".
func (s *secure) dial(t *testing.T, pair *testcerts.Pair, token string) stratapb.StrataClient {
	t.Helper()
	return stratapb.NewStrataClient(s.conn(t, pair, token))
}

func (s *secure) conn(t *testing.T, pair *testcerts.Pair, token string) *grpc.ClientConn {
	t.Helper()
	pool := x509.NewCertPool()
	pool.AddCert(s.ca.Cert)
	cfg := &tls.Config{RootCAs: pool, ServerName: "localhost"}
	if pair != nil {
		cfg.Certificates = []tls.Certificate{pair.TLS(t)}
	}
	opts := []grpc.DialOption{grpc.WithTransportCredentials(credentials.NewTLS(cfg))}
	if token != "" {
		opts = append(opts, grpc.WithPerRPCCredentials(bearer(token)))
	}
	cc, err := grpc.NewClient(s.addr, opts...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cc.Close() })
	return cc
}

func produce(c stratapb.StrataClient, topic string) error {
	_, err := c.Produce(context.Background(), &stratapb.ProduceRequest{Topic: topic, Records: []*stratapb.Record{{Value: []byte("v")}}})
	return err
}

func consume(c stratapb.StrataClient, topic string) error {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	st, err := c.Fetch(ctx, &stratapb.FetchRequest{Topic: topic, Start: &stratapb.FetchRequest_Earliest{Earliest: true}, MaxWaitMs: 1})
	if err != nil {
		return err
	}
	_, err = st.Recv()
	return err
}

func wantCode(t *testing.T, what string, err error, code codes.Code, says string) {
	t.Helper()
	if status.Code(err) != code || !strings.Contains(status.Convert(err).Message(), says) {
		t.Fatalf("%s: got %v, want %v saying %q", what, err, code, says)
	}
}

// highWatermark is the topic's partition 0 high watermark, read from the
// core (not through the front end).
func (s *secure) highWatermark(t *testing.T, topic string) int64 {
	t.Helper()
	d, err := s.broker.DescribeTopic(context.Background(), topic)
	if err != nil {
		t.Fatal(err)
	}
	return d.Partitions[0].HighWatermark
}

func TestMutualTLSRefusesMissingAndUntrustedCertificates(t *testing.T) {
	s := startSecure(t, true)
	alicePair := s.ca.Issue(t, "alice", testcerts.Options{CommonName: "alice", Client: true})
	strangerPair := s.stranger.Issue(t, "mallory", testcerts.Options{CommonName: "admin", Client: true})
	admin := s.dial(t, s.ca.Issue(t, "admin", testcerts.Options{CommonName: "admin", Client: true}), "")
	if _, err := admin.CreateTopic(context.Background(), &stratapb.CreateTopicRequest{Config: &stratapb.TopicConfig{Name: "t", Partitions: 1}}); err != nil {
		t.Fatalf("the super user by certificate: %v", err)
	}

	wantCode(t, "no certificate", produce(s.dial(t, nil, ""), "t"), codes.Unauthenticated, "no client certificate")
	wantCode(t, "no certificate, a valid token", produce(s.dial(t, nil, s.adminToken), "t"), codes.Unauthenticated, "no client certificate")
	wantCode(t, "untrusted certificate", produce(s.dial(t, strangerPair, ""), "t"), codes.Unauthenticated, "not trusted")
	wantCode(t, "trusted certificate, wrong token", produce(s.dial(t, alicePair, auth.NewToken()), "t"), codes.Unauthenticated, "bearer token is not valid")
	// The certificate's CN is the principal: alice has no ACL.
	wantCode(t, "alice by certificate", produce(s.dial(t, alicePair, ""), "t"), codes.PermissionDenied, `principal "alice" may not produce on topic "t"`)
	// A valid token names the principal over the certificate's.
	if err := produce(s.dial(t, alicePair, s.adminToken), "t"); err != nil {
		t.Fatalf("alice's certificate with admin's token: %v", err)
	}
	if hw := s.highWatermark(t, "t"); hw != 1 {
		t.Fatalf("high watermark %d, want 1: only the admin's record", hw)
	}
	// The health check is public (probes carry no credentials) but still
	// needs the TLS handshake; with no certificate it answers.
	if _, err := healthpb.NewHealthClient(s.conn(t, nil, "")).Check(context.Background(), &healthpb.HealthCheckRequest{}); status.Code(err) != codes.Unimplemented {
		t.Fatalf("health check without a certificate: %v (want it to pass the guard; this server has no health service: UNIMPLEMENTED)", err)
	}
	logs := s.log.String()
	for _, want := range []string{"no client certificate", "not trusted", `principal=alice`} {
		if !strings.Contains(logs, want) {
			t.Errorf("the log does not say %q:\n%s", want, logs)
		}
	}
}

func TestTokensAndACLs(t *testing.T) {
	s := startSecure(t, false)
	ctx := context.Background()
	admin, alice := s.dial(t, nil, s.adminToken), s.dial(t, nil, s.aliceToken)
	for _, name := range []string{"t", "secret"} {
		if _, err := admin.CreateTopic(ctx, &stratapb.CreateTopicRequest{Config: &stratapb.TopicConfig{Name: name, Partitions: 1}}); err != nil {
			t.Fatal(err)
		}
	}
	wrong := auth.NewToken()
	wantCode(t, "no token", produce(s.dial(t, nil, ""), "t"), codes.Unauthenticated, "no bearer token")
	wantCode(t, "wrong token", produce(s.dial(t, nil, wrong), "t"), codes.Unauthenticated, "bearer token is not valid")
	wantCode(t, "wrong token, fetch stream", consume(s.dial(t, nil, wrong), "t"), codes.Unauthenticated, "bearer token is not valid")

	// alice has no ACL: produce, consume and delete are denied, and
	// nothing reaches the log.
	wantCode(t, "produce", produce(alice, "t"), codes.PermissionDenied, `principal "alice" may not produce on topic "t"`)
	wantCode(t, "consume", consume(alice, "t"), codes.PermissionDenied, `principal "alice" may not consume on topic "t"`)
	_, err := alice.DeleteTopic(ctx, &stratapb.DeleteTopicRequest{Name: "t"})
	wantCode(t, "delete", err, codes.PermissionDenied, `principal "alice" may not admin on topic "t"`)
	_, err = alice.AddAcl(ctx, &stratapb.AddAclRequest{Acl: &stratapb.Acl{Principal: "alice", ResourceType: "topic", Name: "t", Operations: []string{"admin"}}})
	wantCode(t, "grant herself", err, codes.PermissionDenied, "admin on cluster")
	if hw := s.highWatermark(t, "t"); hw != 0 {
		t.Fatalf("high watermark %d after denied produces, want 0", hw)
	}
	if _, err := s.broker.DescribeTopic(ctx, "t"); err != nil {
		t.Fatalf("the topic is gone after a denied delete: %v", err)
	}

	// The admin grants produce on a prefix and consume on t: both now work.
	for _, a := range []*stratapb.Acl{
		{Principal: "alice", ResourceType: "topic", PatternType: "prefix", Name: "t", Operations: []string{"produce"}},
		{Principal: "alice", ResourceType: "topic", Name: "t", Operations: []string{"consume"}},
	} {
		if _, err := admin.AddAcl(ctx, &stratapb.AddAclRequest{Acl: a}); err != nil {
			t.Fatal(err)
		}
	}
	if err := produce(alice, "t"); err != nil {
		t.Fatalf("produce after the grant: %v", err)
	}
	if err := consume(alice, "t"); err != nil {
		t.Fatalf("consume after the grant: %v", err)
	}
	wantCode(t, "produce to another topic", produce(alice, "secret"), codes.PermissionDenied, `topic "secret"`)
	if hw := s.highWatermark(t, "secret"); hw != 0 {
		t.Fatalf("secret's high watermark %d, want 0", hw)
	}
	// Lists show what the caller may describe.
	lt, err := alice.ListTopics(ctx, &stratapb.ListTopicsRequest{})
	if err != nil || len(lt.Topics) != 1 || lt.Topics[0].Name != "t" {
		t.Fatalf("alice's topic list: %v %v, want just t", lt, err)
	}
	md, err := alice.Metadata(ctx, &stratapb.MetadataRequest{})
	if err != nil || len(md.Topics) != 1 {
		t.Fatalf("alice's metadata: %v %v, want just t", md, err)
	}
	// An invalid pattern is refused at the call.
	_, err = admin.AddAcl(ctx, &stratapb.AddAclRequest{Acl: &stratapb.Acl{Principal: "alice", ResourceType: "topic", Name: "t*", Operations: []string{"produce"}}})
	wantCode(t, "glob pattern", err, codes.InvalidArgument, "can match no topic")
	la, err := admin.ListAcls(ctx, &stratapb.ListAclsRequest{Principal: "alice"})
	if err != nil || len(la.Acls) != 2 {
		t.Fatalf("alice's ACLs: %v %v", la, err)
	}
	// Revoking consume denies it again at once on this broker.
	if _, err := admin.RemoveAcl(ctx, &stratapb.RemoveAclRequest{Acl: &stratapb.Acl{Principal: "alice", ResourceType: "topic", Name: "t", Operations: []string{"consume"}}}); err != nil {
		t.Fatal(err)
	}
	wantCode(t, "consume after revoke", consume(alice, "t"), codes.PermissionDenied, "consume")

	logs := s.log.String()
	if !strings.Contains(logs, "principal=alice") || !strings.Contains(logs, "no ACL allows it") || !strings.Contains(logs, "bearer token is not valid") {
		t.Errorf("the log does not record the refusals:\n%s", logs)
	}
	for _, tok := range []string{s.aliceToken, s.adminToken, wrong} {
		if strings.Contains(logs, tok) {
			t.Fatalf("the log holds a token:\n%s", logs)
		}
	}
}

func TestEveryRPCHasARule(t *testing.T) {
	rules := auth.Merge(auth.StrataRules(), auth.StandardRules())
	for _, sd := range []*grpc.ServiceDesc{&stratapb.Strata_ServiceDesc, &healthpb.Health_ServiceDesc} {
		if missing := rules.Missing(sd); len(missing) > 0 {
			t.Errorf("methods of %s without an authorization rule: %v", sd.ServiceName, missing)
		}
	}
	if len(auth.StrataRules()) != len(stratapb.Strata_ServiceDesc.Methods)+len(stratapb.Strata_ServiceDesc.Streams) {
		t.Error("StrataRules has a rule for a method the service does not have")
	}
}

func TestServerCertificateRenewedWithoutRestart(t *testing.T) {
	ca := testcerts.NewCA(t, "ca")
	dir := t.TempDir()
	certFile, keyFile := filepath.Join(dir, "tls.crt"), filepath.Join(dir, "tls.key")
	first := ca.Issue(t, "first", testcerts.Options{CommonName: "broker"})
	first.WriteTo(t, certFile, keyFile, timeAt(1))
	log := &syncBuffer{}
	stls, err := auth.LoadServerTLS(auth.TLSFiles{CertFile: certFile, KeyFile: keyFile}, slog.New(slog.NewTextHandler(log, nil)))
	if err != nil {
		t.Fatal(err)
	}
	lis, err := tls.Listen("tcp", "127.0.0.1:0", stls.Config())
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			c, err := lis.Accept()
			if err != nil {
				return
			}
			_ = c.(*tls.Conn).Handshake()
			c.Close()
		}
	}()
	defer wg.Wait()
	defer lis.Close()
	pool := x509.NewCertPool()
	pool.AddCert(ca.Cert)
	served := func() string {
		c, err := tls.Dial("tcp", lis.Addr().String(), &tls.Config{RootCAs: pool, ServerName: "localhost"})
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		return c.ConnectionState().PeerCertificates[0].SerialNumber.String()
	}
	if got := served(); got != first.Cert.SerialNumber.String() {
		t.Fatalf("served serial %s, want the first certificate's %s", got, first.Cert.SerialNumber)
	}
	second := ca.Issue(t, "second", testcerts.Options{CommonName: "broker"})
	second.WriteTo(t, certFile, keyFile, timeAt(2))
	if got := served(); got != second.Cert.SerialNumber.String() {
		t.Fatalf("after renewal served serial %s, want the renewed certificate's %s", got, second.Cert.SerialNumber)
	}
	// A broken renewal (a key that is not the certificate's) is logged and
	// the last good certificate stays.
	if err := os.WriteFile(keyFile, first.KeyPEM, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Chtimes(keyFile, timeAt(3), timeAt(3)); err != nil {
		t.Fatal(err)
	}
	if got := served(); got != second.Cert.SerialNumber.String() {
		t.Fatalf("after a broken renewal served serial %s, want the last good %s", got, second.Cert.SerialNumber)
	}
	if !strings.Contains(log.String(), "reloading failed") {
		t.Fatalf("a broken renewal was not logged:\n%s", log.String())
	}
}

func TestServerTLSBadInputIsAnErrorAtStart(t *testing.T) {
	ca := testcerts.NewCA(t, "ca")
	good := ca.Issue(t, "good", testcerts.Options{CommonName: "broker"})
	expired := ca.Issue(t, "expired", testcerts.Options{CommonName: "broker", NotBefore: timeAt(0), NotAfter: timeAt(1)})
	future := ca.Issue(t, "future", testcerts.Options{CommonName: "broker", NotBefore: farFuture(), NotAfter: farFuture().AddDate(1, 0, 0)})
	other := ca.Issue(t, "other", testcerts.Options{CommonName: "broker"})
	garbage := filepath.Join(t.TempDir(), "garbage.pem")
	os.WriteFile(garbage, []byte("not a certificate"), 0o600)
	discard := slog.New(slog.NewTextHandler(io.Discard, nil))
	for _, tc := range []struct {
		name  string
		files auth.TLSFiles
		says  string
	}{
		{"expired", auth.TLSFiles{CertFile: expired.CertFile, KeyFile: expired.KeyFile}, "expired at"},
		{"not yet valid", auth.TLSFiles{CertFile: future.CertFile, KeyFile: future.KeyFile}, "not valid before"},
		{"key of another", auth.TLSFiles{CertFile: good.CertFile, KeyFile: other.KeyFile}, "do not load"},
		{"unreadable", auth.TLSFiles{CertFile: filepath.Join(t.TempDir(), "none.pem"), KeyFile: good.KeyFile}, "no such file"},
		{"no key", auth.TLSFiles{CertFile: good.CertFile}, "--tls-key"},
		{"CA not PEM", auth.TLSFiles{CertFile: good.CertFile, KeyFile: good.KeyFile, ClientCAFile: garbage}, "holds no PEM certificate"},
		{"CA expired", auth.TLSFiles{CertFile: good.CertFile, KeyFile: good.KeyFile, ClientCAFile: expired.CertFile}, "expired at"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := auth.LoadServerTLS(tc.files, discard)
			if err == nil || !strings.Contains(err.Error(), tc.says) {
				t.Fatalf("got %v, want an error saying %q", err, tc.says)
			}
		})
	}
	// A self-signed certificate is allowed (with a warning): a client
	// must trust it directly.
	self := (*testcerts.CA)(nil).Issue(t, "self", testcerts.Options{CommonName: "broker"})
	log := &syncBuffer{}
	if _, err := auth.LoadServerTLS(auth.TLSFiles{CertFile: self.CertFile, KeyFile: self.KeyFile}, slog.New(slog.NewTextHandler(log, nil))); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(log.String(), "self-signed") {
		t.Fatalf("no warning about a self-signed certificate:\n%s", log.String())
	}
}

func TestGuardRefusesConfigsThatWouldNotEnforce(t *testing.T) {
	for _, tc := range []struct {
		name string
		cfg  auth.Config
		says string
	}{
		{"super users without enforcement", auth.Config{SuperUsers: []string{"admin"}}, "enforcement is off"},
		{"enforce without a way to authenticate", auth.Config{Enforce: true, ACLs: auth.NewACLStore(tier.NewMemStore(), auth.ACLStoreConfig{})}, "needs a way to authenticate"},
		{"enforce without ACLs", auth.Config{Enforce: true, MutualTLS: true}, "needs the ACLs"},
		{"bad super user", auth.Config{Enforce: true, MutualTLS: true, SuperUsers: []string{""}}, "invalid principal"},
	} {
		if _, err := auth.NewGuard(tc.cfg); err == nil || !strings.Contains(err.Error(), tc.says) {
			t.Errorf("%s: got %v, want an error saying %q", tc.name, err, tc.says)
		}
	}
}

package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"strings"
	"time"

	"google.golang.org/grpc"

	"github.com/stratalog/strata/auth"
	flightserver "github.com/stratalog/strata/server/flight"
	"github.com/stratalog/strata/tier"
)

// authFlags are serve's TLS, authentication, authorization and quota
// flags (docs/security.md).
type authFlags struct {
	tlsCert, tlsKey, tlsClientCA *string
	tokenFile, tokens            *string
	superUsers                   *string
	aclRefresh                   *time.Duration
	quotaProduce, quotaFetch     *byteSize
}

func addAuthFlags(fs *flag.FlagSet) *authFlags {
	return &authFlags{
		tlsCert:     fs.String("tls-cert", "", "serve gRPC over TLS with this PEM certificate (reloaded when the file changes); needs --tls-key"),
		tlsKey:      fs.String("tls-key", "", "the PEM private key of --tls-cert"),
		tlsClientCA: fs.String("tls-client-ca", "", "mutual TLS: every client must present a certificate signed by a CA in this PEM file (reloaded when it changes); its common name (else its first URI, DNS or e-mail SAN) is the client's principal. Turns authentication and ACLs on"),
		tokenFile:   fs.String("token-file", "", "bearer tokens: a YAML or JSON file of principals and the SHA-256 of their tokens (`strata token new`); turns authentication and ACLs on"),
		tokens:      fs.String("tokens", "", "the token file's contents inline (for a secret passed as an environment variable: STRATA_TOKENS); not with --token-file"),
		superUsers:  fs.String("super-users", "", "comma-separated principals that bypass ACLs (how the first admin exists); needs --token-file, --tokens or --tls-client-ca"),
		aclRefresh:  fs.Duration("acl-refresh", 2*time.Second, "how often the broker checks the bucket for ACL changes made through other brokers"),
		quotaProduce: sizeFlag(fs, "quota-produce-bytes", 0,
			"per-principal produce rate in bytes per second (e.g. 10MiB); a principal over it is slowed, not failed; 0: unlimited; the token file may set a principal's own"),
		quotaFetch: sizeFlag(fs, "quota-fetch-bytes", 0, "per-principal fetch rate in bytes per second, as --quota-produce-bytes"),
	}
}

// security is what the auth flags set up for serve.
type security struct {
	opts  []grpc.ServerOption // credentials and interceptors
	acls  *auth.ACLStore      // the ACL RPCs' store (enforced only with authentication)
	guard *auth.Guard         // what opts install: the Flight server asks it what ListFlights shows
	desc  []any               // log attributes: what is enforced
}

func (s *security) close() {
	if s.acls != nil {
		s.acls.Close()
	}
}

// setup checks the flags and loads what they name. Every failure is an
// error at start: the broker never runs without the security it was
// told to enforce.
func (f *authFlags) setup(ctx context.Context, st tier.Store, log *slog.Logger) (*security, error) {
	sec := &security{}
	var stls *auth.ServerTLS
	switch {
	case *f.tlsCert != "" || *f.tlsKey != "":
		var err error
		stls, err = auth.LoadServerTLS(auth.TLSFiles{CertFile: *f.tlsCert, KeyFile: *f.tlsKey, ClientCAFile: *f.tlsClientCA}, log)
		if err != nil {
			return nil, err
		}
		sec.opts = append(sec.opts, grpc.Creds(stls.Credentials()))
		sec.desc = append(sec.desc, "tls", true, "mutual_tls", stls.MutualTLS())
	case *f.tlsClientCA != "":
		return nil, errors.New("--tls-client-ca needs TLS: give the broker's certificate and key too (--tls-cert, --tls-key)")
	}
	var tokens *auth.Tokens
	switch {
	case *f.tokenFile != "" && *f.tokens != "":
		return nil, errors.New("give the bearer tokens once: --token-file or --tokens (STRATA_TOKENS), not both")
	case *f.tokenFile != "":
		var err error
		if tokens, err = auth.LoadTokenFile(*f.tokenFile); err != nil {
			return nil, err
		}
	case *f.tokens != "":
		var err error
		if tokens, err = auth.ParseTokens([]byte(*f.tokens)); err != nil {
			return nil, fmt.Errorf("--tokens (STRATA_TOKENS): %w", err)
		}
	}
	var supers []string
	for _, s := range strings.Split(*f.superUsers, ",") {
		if s = strings.TrimSpace(s); s != "" {
			supers = append(supers, s)
		}
	}
	enforce := tokens != nil || (stls != nil && stls.MutualTLS())
	sec.acls = auth.NewACLStore(st, auth.ACLStoreConfig{RefreshInterval: *f.aclRefresh, Logger: log})
	if enforce {
		if err := sec.acls.Load(ctx); err != nil {
			return nil, fmt.Errorf("%w (the broker enforces ACLs and will not start without them)", err)
		}
		sec.acls.Start()
		if stls == nil {
			log.Warn("bearer tokens without TLS: anyone on the network path can read them; give --tls-cert and --tls-key")
		}
	}
	qcfg := auth.QuotaConfig{ProduceBytesPerSecond: int64(*f.quotaProduce), FetchBytesPerSecond: int64(*f.quotaFetch)}
	if tokens != nil {
		qcfg = auth.QuotaConfigFromTokens(qcfg, tokens)
	}
	var quotas *auth.Quotas
	if qcfg.ProduceBytesPerSecond > 0 || qcfg.FetchBytesPerSecond > 0 || len(qcfg.Principals) > 0 {
		var err error
		if quotas, err = auth.NewQuotas(qcfg); err != nil {
			sec.close()
			return nil, err
		}
	}
	g, err := auth.NewGuard(auth.Config{Enforce: enforce, Tokens: tokens, MutualTLS: stls != nil && stls.MutualTLS(),
		SuperUsers: supers, ACLs: sec.acls, Quotas: quotas, Logger: log,
		Rules: auth.Merge(auth.StrataRules(), auth.StandardRules(), flightserver.Rules())})
	if err != nil {
		sec.close()
		if !enforce && len(supers) > 0 {
			return nil, errors.New("--super-users needs authentication: give --token-file, --tokens or --tls-client-ca")
		}
		return nil, err
	}
	sec.opts, sec.guard = append(sec.opts, g.ServerOptions()...), g
	sec.desc = append(sec.desc, "authentication", enforce, "tokens", tokens.Len(), "super_users", supers,
		"quota_produce_bytes", qcfg.ProduceBytesPerSecond, "quota_fetch_bytes", qcfg.FetchBytesPerSecond)
	return sec, nil
}

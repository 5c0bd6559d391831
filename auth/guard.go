package auth

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/peer"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
)

// Principal is who a request comes from.
type Principal struct {
	Name string
	// How it was authenticated: "token", "certificate", or "anonymous"
	// (a broker that does not enforce authentication).
	Via string
	// Super: a super user (Config.SuperUsers), whom ACLs do not restrict.
	Super bool
}

// Anonymous is the principal of every request to a broker that does not
// enforce authentication.
const Anonymous = "anonymous"

type principalKey struct{}

// PrincipalFrom returns the principal the Guard put in a request's
// context.
func PrincipalFrom(ctx context.Context) (Principal, bool) {
	p, ok := ctx.Value(principalKey{}).(Principal)
	return p, ok
}

// WithPrincipal returns ctx carrying p.
func WithPrincipal(ctx context.Context, p Principal) context.Context {
	return context.WithValue(ctx, principalKey{}, p)
}

// ACLSource is where a Guard reads the ACLs at each check (an ACLStore).
type ACLSource interface {
	ACLs() []ACL // the caller does not modify them
}

// Config configures a Guard.
type Config struct {
	// Enforce turns authentication and authorization on. It needs a way
	// to authenticate (Tokens, MutualTLS or both) and ACLs. Off, every
	// request is the Anonymous principal's and is allowed (quotas still
	// apply).
	Enforce bool
	// Tokens are the accepted bearer tokens; nil: none.
	Tokens *Tokens
	// MutualTLS: every connection must carry a verified client
	// certificate (ServerTLS.Credentials with client CAs); its principal
	// is the caller's unless a bearer token names another.
	MutualTLS bool
	// SuperUsers bypass ACLs: how the first admin exists.
	SuperUsers []string
	// ACLs are consulted at every check.
	ACLs ACLSource
	// Rules map each method to what it needs. Default
	// Merge(StrataRules(), StandardRules()).
	Rules Rules
	// Quotas slow principals over their byte rates; nil: none.
	Quotas *Quotas
	// Logger logs every refusal (principal, method, reason; never a
	// token). Default slog.Default().
	Logger *slog.Logger
}

// Validate reports a configuration that would not enforce what it says.
func (c *Config) Validate() error {
	for _, s := range c.SuperUsers {
		if err := ValidPrincipal(s); err != nil {
			return fmt.Errorf("auth: super user: %w", err)
		}
	}
	if !c.Enforce {
		if len(c.SuperUsers) > 0 || c.Tokens != nil || c.MutualTLS {
			return errors.New("auth: super users, tokens or mutual TLS were given but enforcement is off: a broker must not silently run without the security it was given")
		}
		return nil
	}
	if c.Tokens == nil && !c.MutualTLS {
		return errors.New("auth: enforcement needs a way to authenticate: a token file (--token-file or STRATA_TOKENS) or client certificates (--tls-client-ca)")
	}
	if c.ACLs == nil {
		return errors.New("auth: enforcement needs the ACLs (an ACLStore)")
	}
	return nil
}

// Guard authenticates and authorizes every RPC of the gRPC servers it is
// installed on (UnaryServerInterceptor, StreamServerInterceptor), and
// applies the quotas.
type Guard struct {
	cfg Config
}

// NewGuard returns a Guard of cfg.
func NewGuard(cfg Config) (*Guard, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if cfg.Rules == nil {
		cfg.Rules = Merge(StrataRules(), StandardRules())
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	return &Guard{cfg: cfg}, nil
}

// ServerOptions returns the interceptors to install on a gRPC server
// (grpc.ChainUnaryInterceptor and grpc.ChainStreamInterceptor, so they
// compose with others).
func (g *Guard) ServerOptions() []grpc.ServerOption {
	return []grpc.ServerOption{
		grpc.ChainUnaryInterceptor(g.UnaryServerInterceptor()),
		grpc.ChainStreamInterceptor(g.StreamServerInterceptor()),
	}
}

// Enforcing reports whether the Guard authenticates and authorizes.
func (g *Guard) Enforcing() bool { return g.cfg.Enforce }

// UnaryServerInterceptor authenticates the caller, checks the method's
// Rule against the request, waits off the caller's produce quota, calls
// the handler with the Principal in its context, filters the answer and
// waits off the caller's fetch quota.
func (g *Guard) UnaryServerInterceptor() grpc.UnaryServerInterceptor {
	return func(ctx context.Context, req any, info *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
		rule, p, err := g.admit(ctx, info.FullMethod)
		if err != nil || rule.Public {
			if err != nil {
				return nil, err
			}
			return handler(ctx, req)
		}
		if err := g.check(p, info.FullMethod, rule, req); err != nil {
			return nil, err
		}
		ctx = WithPrincipal(ctx, p)
		if err := g.quota(ctx, p, rule.Quota, req); err != nil {
			return nil, err
		}
		resp, err := handler(ctx, req)
		if err != nil {
			return resp, err
		}
		if rule.Filter != nil && g.cfg.Enforce && !p.Super {
			rule.Filter(resp, func(a Access) bool { return Allowed(g.cfg.ACLs.ACLs(), p.Name, a) })
		}
		if rule.Quota == FetchQuota {
			g.cfg.Quotas.Charge(p.Name, FetchQuota, size(resp))
		}
		return resp, nil
	}
}

// StreamServerInterceptor authenticates the caller at the stream's start
// and checks the method's Rule against every message the client sends,
// before the handler gets it; it waits off the caller's quotas around
// the messages.
func (g *Guard) StreamServerInterceptor() grpc.StreamServerInterceptor {
	return func(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, handler grpc.StreamHandler) error {
		rule, p, err := g.admit(ss.Context(), info.FullMethod)
		if err != nil {
			return err
		}
		if rule.Public {
			return handler(srv, ss)
		}
		return handler(srv, &guardedStream{ServerStream: ss, ctx: WithPrincipal(ss.Context(), p), g: g, p: p, method: info.FullMethod, rule: rule})
	}
}

type guardedStream struct {
	grpc.ServerStream
	ctx    context.Context
	g      *Guard
	p      Principal
	method string
	rule   Rule
}

func (s *guardedStream) Context() context.Context { return s.ctx }

func (s *guardedStream) RecvMsg(m any) error {
	if err := s.ServerStream.RecvMsg(m); err != nil {
		return err
	}
	if err := s.g.check(s.p, s.method, s.rule, m); err != nil {
		return err
	}
	return s.g.quota(s.ctx, s.p, s.rule.Quota, m)
}

func (s *guardedStream) SendMsg(m any) error {
	if s.rule.Quota != FetchQuota {
		return s.ServerStream.SendMsg(m)
	}
	if err := s.g.cfg.Quotas.Wait(s.ctx, s.p.Name, FetchQuota); err != nil {
		return status.FromContextError(err).Err()
	}
	n := size(m) // before sending: a codec may drop the message once encoded
	if err := s.ServerStream.SendMsg(m); err != nil {
		return err
	}
	s.g.cfg.Quotas.Charge(s.p.Name, FetchQuota, n)
	return nil
}

// quota waits off the principal's debt of kind, then charges a produce
// request's bytes.
func (g *Guard) quota(ctx context.Context, p Principal, kind QuotaKind, req any) error {
	if kind == NoQuota || g.cfg.Quotas == nil {
		return nil
	}
	if err := g.cfg.Quotas.Wait(ctx, p.Name, kind); err != nil {
		return status.FromContextError(err).Err()
	}
	if kind == ProduceQuota {
		g.cfg.Quotas.Charge(p.Name, kind, size(req))
	}
	return nil
}

func size(m any) int {
	if pm, ok := m.(proto.Message); ok && pm != nil {
		return proto.Size(pm)
	}
	return 0
}

// admit finds the method's rule and authenticates the caller.
func (g *Guard) admit(ctx context.Context, method string) (Rule, Principal, error) {
	rule, ok := g.cfg.Rules[method]
	if !g.cfg.Enforce {
		return rule, Principal{Name: Anonymous, Via: "anonymous"}, nil
	}
	if !ok {
		g.cfg.Logger.Warn("request refused: method has no authorization rule", "method", method)
		return rule, Principal{}, status.Errorf(codes.PermissionDenied, "method %s has no authorization rule on this broker: it is refused to everyone", method)
	}
	if rule.Public {
		return rule, Principal{}, nil
	}
	p, err := g.authenticate(ctx)
	if err != nil {
		attrs := []any{"method", method, "reason", err.Error()}
		if pr, ok := peer.FromContext(ctx); ok && pr.Addr != nil {
			attrs = append(attrs, "peer", pr.Addr.String())
		}
		g.cfg.Logger.Warn("authentication failed", attrs...)
		return rule, Principal{}, status.Error(codes.Unauthenticated, err.Error())
	}
	return rule, p, nil
}

// authenticate returns the caller's principal: the bearer token's, else
// the verified client certificate's. Its errors never hold the token.
func (g *Guard) authenticate(ctx context.Context) (Principal, error) {
	var certPrincipal string
	if g.cfg.MutualTLS {
		pr, _ := peer.FromContext(ctx)
		var info ClientAuthInfo
		var ok bool
		if pr != nil {
			info, ok = pr.AuthInfo.(ClientAuthInfo)
		}
		switch {
		case !ok:
			return Principal{}, errors.New("not a mutual TLS connection: this broker requires a client certificate over TLS")
		case info.Err != nil:
			return Principal{}, info.Err
		}
		certPrincipal = info.Principal
	}
	token, present, err := bearer(ctx)
	switch {
	case err != nil:
		return Principal{}, err
	case present && g.cfg.Tokens != nil:
		name, ok := g.cfg.Tokens.Principal(token)
		if !ok {
			if certPrincipal != "" {
				return Principal{}, fmt.Errorf("the bearer token is not valid (unknown or revoked), sent with client certificate of %q", certPrincipal)
			}
			return Principal{}, errors.New("the bearer token is not valid (unknown or revoked): use a token listed in the broker's token file")
		}
		return g.principal(name, "token"), nil
	case certPrincipal != "":
		return g.principal(certPrincipal, "certificate"), nil
	}
	return Principal{}, errors.New("no bearer token: this broker requires one (the client's --token, or STRATA_TOKEN)")
}

func (g *Guard) principal(name, via string) Principal {
	return Principal{Name: name, Via: via, Super: slices.Contains(g.cfg.SuperUsers, name)}
}

// bearer returns the request's bearer token, if it has one.
func bearer(ctx context.Context) (string, bool, error) {
	md, _ := metadata.FromIncomingContext(ctx)
	vals := md.Get("authorization")
	switch len(vals) {
	case 0:
		return "", false, nil
	case 1:
	default:
		return "", false, errors.New("more than one authorization header: send one bearer token")
	}
	scheme, token, ok := strings.Cut(vals[0], " ")
	if !ok || !strings.EqualFold(scheme, "bearer") || token == "" {
		return "", false, errors.New(`the authorization header is not "Bearer <token>"`)
	}
	return strings.TrimSpace(token), true, nil
}

// check authorizes a request message per the rule.
func (g *Guard) check(p Principal, method string, rule Rule, msg any) error {
	if !g.cfg.Enforce || p.Super || rule.Needs == nil {
		return nil
	}
	needs, err := rule.Needs(msg)
	if err != nil {
		g.cfg.Logger.Error("authorization rule failed", "method", method, "principal", p.Name, "err", err)
		return status.Errorf(codes.Internal, "authorizing %s: %v", method, err)
	}
	acls := g.cfg.ACLs.ACLs()
	for _, a := range needs {
		if !Allowed(acls, p.Name, a) {
			g.cfg.Logger.Warn("request denied", "principal", p.Name, "via", p.Via, "method", method, "operation", string(a.Op), "resource", a.Resource.String(), "reason", "no ACL allows it")
			return status.Errorf(codes.PermissionDenied, "principal %q may not %s: no ACL allows it (an admin grants it with `strata acl add`; docs/security.md)", p.Name, a)
		}
	}
	return nil
}

// Authorize checks accesses for the principal in ctx (put there by the
// interceptors): for a front end whose requests name resources only
// inside the handler. A context without a principal is refused when the
// Guard enforces.
func (g *Guard) Authorize(ctx context.Context, method string, accesses ...Access) error {
	if !g.cfg.Enforce {
		return nil
	}
	p, ok := PrincipalFrom(ctx)
	if !ok {
		return status.Error(codes.Unauthenticated, "no authenticated principal")
	}
	return g.check(p, method, Rule{Needs: func(any) ([]Access, error) { return accesses, nil }}, nil)
}

package flightserver_test

import (
	"context"
	"io"
	"log/slog"
	"testing"

	"github.com/apache/arrow/go/v17/arrow/flight"
	flightpb "github.com/apache/arrow/go/v17/arrow/flight/gen/flight"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	"github.com/stratalog/strata/auth"
	"github.com/stratalog/strata/core"
	"github.com/stratalog/strata/internal/storetest"
	flightserver "github.com/stratalog/strata/server/flight"
)

type staticACLs []auth.ACL

func (a staticACLs) ACLs() []auth.ACL { return a }

// Every method of the Flight service has a rule, so none is refused to
// everyone once a broker enforces authentication.
func TestRulesCoverTheService(t *testing.T) {
	if m := flightserver.Rules().Missing(&flightpb.FlightService_ServiceDesc); len(m) > 0 {
		t.Fatalf("Flight methods without an authorization rule: %v", m)
	}
}

// Behind an auth Guard: no token is UNAUTHENTICATED; GetFlightInfo and
// GetSchema need describe on the topic, DoGet consume, and ListFlights
// lists only what the caller may describe.
func TestAuthorization(t *testing.T) {
	ctx := context.Background()
	aliceTok, bobTok := auth.NewToken(), auth.NewToken()
	hashOf := func(tok string) string {
		h, err := auth.HashToken(tok)
		if err != nil {
			t.Fatal(err)
		}
		return h
	}
	tokens, err := auth.ParseTokens([]byte("principals:\n  - name: alice\n    tokens: [" + hashOf(aliceTok) + "]\n  - name: bob\n    tokens: [" + hashOf(bobTok) + "]\n"))
	if err != nil {
		t.Fatal(err)
	}
	acls := staticACLs{
		{Principal: "alice", Type: auth.Topic, Pattern: auth.Literal, Name: "a", Operations: []auth.Operation{auth.Consume}},
		{Principal: "bob", Type: auth.Topic, Pattern: auth.Literal, Name: "b", Operations: []auth.Operation{auth.Describe}},
	}
	g, err := auth.NewGuard(auth.Config{Enforce: true, Tokens: tokens, ACLs: acls, Rules: auth.Merge(auth.StandardRules(), flightserver.Rules()),
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		t.Fatal(err)
	}
	cfg := testConfig(t, storetest.File(t))
	e := start(t, cfg, flightserver.DefaultConfig()) // for its broker
	for _, name := range []string{"a", "b"} {
		if _, err := e.b.CreateTopic(ctx, core.TopicConfig{Name: name, Partitions: 1}); err != nil {
			t.Fatal(err)
		}
		produceAt(t, e.b, name, 0, 10, 1, 2, 3)
	}
	fcfg := flightserver.DefaultConfig()
	fcfg.Visible = func(ctx context.Context, topic string) bool {
		return g.Authorize(ctx, flightserver.Method("ListFlights"), auth.TopicAccess(auth.Describe, topic)) == nil
	}
	_, addr := serveFlight(t, e.b, fcfg, g.ServerOptions()...)
	fc, err := flight.NewClientWithMiddleware(addr, nil, nil, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer fc.Close()
	as := func(tok string) context.Context {
		return metadata.AppendToOutgoingContext(ctx, "authorization", "Bearer "+tok)
	}
	info := func(ctx context.Context, topic string) (*flight.FlightInfo, error) {
		return fc.GetFlightInfo(ctx, flightserver.PathDescriptor(topic))
	}
	list := func(ctx context.Context) []string {
		s, err := fc.ListFlights(ctx, &flight.Criteria{})
		if err != nil {
			t.Fatal(err)
		}
		var out []string
		for {
			fi, err := s.Recv()
			if err == io.EOF {
				return out
			}
			if err != nil {
				t.Fatal(err)
			}
			out = append(out, fi.FlightDescriptor.Path[0])
		}
	}

	if _, err := info(ctx, "a"); status.Code(err) != codes.Unauthenticated {
		t.Fatalf("GetFlightInfo without a token: %v, want UNAUTHENTICATED", err)
	}
	fa, err := info(as(aliceTok), "a")
	if err != nil {
		t.Fatalf("alice (consume on a) GetFlightInfo a: %v", err)
	}
	if s, err := doGet(as(aliceTok), fc, fa.Endpoint[0].Ticket); err != nil || len(s.rows) != 3 {
		t.Fatalf("alice DoGet a: %v", err)
	}
	if _, err := doGet(ctx, fc, fa.Endpoint[0].Ticket); status.Code(err) != codes.Unauthenticated {
		t.Fatalf("DoGet without a token: %v, want UNAUTHENTICATED", err)
	}
	if _, err := info(as(aliceTok), "b"); status.Code(err) != codes.PermissionDenied {
		t.Fatalf("alice GetFlightInfo b: %v, want PERMISSION_DENIED", err)
	}
	if _, err := fc.GetSchema(as(aliceTok), flightserver.PathDescriptor("b")); status.Code(err) != codes.PermissionDenied {
		t.Fatalf("alice GetSchema b: %v, want PERMISSION_DENIED", err)
	}
	fb, err := info(as(bobTok), "b")
	if err != nil {
		t.Fatalf("bob (describe on b) GetFlightInfo b: %v", err)
	}
	if _, err := doGet(as(bobTok), fc, fb.Endpoint[0].Ticket); status.Code(err) != codes.PermissionDenied {
		t.Fatalf("bob DoGet b (describe only): %v, want PERMISSION_DENIED", err)
	}
	if _, err := doGet(as(bobTok), fc, fa.Endpoint[0].Ticket); status.Code(err) != codes.PermissionDenied {
		t.Fatalf("bob DoGet of alice's ticket of a: %v, want PERMISSION_DENIED", err)
	}
	if got := list(as(aliceTok)); len(got) != 1 || got[0] != "a" {
		t.Fatalf("alice ListFlights: %v, want [a]", got)
	}
	if got := list(as(bobTok)); len(got) != 1 || got[0] != "b" {
		t.Fatalf("bob ListFlights: %v, want [b]", got)
	}
	// A malformed ticket is the handler's INVALID_ARGUMENT, not a way in.
	if _, err := doGet(as(bobTok), fc, &flight.Ticket{Ticket: []byte("{")}); status.Code(err) != codes.InvalidArgument {
		t.Fatalf("bob DoGet of a malformed ticket: %v, want INVALID_ARGUMENT", err)
	}
}

package grpcserver

import (
	"context"
	"errors"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/stratalog/strata/api/stratapb"
	"github.com/stratalog/strata/auth"
)

// ACLAdmin changes and lists the cluster's ACLs (an *auth.ACLStore).
type ACLAdmin interface {
	Add(ctx context.Context, a auth.ACL) (changed bool, err error)
	Remove(ctx context.Context, a auth.ACL) (changed bool, err error)
	List(ctx context.Context, principal string) ([]auth.ACL, error)
}

var _ ACLAdmin = (*auth.ACLStore)(nil)

func aclFromProto(a *stratapb.Acl) (auth.ACL, error) {
	if a == nil {
		return auth.ACL{}, status.Error(codes.InvalidArgument, "acl is required")
	}
	out := auth.ACL{Principal: a.Principal, Type: auth.ResourceType(a.ResourceType), Pattern: auth.PatternType(a.PatternType), Name: a.Name}
	for _, o := range a.Operations {
		out.Operations = append(out.Operations, auth.Operation(o))
	}
	if err := out.Normalize(); err != nil {
		return auth.ACL{}, status.Error(codes.InvalidArgument, err.Error())
	}
	return out, nil
}

func aclToProto(a auth.ACL) *stratapb.Acl {
	out := &stratapb.Acl{Principal: a.Principal, ResourceType: string(a.Type), PatternType: string(a.Pattern), Name: a.Name}
	for _, o := range a.Operations {
		out.Operations = append(out.Operations, string(o))
	}
	return out
}

func (s *Server) aclAdmin() (ACLAdmin, error) {
	if s.cfg.ACLs == nil {
		return nil, status.Error(codes.FailedPrecondition, "this broker keeps no ACLs (the front end was made without Config.ACLs)")
	}
	return s.cfg.ACLs, nil
}

func aclStatus(err error) error {
	switch {
	case errors.Is(err, auth.ErrInvalidACL):
		return status.Error(codes.InvalidArgument, err.Error())
	case errors.Is(err, context.Canceled):
		return status.Error(codes.Canceled, err.Error())
	case errors.Is(err, context.DeadlineExceeded):
		return status.Error(codes.DeadlineExceeded, err.Error())
	}
	// The bucket could not be read or written, or the change raced
	// others 20 times: nothing is known to have changed; retry.
	return status.Error(codes.Unavailable, err.Error())
}

// AddAcl implements the API.
func (s *Server) AddAcl(ctx context.Context, req *stratapb.AddAclRequest) (*stratapb.AddAclResponse, error) {
	st, err := s.aclAdmin()
	if err != nil {
		return nil, err
	}
	a, err := aclFromProto(req.GetAcl())
	if err != nil {
		return nil, err
	}
	changed, err := st.Add(ctx, a)
	if err != nil {
		return nil, aclStatus(err)
	}
	return &stratapb.AddAclResponse{Changed: changed}, nil
}

// RemoveAcl implements the API.
func (s *Server) RemoveAcl(ctx context.Context, req *stratapb.RemoveAclRequest) (*stratapb.RemoveAclResponse, error) {
	st, err := s.aclAdmin()
	if err != nil {
		return nil, err
	}
	a, err := aclFromProto(req.GetAcl())
	if err != nil {
		return nil, err
	}
	changed, err := st.Remove(ctx, a)
	if err != nil {
		return nil, aclStatus(err)
	}
	return &stratapb.RemoveAclResponse{Changed: changed}, nil
}

// ListAcls implements the API.
func (s *Server) ListAcls(ctx context.Context, req *stratapb.ListAclsRequest) (*stratapb.ListAclsResponse, error) {
	st, err := s.aclAdmin()
	if err != nil {
		return nil, err
	}
	acls, err := st.List(ctx, req.GetPrincipal())
	if err != nil {
		return nil, aclStatus(err)
	}
	out := &stratapb.ListAclsResponse{}
	for _, a := range acls {
		out.Acls = append(out.Acls, aclToProto(a))
	}
	return out, nil
}

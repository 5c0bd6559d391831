package client

import (
	"context"

	"google.golang.org/grpc"

	"github.com/stratalog/strata/api/stratapb"
)

// The ACL RPCs go to any live broker: the ACLs are in the bucket, and
// every broker serves the same set.

func (r router) AddAcl(ctx context.Context, in *stratapb.AddAclRequest, opts ...grpc.CallOption) (*stratapb.AddAclResponse, error) {
	return unary(ctx, r.anyBroker, in, func(a stratapb.StrataClient) func(context.Context, *stratapb.AddAclRequest, ...grpc.CallOption) (*stratapb.AddAclResponse, error) {
		return a.AddAcl
	}, opts)
}

func (r router) RemoveAcl(ctx context.Context, in *stratapb.RemoveAclRequest, opts ...grpc.CallOption) (*stratapb.RemoveAclResponse, error) {
	return unary(ctx, r.anyBroker, in, func(a stratapb.StrataClient) func(context.Context, *stratapb.RemoveAclRequest, ...grpc.CallOption) (*stratapb.RemoveAclResponse, error) {
		return a.RemoveAcl
	}, opts)
}

func (r router) ListAcls(ctx context.Context, in *stratapb.ListAclsRequest, opts ...grpc.CallOption) (*stratapb.ListAclsResponse, error) {
	return unary(ctx, r.anyBroker, in, func(a stratapb.StrataClient) func(context.Context, *stratapb.ListAclsRequest, ...grpc.CallOption) (*stratapb.ListAclsResponse, error) {
		return a.ListAcls
	}, opts)
}

// ACL is one access control entry (docs/security.md): Principal (or "*")
// may perform Operations (produce, consume, describe, admin) on resources
// of ResourceType (topic, group, cluster) whose name is Name (Prefix
// false) or starts with it (Prefix true).
type ACL struct {
	Principal    string
	ResourceType string
	Name         string
	Prefix       bool
	Operations   []string
}

func aclToProto(a ACL) *stratapb.Acl {
	pt := "literal"
	if a.Prefix {
		pt = "prefix"
	}
	return &stratapb.Acl{Principal: a.Principal, ResourceType: a.ResourceType, PatternType: pt, Name: a.Name, Operations: a.Operations}
}

// AddACL grants an ACL; changed is false when it was granted already.
func (c *Client) AddACL(ctx context.Context, a ACL) (changed bool, err error) {
	resp, err := c.api.AddAcl(ctx, &stratapb.AddAclRequest{Acl: aclToProto(a)})
	return resp.GetChanged(), err
}

// RemoveACL takes an ACL's operations away; changed is false when none
// of them was granted.
func (c *Client) RemoveACL(ctx context.Context, a ACL) (changed bool, err error) {
	resp, err := c.api.RemoveAcl(ctx, &stratapb.RemoveAclRequest{Acl: aclToProto(a)})
	return resp.GetChanged(), err
}

// ListACLs returns the ACLs of principal ("": everyone's).
func (c *Client) ListACLs(ctx context.Context, principal string) ([]ACL, error) {
	resp, err := c.api.ListAcls(ctx, &stratapb.ListAclsRequest{Principal: principal})
	if err != nil {
		return nil, err
	}
	out := make([]ACL, 0, len(resp.Acls))
	for _, a := range resp.Acls {
		out = append(out, ACL{Principal: a.Principal, ResourceType: a.ResourceType, Name: a.Name, Prefix: a.PatternType == "prefix", Operations: a.Operations})
	}
	return out, nil
}

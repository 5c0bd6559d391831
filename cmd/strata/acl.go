package main

import (
	"bufio"
	"context"
	"errors"
	"flag"
	"fmt"
	"strings"

	"github.com/stratalog/strata/auth"
	"github.com/stratalog/strata/client"
)

const aclUsage = "usage: strata acl add|remove --principal P (--topic NAME | --group NAME | --cluster) [--prefix] --operation OP[,OP] --broker HOST:PORT[,...]\n       strata acl list [--principal P] [-o json] --broker HOST:PORT[,...]\n(OP: produce, consume, describe, admin; P: a principal or '*' for every authenticated one; docs/security.md)"

// aclCmd manages the cluster's ACLs (docs/security.md).
func aclCmd(ctx context.Context, args []string) error {
	if len(args) == 0 {
		return errors.New(aclUsage)
	}
	fs := flag.NewFlagSet("acl "+args[0], flag.ContinueOnError)
	brokerAddr := brokerFlag(fs)
	principal := fs.String("principal", "", "the principal (a token's name, or a client certificate's CN or SAN), or '*' for every authenticated principal")
	topic := fs.String("topic", "", "the ACL is about this topic (with --prefix: every topic whose name starts with it)")
	group := fs.String("group", "", "the ACL is about this consumer or share group (with --prefix: every group whose name starts with it)")
	cluster := fs.Bool("cluster", false, "the ACL is about the cluster: ACL changes (admin), broker stats and ACL lists (describe)")
	prefix := fs.Bool("prefix", false, "--topic or --group is a name prefix (\"\" with --prefix: every one)")
	ops := fs.String("operation", "", "comma-separated operations: produce, consume, describe, admin (admin implies the others; produce and consume imply describe)")
	output := outputFlag(fs)
	pos, err := parseArgs(fs, args[1:])
	if err != nil {
		return err
	}
	if len(pos) != 0 {
		return fmt.Errorf("unexpected arguments %q\n%s", pos, aclUsage)
	}
	switch args[0] {
	case "add", "remove":
	case "list":
		if err := checkOutput(*output); err != nil {
			return err
		}
		cl, err := dial(brokerAddr)
		if err != nil {
			return err
		}
		defer cl.Close()
		acls, err := cl.ListACLs(ctx, *principal)
		if err != nil {
			return rpcErr(err)
		}
		return printACLs(acls, *output)
	default:
		return fmt.Errorf("unknown acl command %q\n%s", args[0], aclUsage)
	}
	a := client.ACL{Principal: *principal, Prefix: *prefix}
	n := 0
	if flagSet(fs, "topic") {
		a.ResourceType, a.Name, n = string(auth.Topic), *topic, n+1
	}
	if flagSet(fs, "group") {
		a.ResourceType, a.Name, n = string(auth.Group), *group, n+1
	}
	if *cluster {
		a.ResourceType, n = string(auth.Cluster), n+1
	}
	if n != 1 {
		return fmt.Errorf("name one resource: --topic NAME, --group NAME or --cluster\n%s", aclUsage)
	}
	if *principal == "" || *ops == "" {
		return fmt.Errorf("--principal and --operation are required\n%s", aclUsage)
	}
	for _, o := range strings.Split(*ops, ",") {
		a.Operations = append(a.Operations, strings.TrimSpace(o))
	}
	// Check locally first: an invalid pattern is refused before any call.
	check := auth.ACL{Principal: a.Principal, Type: auth.ResourceType(a.ResourceType), Name: a.Name, Pattern: auth.Literal}
	if a.Prefix {
		check.Pattern = auth.Prefix
	}
	for _, o := range a.Operations {
		check.Operations = append(check.Operations, auth.Operation(o))
	}
	if err := check.Normalize(); err != nil {
		return err
	}
	cl, err := dial(brokerAddr)
	if err != nil {
		return err
	}
	defer cl.Close()
	var changed bool
	if args[0] == "add" {
		changed, err = cl.AddACL(ctx, a)
	} else {
		changed, err = cl.RemoveACL(ctx, a)
	}
	if err != nil {
		return rpcErr(err)
	}
	switch {
	case args[0] == "add" && changed:
		fmt.Fprintf(stdout, "added: %s\n", check)
	case args[0] == "add":
		fmt.Fprintf(stdout, "unchanged: %s (granted already)\n", check)
	case changed:
		fmt.Fprintf(stdout, "removed: %s\n", check)
	default:
		fmt.Fprintf(stdout, "unchanged: no ACL granted %s\n", check)
	}
	return nil
}

// aclJSON is one ACL in the JSON output of acl list.
type aclJSON struct {
	Principal    string   `json:"principal"`
	ResourceType string   `json:"resource_type"`
	Pattern      string   `json:"pattern"`
	Name         *string  `json:"name"`
	Operations   []string `json:"operations"`
}

// printACLs prints acl list's answer as a table, or with output "json"
// as one JSON array (a cluster ACL has pattern "-" and a null name).
func printACLs(acls []client.ACL, output string) error {
	rows := make([]aclJSON, 0, len(acls))
	for _, a := range acls {
		r := aclJSON{Principal: a.Principal, ResourceType: a.ResourceType, Pattern: "literal", Operations: a.Operations}
		if a.Prefix {
			r.Pattern = "prefix"
		}
		if a.ResourceType == string(auth.Cluster) {
			r.Pattern = "-"
		} else {
			name := a.Name
			r.Name = &name
		}
		if r.Operations == nil {
			r.Operations = []string{}
		}
		rows = append(rows, r)
	}
	if output == "json" {
		return printJSON(rows)
	}
	t := newTable(stdout, "PRINCIPAL", "RESOURCE", "PATTERN", "NAME", "OPERATIONS")
	for _, r := range rows {
		name := "-"
		if r.Name != nil {
			name = fmt.Sprintf("%q", *r.Name)
		}
		t.row(r.Principal, r.ResourceType, r.Pattern, name, strings.Join(r.Operations, ","))
	}
	return t.flush()
}

const tokenUsage = "usage: strata token new [--principal P]   make a random token and print it with its hash\n       strata token hash                 read a token on stdin and print its hash for the broker's token file"

// tokenCmd makes bearer tokens and their hashes (docs/security.md).
func tokenCmd(_ context.Context, args []string) error {
	if len(args) == 0 {
		return errors.New(tokenUsage)
	}
	fs := flag.NewFlagSet("token "+args[0], flag.ContinueOnError)
	principal := fs.String("principal", "NAME", "the principal of the token file entry printed (new)")
	if err := fs.Parse(args[1:]); err != nil {
		return err
	}
	switch args[0] {
	case "new":
		if err := auth.ValidPrincipal(*principal); err != nil {
			return err
		}
		tok := auth.NewToken()
		h, err := auth.HashToken(tok)
		if err != nil {
			return err
		}
		fmt.Fprintf(errOut, "the token (give it to the client, e.g. as STRATA_TOKEN; it is not shown again):\n")
		fmt.Fprintln(stdout, tok)
		fmt.Fprintf(errOut, "the broker's token file entry:\n  - name: %s\n    tokens: [\"%s\"]\n", *principal, h)
		return nil
	case "hash":
		sc := bufio.NewScanner(stdin)
		if !sc.Scan() {
			if err := sc.Err(); err != nil {
				return err
			}
			return errors.New("no token on stdin: pipe one in, e.g. `printenv STRATA_TOKEN | strata token hash`")
		}
		h, err := auth.HashToken(strings.TrimSpace(sc.Text()))
		if err != nil {
			return err
		}
		fmt.Fprintln(stdout, h)
		return nil
	}
	return fmt.Errorf("unknown token command %q\n%s", args[0], tokenUsage)
}

package main

import (
	"errors"
	"flag"
	"os"
	"strings"
	"sync"

	"github.com/stratalog/strata/client"
)

// connFlags are the TLS and token flags of every command that talks to a
// broker, registered with its --broker flag (brokerFlag) and read by dial.
type connFlags struct {
	tls                            *bool
	ca, cert, key, serverName, tok *string
	insecureToken                  *bool
}

// connFlagsOf maps each command's --broker flag to its connection flags.
var (
	connFlagsMu sync.Mutex
	connFlagsOf = map[*string]*connFlags{}
)

func addConnFlags(fs *flag.FlagSet, broker *string) {
	f := &connFlags{
		tls:           fs.Bool("tls", false, "connect over TLS, trusting the system's CAs (implied by --tls-ca, --tls-cert and --tls-server-name)"),
		ca:            fs.String("tls-ca", "", "connect over TLS, trusting the CA certificates in this PEM file (for a self-signed broker certificate: that certificate)"),
		cert:          fs.String("tls-cert", "", "client certificate (PEM) for a broker that requires mutual TLS; needs --tls-key"),
		key:           fs.String("tls-key", "", "the PEM private key of --tls-cert"),
		serverName:    fs.String("tls-server-name", "", "the name the broker's certificate must carry (default: the host of --broker)"),
		tok:           fs.String("token", "", "bearer token to authenticate with (default $STRATA_TOKEN, which keeps it out of the process list); sent over TLS only"),
		insecureToken: fs.Bool("insecure-token", false, "send --token without TLS too (a proxy on the same host terminates TLS); anyone on the path can read it"),
	}
	connFlagsMu.Lock()
	connFlagsOf[broker] = f
	connFlagsMu.Unlock()
}

// options are the client options the flags ask for.
func (f *connFlags) options() ([]client.Option, error) {
	var opts []client.Option
	useTLS := *f.tls || *f.ca != "" || *f.cert != "" || *f.key != "" || *f.serverName != ""
	if useTLS {
		cfg, err := client.LoadTLSConfig(client.TLSFiles{CAFile: *f.ca, CertFile: *f.cert, KeyFile: *f.key, ServerName: *f.serverName})
		if err != nil {
			return nil, err
		}
		opts = append(opts, client.WithTLS(cfg))
	}
	tok := *f.tok
	if tok == "" {
		tok = strings.TrimSpace(os.Getenv("STRATA_TOKEN"))
	}
	switch {
	case tok == "":
	case useTLS:
		opts = append(opts, client.WithToken(tok))
	case *f.insecureToken:
		opts = append(opts, client.WithPlaintextToken(tok))
	default:
		return nil, errors.New("a bearer token (--token or STRATA_TOKEN) is sent over TLS only: give --tls-ca (or --tls), or --insecure-token to send it in clear text")
	}
	return opts, nil
}

// connOptions returns the client options of the command whose --broker
// flag is broker.
func connOptions(broker *string) ([]client.Option, error) {
	connFlagsMu.Lock()
	f := connFlagsOf[broker]
	connFlagsMu.Unlock()
	if f == nil {
		return nil, nil
	}
	return f.options()
}

// tlsHint adds advice to a TLS failure's message.
func tlsHint(msg string) string {
	switch {
	case strings.Contains(msg, "certificate signed by unknown authority"):
		return " (the broker's certificate is not signed by a CA in --tls-ca: give the CA that signed it; for a self-signed broker certificate, give that certificate itself)"
	case strings.Contains(msg, "certificate has expired") || strings.Contains(msg, "expired certificate"):
		return " (a certificate has expired: renew it)"
	case strings.Contains(msg, "first record does not look like a TLS handshake"):
		return " (the broker does not serve TLS: drop the --tls flags, or start it with --tls-cert and --tls-key)"
	case strings.Contains(msg, "error reading server preface") || strings.Contains(msg, "connection reset by peer"):
		return " (if the broker serves TLS, give --tls-ca or --tls)"
	case strings.Contains(msg, "certificate is valid for"):
		return " (the broker's certificate does not name the address dialed: give --tls-server-name with a name it carries)"
	}
	return ""
}

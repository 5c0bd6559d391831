package main

import (
	"flag"
	"fmt"
	"net"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/stratalog/strata/core"
	"github.com/stratalog/strata/membership"
)

// gossipCluster is core.Cluster over membership (gossip). Once leaving is
// set (a graceful leave began), this broker proposes itself for nothing:
// its writes are redirected while it hands its partitions off.
type gossipCluster struct {
	c       *membership.Cluster
	settle  time.Duration
	leaving atomic.Bool
}

func node(m membership.Member) core.Node {
	return core.Node{ID: m.Name, Addr: m.ClientAddr, Zone: m.Zone, Incarnation: m.Incarnation}
}

// SetIncarnation publishes the broker's WAL incarnation in its gossip
// metadata (core.IncarnationPublisher).
func (g *gossipCluster) SetIncarnation(inc string) error { return g.c.SetIncarnation(inc) }

func (g *gossipCluster) Self() core.Node { return node(g.c.Self()) }

func (g *gossipCluster) Members() []core.Node {
	self := g.c.Name()
	var out []core.Node
	for _, m := range g.c.Members() {
		if g.leaving.Load() && m.Name == self {
			continue
		}
		out = append(out, node(m))
	}
	return out
}

func (g *gossipCluster) Owner(key string) core.Node {
	ms := membership.Settled(g.c.Members(), time.Now(), g.settle)
	if g.leaving.Load() {
		self := g.c.Name()
		rest := make([]membership.Member, 0, len(ms))
		for _, m := range ms {
			if m.Name != self {
				rest = append(rest, m)
			}
		}
		ms = rest
	}
	o, ok := membership.Owner(key, ms)
	if !ok {
		return core.Node{}
	}
	return node(o)
}

func (g *gossipCluster) Changes() <-chan struct{} { return g.c.Changes() }

// clusterFlags are serve's membership flags.
type clusterFlags struct {
	nodeID, gossipListen, gossipAdvertise, join, advertise, zone *string
	settle                                                       *time.Duration
	gossipKeyFile                                                *string
}

func addClusterFlags(fs *flag.FlagSet) clusterFlags {
	return clusterFlags{
		nodeID:          fs.String("node-id", "", "this broker's id in the cluster, unique and stable across restarts (default: the --advertise address)"),
		gossipListen:    fs.String("gossip-listen", "", "gossip (memberlist, TCP and UDP) address HOST:PORT; empty: no gossip unless --join is set (then 127.0.0.1:7946)"),
		gossipAdvertise: fs.String("gossip-advertise", "", "gossip address the other brokers reach this one at (default --gossip-listen)"),
		join:            fs.String("join", "", "gossip addresses HOST:PORT[,HOST:PORT] of brokers to join, retried until one answers; empty: a cluster of one (others may join it)"),
		advertise:       fs.String("advertise", "", "client (gRPC) address HOST:PORT the other brokers and clients are told (default --listen)"),
		zone:            fs.String("zone", "", "zone label of this broker, published to the cluster"),
		settle:          fs.Duration("settle", 5*time.Second, "how long a broker that joined must be up before partitions move to it (anti-flap)"),
		gossipKeyFile:   fs.String("gossip-key-file", "", "encrypt gossip (AES, memberlist's key ring) with the keys in FILE: one base64 key of 16, 24 or 32 bytes a line, the first used to encrypt, all accepted to decrypt; reread on SIGHUP and when the file changes (rotation: docs/ops-security.md)"),
	}
}

// start joins the cluster the flags describe, or returns nil for a
// cluster of one without gossip.
func (f clusterFlags) start(listen string) (*gossipCluster, error) {
	if *f.gossipListen == "" && *f.join == "" {
		if *f.gossipKeyFile != "" {
			return nil, fmt.Errorf("--gossip-key-file %s encrypts gossip, and this broker gossips with no one: add --gossip-listen HOST:PORT or --join HOST:PORT, or drop --gossip-key-file", *f.gossipKeyFile)
		}
		return nil, nil
	}
	if *f.gossipListen == "" {
		*f.gossipListen = "127.0.0.1:7946"
	}
	advertise := *f.advertise
	if advertise == "" {
		advertise = listen
	}
	id := *f.nodeID
	if id == "" {
		id = advertise
	}
	host, port, err := splitHostPort("--gossip-listen", *f.gossipListen)
	if err != nil {
		return nil, err
	}
	mc := membership.Config{Name: id, BindAddr: host, BindPort: port, ClientAddr: advertise, Zone: *f.zone, Settle: *f.settle, RetryJoin: true}
	if *f.gossipKeyFile != "" {
		if mc.Keys, err = membership.LoadKeyFile(*f.gossipKeyFile); err != nil {
			return nil, fmt.Errorf("%w (--gossip-key-file); the broker did not start", err)
		}
	}
	if *f.gossipAdvertise != "" {
		if mc.AdvertiseAddr, mc.AdvertisePort, err = splitHostPort("--gossip-advertise", *f.gossipAdvertise); err != nil {
			return nil, err
		}
	}
	for _, s := range strings.Split(*f.join, ",") {
		if s = strings.TrimSpace(s); s != "" {
			mc.Seeds = append(mc.Seeds, s)
		}
	}
	c, err := membership.Join(mc)
	if err != nil {
		return nil, err
	}
	return &gossipCluster{c: c, settle: *f.settle}, nil
}

func splitHostPort(flagName, addr string) (string, int, error) {
	host, ps, err := net.SplitHostPort(addr)
	if err != nil {
		return "", 0, fmt.Errorf("%s %q: %v: use HOST:PORT", flagName, addr, err)
	}
	port, err := strconv.Atoi(ps)
	if err != nil || port < 0 || port > 65535 {
		return "", 0, fmt.Errorf("%s %q: port %q is not a number in 0-65535", flagName, addr, ps)
	}
	return host, port, nil
}

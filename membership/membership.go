// Package membership owns who is alive in a strata cluster and who should
// own what: brokers gossip membership with hashicorp/memberlist (SWIM), and
// partition ownership is proposed by rendezvous (highest random weight)
// hashing of the partition over the live members.
//
// Invariants:
//   - Membership is advice, never authority. Two brokers may briefly both
//     believe they own a partition (views converge by gossip); correctness
//     rests on the bucket's conditional writes (the manifest epoch CAS and
//     WAL fencing), never on this package.
//   - Owner is a pure function of (key, live member names): every broker
//     with the same view proposes the same owner, and when a member leaves
//     only the keys it owned move (rendezvous hashing).
//
// Concurrency: a Cluster is safe for concurrent use. Its memberlist
// goroutines are owned by the Cluster and stopped by Leave/Shutdown.
package membership

import (
	"errors"
	"fmt"
	"hash/fnv"
	"io"
	"log"
	"sort"
	"sync"
	"time"

	"github.com/hashicorp/memberlist"
)

// Config configures a Cluster member.
type Config struct {
	Name     string   // unique broker name; required
	BindAddr string   // address to gossip on; default 127.0.0.1
	BindPort int      // port for TCP and UDP gossip; 0 picks a free one
	Meta     []byte   // published to the others (e.g. the broker's API address); at most 512 bytes
	Seeds    []string // host:port of members to join; empty starts a new cluster
	// LAN uses memberlist's LAN timings (probe every 1 s, suspicion after a
	// few missed probes); false uses its local-network timings, faster to
	// detect failures, for tests and single-machine clusters. Default false.
	LAN    bool
	Logger io.Writer // memberlist's log output; default discarded
}

// Member is a live broker.
type Member struct {
	Name string
	Addr string // gossip address host:port
	Meta []byte
}

// Cluster is this broker's view of the cluster.
type Cluster struct {
	ml      *memberlist.Memberlist
	changes chan struct{} // capacity 1: "the view changed"

	mu       sync.Mutex
	shutdown bool
}

type delegate struct{ meta []byte }

func (d delegate) NodeMeta(limit int) []byte                { return d.meta[:min(len(d.meta), limit)] }
func (delegate) NotifyMsg([]byte)                           {}
func (delegate) GetBroadcasts(overhead, limit int) [][]byte { return nil }
func (delegate) LocalState(join bool) []byte                { return nil }
func (delegate) MergeRemoteState(buf []byte, join bool)     {}
func (c *Cluster) NotifyJoin(*memberlist.Node)              { c.changed() }
func (c *Cluster) NotifyLeave(*memberlist.Node)             { c.changed() }
func (c *Cluster) NotifyUpdate(*memberlist.Node)            { c.changed() }
func (c *Cluster) changed() {
	select {
	case c.changes <- struct{}{}:
	default:
	}
}

var _ memberlist.Delegate = delegate{}
var _ memberlist.EventDelegate = (*Cluster)(nil)

// Join starts gossiping and joins the seeds (if any).
func Join(cfg Config) (*Cluster, error) {
	if cfg.Name == "" {
		return nil, errors.New("membership: Name is required")
	}
	if len(cfg.Meta) > memberlist.MetaMaxSize {
		return nil, fmt.Errorf("membership: Meta is %d bytes, over memberlist's %d-byte limit", len(cfg.Meta), memberlist.MetaMaxSize)
	}
	mc := memberlist.DefaultLocalConfig()
	if cfg.LAN {
		mc = memberlist.DefaultLANConfig()
	}
	mc.Name = cfg.Name
	mc.BindAddr = cfg.BindAddr
	if mc.BindAddr == "" {
		mc.BindAddr = "127.0.0.1"
	}
	mc.BindPort = cfg.BindPort
	mc.AdvertisePort = cfg.BindPort
	if cfg.Logger == nil {
		cfg.Logger = io.Discard
	}
	mc.Logger = log.New(cfg.Logger, "memberlist: ", log.LstdFlags)
	c := &Cluster{changes: make(chan struct{}, 1)}
	mc.Delegate = delegate{meta: cfg.Meta}
	mc.Events = c
	ml, err := memberlist.Create(mc)
	if err != nil {
		return nil, fmt.Errorf("membership: start gossip on %s:%d: %w", mc.BindAddr, cfg.BindPort, err)
	}
	c.ml = ml
	if len(cfg.Seeds) > 0 {
		if _, err := ml.Join(cfg.Seeds); err != nil {
			ml.Shutdown()
			return nil, fmt.Errorf("membership: join %v: %w", cfg.Seeds, err)
		}
	}
	return c, nil
}

// Addr is this member's gossip address, for others' Seeds.
func (c *Cluster) Addr() string {
	n := c.ml.LocalNode()
	return fmt.Sprintf("%s:%d", n.Addr, n.Port)
}

// Name is this member's name.
func (c *Cluster) Name() string { return c.ml.LocalNode().Name }

// Changes is signalled (coalesced) whenever the view changes.
func (c *Cluster) Changes() <-chan struct{} { return c.changes }

// Members returns the live members, sorted by name.
func (c *Cluster) Members() []Member {
	var out []Member
	for _, n := range c.ml.Members() {
		if n.State != memberlist.StateAlive {
			continue
		}
		out = append(out, Member{Name: n.Name, Addr: fmt.Sprintf("%s:%d", n.Addr, n.Port), Meta: append([]byte(nil), n.Meta...)})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out
}

// Owner proposes the owner of key among the live members.
func (c *Cluster) Owner(key string) (Member, bool) { return Owner(key, c.Members()) }

// Owner is rendezvous hashing: the member with the highest
// hash(member name, key) owns key. Removing a member moves only its keys.
func Owner(key string, members []Member) (Member, bool) {
	var (
		best  Member
		bestW uint64
		found bool
	)
	for _, m := range members {
		h := fnv.New64a()
		h.Write([]byte(m.Name))
		h.Write([]byte{0})
		h.Write([]byte(key))
		w := mix(h.Sum64())
		if !found || w > bestW || w == bestW && m.Name < best.Name {
			best, bestW, found = m, w, true
		}
	}
	return best, found
}

// mix is a 64-bit finalizer (splitmix64) that spreads FNV's output.
func mix(x uint64) uint64 {
	x ^= x >> 30
	x *= 0xbf58476d1ce4e5b9
	x ^= x >> 27
	x *= 0x94d049bb133111eb
	return x ^ x>>31
}

// Leave tells the others this member is going and stops gossip. It is
// idempotent.
func (c *Cluster) Leave(timeout time.Duration) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.shutdown {
		return nil
	}
	c.shutdown = true
	err := c.ml.Leave(timeout)
	if serr := c.ml.Shutdown(); err == nil {
		err = serr
	}
	return err
}

// Shutdown stops gossip without announcing a leave (others detect the
// failure). It is idempotent.
func (c *Cluster) Shutdown() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.shutdown {
		return nil
	}
	c.shutdown = true
	return c.ml.Shutdown()
}

// Package membership owns who is alive in a strata cluster and who should
// own what: brokers gossip membership with hashicorp/memberlist (SWIM), and
// partition ownership (and group coordination) is proposed by rendezvous
// (highest random weight) hashing of the key over the live members that
// have settled.
//
// Invariants:
//   - Membership is advice, never authority. Two brokers may briefly both
//     believe they own a partition (views converge by gossip); correctness
//     rests on the bucket's conditional writes (the manifest epoch CAS and
//     WAL fencing), never on this package.
//   - Owner is a pure function of (key, live members, their start times,
//     now): every broker with the same view proposes the same owner, and
//     when a member leaves only the keys it owned move (rendezvous
//     hashing).
//   - Anti-flap: a member takes part in ownership only once it has been up
//     for Settle (its start time travels in its gossip metadata), unless no
//     member has been up that long (a cluster starting together). A broker
//     that restarts or rejoins starts its settle period again, so one that
//     flaps faster than Settle is given nothing, and a partition moves to
//     a new member at most once per Settle. A member that dies loses its
//     keys at once (failover is not delayed).
//   - Node metadata (node id, client address, zone, start time) is at most
//     memberlist.MetaMaxSize bytes; Join refuses larger.
//   - Gossip encryption (Config.Keys, keys.go) is on or off for a
//     Cluster's life: with keys, every message out is encrypted with the
//     primary key (the first) and every message in must decrypt with one
//     of the installed keys, so a member without a shared key neither
//     joins nor is joined. SetKeys replaces the key ring in place (key
//     rotation); it never turns encryption on or off.
//
// Concurrency: a Cluster is safe for concurrent use. Its memberlist
// goroutines are owned by the Cluster and stopped by Leave/Shutdown.
package membership

import (
	"encoding/json"
	"errors"
	"fmt"
	"hash/fnv"
	"io"
	"log"
	"net"
	"sort"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/memberlist"
)

// Config configures a Cluster member.
type Config struct {
	Name     string // unique broker name (node id); required
	BindAddr string // address to gossip on; default 127.0.0.1
	BindPort int    // port for TCP and UDP gossip; 0 picks a free one
	// AdvertiseAddr and AdvertisePort are the gossip address the others
	// reach this member at; default the bind address (its port, when
	// BindPort is 0, the one picked).
	AdvertiseAddr string
	AdvertisePort int
	ClientAddr    string   // published to the others: the broker's client (gRPC) address
	Zone          string   // published to the others: a zone label
	Seeds         []string // host:port of members to join; empty starts a new cluster
	// RetryJoin keeps trying the seeds in the background (every second)
	// when none answers at Join, instead of failing: brokers may start in
	// any order. Until a seed answers, this member is a cluster of one.
	RetryJoin bool
	// Settle is how long a member must have been up before it takes part
	// in ownership (see the package comment). Default 0: at once.
	Settle time.Duration
	// Timing is memberlist's failure-detection timing; zero fields take
	// DefaultTiming's.
	Timing Timing
	// Keys turns gossip encryption on (AES-GCM, memberlist's key ring):
	// Keys[0] is the primary key, used to encrypt; every key is accepted
	// to decrypt. Each is 16, 24 or 32 bytes (AES-128, -192, -256).
	// Default nil: gossip in the clear.
	Keys   [][]byte
	Logger io.Writer // memberlist's log output; default discarded
}

// Timing is the failure detector's timing. A member that stops answering
// is declared dead after about one ProbeInterval (until it is probed) plus
// ProbeTimeout plus the suspicion timeout, SuspicionMult x ProbeInterval
// (x log10 of the cluster size, from 10 members), shortened by other
// members' confirmations down from SuspicionMaxTimeoutMult times that.
type Timing struct {
	ProbeInterval           time.Duration
	ProbeTimeout            time.Duration
	SuspicionMult           int
	SuspicionMaxTimeoutMult int
	GossipInterval          time.Duration
	// PushPullInterval is how often a member syncs its whole view with a
	// random other: what brings a member that was cut off and declared
	// dead back into the others' view once it can reach them.
	PushPullInterval time.Duration
}

// DefaultTiming is tuned for a LAN (or one machine): probe every 500 ms,
// 250 ms to answer, suspicion 4 x 500 ms = 2 s for clusters under 10
// brokers (at most 3 x that), gossip every 100 ms, a full sync every 5 s.
// A killed broker is declared dead in about 3 s (docs/cluster.md has the
// measured figures).
func DefaultTiming() Timing {
	return Timing{ProbeInterval: 500 * time.Millisecond, ProbeTimeout: 250 * time.Millisecond, SuspicionMult: 4, SuspicionMaxTimeoutMult: 3,
		GossipInterval: 100 * time.Millisecond, PushPullInterval: 5 * time.Second}
}

// Member is a live broker.
type Member struct {
	Name       string    // node id
	Addr       string    // gossip address host:port
	ClientAddr string    // client (gRPC) address
	Zone       string    // zone label
	Since      time.Time // when it started (its clock)
	// Incarnation is the member's current WAL incarnation, as it last
	// published it (SetIncarnation); "" when it published none.
	Incarnation string
}

// nodeMeta is what a member publishes in its gossip metadata.
type nodeMeta struct {
	Client string `json:"c,omitempty"`
	Zone   string `json:"z,omitempty"`
	Since  int64  `json:"s"`           // unix ms
	Inc    string `json:"i,omitempty"` // WAL incarnation
}

// Cluster is this broker's view of the cluster.
type Cluster struct {
	ml      *memberlist.Memberlist
	settle  time.Duration
	changes chan struct{} // capacity 1: "the view changed"
	stop    chan struct{}
	joined  sync.WaitGroup

	mu       sync.Mutex
	shutdown bool
	meta     nodeMeta // what this member publishes; guarded by mu
	delegate *delegate
	// keyring is memberlist's key ring (safe for concurrent use; SetKeys
	// holds mu across its changes); nil when gossip is not encrypted.
	keyring *memberlist.Keyring

	// viewMu guards nodes and view only, and is never held across a
	// memberlist call. memberlist calls the event methods (NotifyJoin,
	// NotifyUpdate, NotifyLeave) with its node lock held, the only time
	// its *Node may be read (it rewrites them in place), so they copy
	// what Members needs into nodes.
	viewMu sync.Mutex
	nodes  map[string]Member // the live (alive or suspect) members, by name
	view   []Member          // nodes, sorted; nil when a change came since
}

type delegate struct{ meta atomic.Pointer[[]byte] }

func (d *delegate) NodeMeta(limit int) []byte {
	m := *d.meta.Load()
	return m[:min(len(m), limit)]
}
func (*delegate) NotifyMsg([]byte)                           {}
func (*delegate) GetBroadcasts(overhead, limit int) [][]byte { return nil }
func (*delegate) LocalState(join bool) []byte                { return nil }
func (*delegate) MergeRemoteState(buf []byte, join bool)     {}
func (c *Cluster) NotifyJoin(n *memberlist.Node)             { c.changed(n, true) }
func (c *Cluster) NotifyLeave(n *memberlist.Node)            { c.changed(n, false) }
func (c *Cluster) NotifyUpdate(n *memberlist.Node)           { c.changed(n, true) }

// changed records n (live or gone); memberlist's node lock is held.
func (c *Cluster) changed(n *memberlist.Node, live bool) {
	m := member(n)
	c.viewMu.Lock()
	if live {
		c.nodes[m.Name] = m
	} else {
		delete(c.nodes, m.Name)
	}
	c.view = nil
	c.viewMu.Unlock()
	select {
	case c.changes <- struct{}{}:
	default:
	}
}

var _ memberlist.Delegate = (*delegate)(nil)
var _ memberlist.EventDelegate = (*Cluster)(nil)

// Join starts gossiping and joins the seeds (if any).
func Join(cfg Config) (*Cluster, error) {
	if cfg.Name == "" {
		return nil, errors.New("membership: Name is required")
	}
	nm := nodeMeta{Client: cfg.ClientAddr, Zone: cfg.Zone, Since: time.Now().UnixMilli()}
	meta, _ := json.Marshal(nm)
	if len(meta) > memberlist.MetaMaxSize {
		return nil, fmt.Errorf("membership: node metadata (client address %q, zone %q) is %d bytes, over memberlist's %d-byte limit: shorten them", cfg.ClientAddr, cfg.Zone, len(meta), memberlist.MetaMaxSize)
	}
	mc := memberlist.DefaultLANConfig()
	tm, def := cfg.Timing, DefaultTiming()
	mc.ProbeInterval = cmp(tm.ProbeInterval, def.ProbeInterval)
	mc.ProbeTimeout = cmp(tm.ProbeTimeout, def.ProbeTimeout)
	mc.SuspicionMult = cmp(tm.SuspicionMult, def.SuspicionMult)
	mc.SuspicionMaxTimeoutMult = cmp(tm.SuspicionMaxTimeoutMult, def.SuspicionMaxTimeoutMult)
	mc.GossipInterval = cmp(tm.GossipInterval, def.GossipInterval)
	mc.PushPullInterval = cmp(tm.PushPullInterval, def.PushPullInterval)
	// A broker restarted under the same name with another address (a
	// rescheduled pod) takes its name back once the old one is dead this
	// long; without it memberlist refuses it as a conflict.
	mc.DeadNodeReclaimTime = 10 * time.Second
	mc.Name = cfg.Name
	mc.BindAddr = cfg.BindAddr
	if mc.BindAddr == "" {
		mc.BindAddr = "127.0.0.1"
	}
	mc.BindPort = cfg.BindPort
	mc.AdvertiseAddr, mc.AdvertisePort = cfg.AdvertiseAddr, cfg.AdvertisePort
	if mc.AdvertisePort == 0 {
		mc.AdvertisePort = cfg.BindPort
	}
	if cfg.Logger == nil {
		cfg.Logger = io.Discard
	}
	mc.Logger = log.New(cfg.Logger, "memberlist: ", log.LstdFlags)
	if len(cfg.Keys) > 0 {
		if err := ValidateKeys(cfg.Keys); err != nil {
			return nil, err
		}
		kr, err := memberlist.NewKeyring(cfg.Keys[1:], cfg.Keys[0])
		if err != nil {
			return nil, fmt.Errorf("membership: gossip key ring: %w", err)
		}
		// Verify in and out (memberlist's defaults, set here so they do
		// not silently change): a clear-text message is refused.
		mc.Keyring, mc.GossipVerifyIncoming, mc.GossipVerifyOutgoing = kr, true, true
	}
	c := &Cluster{settle: cfg.Settle, changes: make(chan struct{}, 1), stop: make(chan struct{}), meta: nm, delegate: &delegate{}, nodes: map[string]Member{}}
	c.delegate.meta.Store(&meta)
	mc.Delegate = c.delegate
	mc.Events = c
	ml, err := memberlist.Create(mc)
	if err != nil {
		return nil, fmt.Errorf("membership: start gossip on %s:%d: %w", mc.BindAddr, cfg.BindPort, err)
	}
	c.ml = ml
	c.keyring = mc.Keyring
	if len(cfg.Seeds) == 0 {
		return c, nil
	}
	if err := c.join(cfg.Seeds); err != nil {
		if !cfg.RetryJoin {
			ml.Shutdown()
			return nil, fmt.Errorf("membership: join %v: %w", cfg.Seeds, err)
		}
		mc.Logger.Printf("[WARN] no seed of %v answered (%v); retrying every second", cfg.Seeds, err)
		c.joined.Add(1)
		go c.retryJoin(cfg.Seeds, mc.Logger)
	}
	return c, nil
}

// join contacts the seeds. Reaching only itself (a member may list itself
// among its seeds, as every pod of a StatefulSet does) is not a join.
func (c *Cluster) join(seeds []string) error {
	if _, err := c.ml.Join(seeds); err != nil {
		return err
	}
	if c.ml.NumMembers() < 2 {
		return errors.New("no seed but this member itself answered")
	}
	return nil
}

func cmp[T int | time.Duration](v, def T) T {
	if v > 0 {
		return v
	}
	return def
}

// retryJoin tries the seeds every second until one answers or the member
// stops.
func (c *Cluster) retryJoin(seeds []string, logger *log.Logger) {
	defer c.joined.Done()
	t := time.NewTicker(time.Second)
	defer t.Stop()
	for {
		select {
		case <-c.stop:
			return
		case <-t.C:
		}
		if err := c.join(seeds); err == nil {
			logger.Printf("[INFO] joined the cluster through %v", seeds)
			return
		}
	}
}

// SetIncarnation publishes this member's current WAL incarnation, so the
// others can tell a live owner's partitions (which it is handing off)
// from a dead one's (which they take over at once).
func (c *Cluster) SetIncarnation(inc string) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.shutdown {
		return nil
	}
	c.meta.Inc = inc
	meta, _ := json.Marshal(c.meta)
	if len(meta) > memberlist.MetaMaxSize {
		return fmt.Errorf("membership: node metadata with incarnation %q is %d bytes, over memberlist's %d-byte limit", inc, len(meta), memberlist.MetaMaxSize)
	}
	c.delegate.meta.Store(&meta)
	return c.ml.UpdateNode(time.Second)
}

// Addr is this member's gossip address, for others' Seeds.
func (c *Cluster) Addr() string {
	n := c.ml.LocalNode()
	return net.JoinHostPort(n.Addr.String(), strconv.Itoa(int(n.Port)))
}

// Name is this member's name.
func (c *Cluster) Name() string { return c.ml.LocalNode().Name }

// Self is this member, as it last published itself.
func (c *Cluster) Self() Member {
	name := c.Name()
	c.viewMu.Lock()
	m, ok := c.nodes[name]
	c.viewMu.Unlock()
	if !ok { // not possible once Join returned; kept safe
		m = Member{Name: name, Addr: c.Addr()}
	}
	return m
}

// Changes is signalled (coalesced) whenever the view changes.
func (c *Cluster) Changes() <-chan struct{} { return c.changes }

func member(n *memberlist.Node) Member {
	var md nodeMeta
	json.Unmarshal(n.Meta, &md) // a member with unreadable metadata has no client address
	return Member{Name: n.Name, Addr: net.JoinHostPort(n.Addr.String(), strconv.Itoa(int(n.Port))), ClientAddr: md.Client, Zone: md.Zone, Since: time.UnixMilli(md.Since), Incarnation: md.Inc}
}

// Members returns the live members, sorted by name. The caller must not
// modify the slice.
func (c *Cluster) Members() []Member {
	c.viewMu.Lock()
	defer c.viewMu.Unlock()
	if c.view == nil {
		// A suspect member still counts: it loses its keys when it is
		// declared dead (NotifyLeave), not on a missed probe (no thrash
		// on a slow one).
		out := make([]Member, 0, len(c.nodes))
		for _, m := range c.nodes {
			out = append(out, m)
		}
		sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
		c.view = out
	}
	return c.view
}

// Owner proposes the owner of key among the settled live members.
func (c *Cluster) Owner(key string) (Member, bool) {
	return Owner(key, Settled(c.Members(), time.Now(), c.settle))
}

// Settled returns the members that take part in ownership at now: those
// up for at least settle, or all of them when none is.
func Settled(ms []Member, now time.Time, settle time.Duration) []Member {
	var out []Member
	for _, m := range ms {
		if now.Sub(m.Since) >= settle {
			out = append(out, m)
		}
	}
	if len(out) == 0 {
		return ms
	}
	return out
}

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
	close(c.stop)
	c.joined.Wait()
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
	close(c.stop)
	c.joined.Wait()
	return c.ml.Shutdown()
}

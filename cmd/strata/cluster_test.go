package main

// Multi-process cluster tests (issue 13, "Proof"): three (or four) real
// broker processes gossiping on loopback, sharing one MinIO bucket, under
// a steady durable load from the Go client (which routes each partition's
// writes to its owner), each test ending with a full drain and the history
// checker: nothing acknowledged is lost and no offset holds two values.
//
//   - kill -9 one broker: its partitions are served again by the others
//     (the time from the kill to the first durable ack on each of them is
//     logged, and bounded generously: the measured distribution is in
//     docs/cluster.md), and a group consumer goes on from its committed
//     offsets;
//   - SIGSTOP the owner of partitions until the others take them over,
//     then SIGCONT;
//   - a fourth broker joins and takes a share of the partitions;
//   - every broker restarted in turn (SIGTERM, then the same node id and
//     disk).
//
// The helpers (broker processes, loads, drain, checker) are those of
// fault_test.go and multibroker_test.go.

import (
	"context"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/stratalog/strata/api/stratapb"
	"github.com/stratalog/strata/client"
	"github.com/stratalog/strata/internal/history"
)

const clusterPartitions = 8

// member is one broker of a test cluster.
type member struct {
	id, addr, gossip, dir string
	p                     *proc
}

type testCluster struct {
	bk    bucket
	nodes []*member
}

// startCluster starts n brokers; the first starts the gossip ring, the
// others join it.
func startCluster(t testing.TB, n int) *testCluster {
	t.Helper()
	c := &testCluster{bk: newBucket(t)}
	for i := range n {
		c.add(t, i)
	}
	c.waitFormed(t)
	cli(t, "", c.bk.env, "topic", "create", faultTopic, "--partitions", fmt.Sprint(clusterPartitions), "--broker", c.nodes[0].addr)
	return c
}

// add starts broker i (a new one when i == len(nodes)).
func (c *testCluster) add(t testing.TB, i int) *member {
	t.Helper()
	if i == len(c.nodes) {
		c.nodes = append(c.nodes, &member{id: fmt.Sprintf("b%d", i+1), addr: freeAddr(t), gossip: freeAddr(t), dir: t.TempDir()})
	}
	n := c.nodes[i]
	args := []string{"--node-id", n.id, "--gossip-listen", n.gossip, "--settle", "1s", "--seal-interval", "2s"}
	if i > 0 {
		args = append(args, "--join", c.nodes[0].gossip)
	} else if len(c.nodes) > 1 {
		args = append(args, "--join", c.nodes[1].gossip) // a restarted first broker joins the others
	}
	n.p = startBroker(t, n.addr, n.dir, c.bk.url(""), c.bk.env, args...)
	return n
}

// live are the brokers not stopped by the test.
func (c *testCluster) live(except ...*member) []*member {
	var out []*member
	for _, n := range c.nodes {
		if !slices.Contains(except, n) {
			out = append(out, n)
		}
	}
	return out
}

func addrs(ns []*member) string {
	var a []string
	for _, n := range ns {
		a = append(a, n.addr)
	}
	return strings.Join(a, ",")
}

// metadata asks the broker at addr about the named topics (nil when it
// does not answer).
func metadata(t testing.TB, addr string, topics ...string) *stratapb.MetadataResponse {
	t.Helper()
	c, err := client.Dial(addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	md, err := c.API().Metadata(ctx, &stratapb.MetadataRequest{Topics: topics})
	if err != nil {
		return nil
	}
	return md
}

// waitFormed waits until every broker sees all of them.
func (c *testCluster) waitFormed(t testing.TB, except ...*member) {
	t.Helper()
	live := c.live(except...)
	waitUntil(t, fmt.Sprintf("%d brokers to see each other", len(live)), func() bool {
		for _, n := range live {
			md := metadata(t, n.addr)
			if md == nil || len(md.Brokers) != len(live) {
				return false
			}
		}
		return true
	})
}

// owners is who owns each partition, as the broker at addr proposes.
func owners(t testing.TB, addr string) map[int32]string {
	t.Helper()
	md := metadata(t, addr, faultTopic)
	if md == nil {
		t.Fatalf("broker %s does not answer Metadata", addr)
	}
	out := map[int32]string{}
	for _, o := range md.Topics[0].Owners {
		out[o.Partition] = o.NodeId
	}
	return out
}

// probe sends one durable record to each partition through the cluster
// (the client routes it) and returns, per partition, how long after from
// its ack came.
func probe(t testing.TB, rec *history.Recorder, brokers string, parts []int32, from time.Time) map[int32]time.Duration {
	t.Helper()
	var (
		mu  sync.Mutex
		out = map[int32]time.Duration{}
		wg  sync.WaitGroup
	)
	for _, p := range parts {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c, err := client.Dial(brokers)
			if err != nil {
				t.Error(err)
				return
			}
			defer c.Close()
			prod := c.NewProducer(faultTopic, client.WithPartition(p), client.WithAcks(stratapb.Acks_ACKS_DURABLE),
				client.WithRetries(1000, 50*time.Millisecond), client.WithRequestTimeout(2*time.Second), client.WithBatchSize(1))
			defer prod.Close(context.Background())
			name := fmt.Sprintf("probe-%d-%d", p, from.UnixNano())
			v := name + "-0"
			rec.Send(name, faultTopic, v)
			ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
			defer cancel()
			res, err := prod.Send(ctx, client.Record{Value: []byte(v)})
			if err == nil {
				err = res.Wait(ctx)
			}
			if err != nil {
				rec.Unknown(name, faultTopic, v, err)
				t.Errorf("probe of partition %d: %v", p, err)
				return
			}
			rec.Ack(name, faultTopic, res.Partition, res.Offset, v)
			mu.Lock()
			out[p] = time.Since(from)
			mu.Unlock()
		}()
	}
	wg.Wait()
	return out
}

func partitionsOf(own map[int32]string, id string) []int32 {
	var ps []int32
	for p, o := range own {
		if o == id {
			ps = append(ps, p)
		}
	}
	slices.Sort(ps)
	return ps
}

// groupReader consumes the test topic as a member of group "readers",
// recording what it reads, until stopped.
func groupReader(t testing.TB, brokers string, rec *history.Recorder) (stop func() int) {
	t.Helper()
	c, err := client.Dial(brokers)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cons, err := c.NewConsumer(ctx, faultTopic, client.WithGroup("readers", client.AtLeastOnce), client.WithSessionTimeout(6*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	var n int
	done := make(chan struct{})
	go func() {
		defer close(done)
		for ctx.Err() == nil {
			recs, err := cons.Poll(ctx)
			if err != nil {
				continue // the coordinator moved, or a broker died: Poll again
			}
			byPart := map[int32][]history.Rec{}
			for _, r := range recs {
				byPart[r.Partition] = append(byPart[r.Partition], history.Rec{Offset: r.Offset, Value: string(r.Value)})
			}
			for p, rs := range byPart {
				rec.Read("readers", faultTopic, p, rs)
			}
			n += len(recs)
		}
	}()
	return func() int {
		cancel()
		<-done
		cons.Close(context.Background())
		c.Close()
		return n
	}
}

// Proof 1: kill -9 one of three brokers under a durable load and a group
// consumer; the others serve its partitions again.
func TestClusterKill9Failover(t *testing.T) {
	c := startCluster(t, 3)
	rec, path := newHistory(t)
	all := addrs(c.nodes)
	l := startLoad(t, all, rec, stratapb.Acks_ACKS_DURABLE, 3, 100000)
	readers := groupReader(t, all, rec)
	waitAcks(t, l, 3000)
	own := owners(t, c.nodes[0].addr)
	victim := c.nodes[1]
	lost := partitionsOf(own, victim.id)
	if len(lost) == 0 {
		t.Fatalf("broker %s owns no partition (%v): nothing to fail over", victim.id, own)
	}
	killed := time.Now()
	victim.p.kill9(t)
	took := probe(t, rec, addrs(c.live(victim)), lost, killed)
	var worst time.Duration
	for _, d := range took {
		worst = max(worst, d)
	}
	t.Logf("failover: partitions %v of the killed broker served again (first durable ack) after %v (each: %v)", lost, worst.Round(time.Millisecond), took)
	if worst > time.Minute {
		t.Fatalf("partitions of the killed broker took %v to be served again", worst)
	}
	n := l.acked.Load()
	waitAcks(t, l, n+3000) // the load goes on on the survivors
	l.stop()
	if got := readers(); got == 0 {
		t.Fatal("the group consumer read nothing")
	}
	if after := owners(t, c.nodes[0].addr); len(partitionsOf(after, victim.id)) != 0 {
		t.Fatalf("partitions still proposed to the dead broker: %v", after)
	}
	drain(t, c.nodes[0].addr, rec, clusterPartitions)
	check(t, rec, path)
}

// Proof 2: SIGSTOP the owner of partitions until the others take them
// over, then SIGCONT it. The history checker sees any ack of the stopped
// broker at an offset the new owner also assigned.
func TestClusterSIGSTOPOwner(t *testing.T) {
	c := startCluster(t, 3)
	rec, path := newHistory(t)
	all := addrs(c.nodes)
	l := startLoad(t, all, rec, stratapb.Acks_ACKS_DURABLE, 3, 100000)
	waitAcks(t, l, 2000)
	own := owners(t, c.nodes[0].addr)
	victim := c.nodes[2]
	moved := partitionsOf(own, victim.id)
	victim.p.cmd.Process.Signal(syscall.SIGSTOP)
	stopped := time.Now()
	// The others declare it dead and take its partitions (the probe's
	// ack proves the new owner claimed each).
	took := probe(t, rec, addrs(c.live(victim)), moved, stopped)
	t.Logf("partitions %v of the stopped broker taken over after %v", moved, took)
	n := l.acked.Load()
	waitAcks(t, l, n+1000)
	victim.p.cmd.Process.Signal(syscall.SIGCONT)
	c.waitFormed(t) // it rejoins the ring
	n = l.acked.Load()
	waitAcks(t, l, n+2000)
	l.stop()
	drain(t, c.nodes[0].addr, rec, clusterPartitions)
	check(t, rec, path)
}

// Proof 3: a fourth broker joins under load and takes about a quarter of
// the partitions.
func TestClusterScaleOut(t *testing.T) {
	c := startCluster(t, 3)
	rec, path := newHistory(t)
	l := startLoad(t, addrs(c.nodes), rec, stratapb.Acks_ACKS_DURABLE, 3, 100000)
	waitAcks(t, l, 2000)
	fourth := c.add(t, 3)
	c.waitFormed(t)
	var got []int32
	waitUntil(t, "the fourth broker to be proposed partitions", func() bool {
		got = partitionsOf(owners(t, c.nodes[0].addr), fourth.id)
		return len(got) > 0
	})
	t.Logf("the fourth broker owns %v of %d partitions", got, clusterPartitions)
	if len(got) > clusterPartitions/2 {
		t.Fatalf("the fourth broker took %d of %d partitions, want about a quarter", len(got), clusterPartitions)
	}
	// It takes their writes: a probe through it alone is acked.
	probe(t, rec, fourth.addr, got, time.Now())
	n := l.acked.Load()
	waitAcks(t, l, n+2000)
	l.stop()
	drain(t, c.nodes[0].addr, rec, clusterPartitions)
	check(t, rec, path)
}

var handOffLine = regexp.MustCompile(`left the cluster and handed partitions off" partitions=\d+ took=\S+`)

// Proof 4: every broker restarted in turn under load (SIGTERM, then the
// same node id and disk): nothing lost.
func TestClusterRollingRestart(t *testing.T) {
	c := startCluster(t, 3)
	rec, path := newHistory(t)
	l := startLoad(t, addrs(c.nodes), rec, stratapb.Acks_ACKS_DURABLE, 3, 100000)
	waitAcks(t, l, 2000)
	for i, n := range c.nodes {
		n.p.term(t)
		if code := n.p.waitExit(t, 5*time.Second); code != 0 {
			t.Errorf("broker %s exited %d after SIGTERM, want 0:\n%s", n.id, code, n.p.logs.String())
		}
		if m := handOffLine.FindString(n.p.logs.String()); m != "" {
			t.Logf("%s: %s", n.id, m) // the graceful leave's hand-off, as measured by the broker
		} else {
			t.Errorf("broker %s did not log its hand-off:\n%s", n.id, n.p.logs.String())
		}
		c.waitFormed(t, n)
		acked := l.acked.Load()
		waitAcks(t, l, acked+500) // the others take its partitions
		c.add(t, i)
		c.waitFormed(t)
		acked = l.acked.Load()
		waitAcks(t, l, acked+500)
	}
	l.stop()
	drain(t, c.nodes[0].addr, rec, clusterPartitions)
	check(t, rec, path)
}

// gossipProxy forwards a broker's gossip (memberlist's UDP packets and TCP
// streams) from the address it advertises to the port it listens on, and
// drops all of it while cut: the other brokers can no longer reach it,
// and what it sends them is answered to the proxy, so it cannot hear them
// either. The bucket stays reachable for everyone.
type gossipProxy struct {
	addr, target string
	udp          *net.UDPConn
	tcp          net.Listener
	cut          atomic.Bool
	mu           sync.Mutex
	conns        []net.Conn
	peers        map[string]*net.UDPConn
	wg           sync.WaitGroup
}

func startGossipProxy(t testing.TB, target string) *gossipProxy {
	t.Helper()
	var (
		tl net.Listener
		uc *net.UDPConn
	)
	for range 20 { // a port free for both TCP and UDP
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		if u, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1), Port: l.Addr().(*net.TCPAddr).Port}); err == nil {
			tl, uc = l, u
			break
		}
		l.Close()
	}
	if tl == nil {
		t.Fatal("no port free for both TCP and UDP")
	}
	p := &gossipProxy{addr: tl.Addr().String(), target: target, udp: uc, tcp: tl, peers: map[string]*net.UDPConn{}}
	p.wg.Add(2)
	go p.serveUDP()
	go p.serveTCP()
	t.Cleanup(p.close)
	return p
}

func (p *gossipProxy) serveUDP() {
	defer p.wg.Done()
	buf := make([]byte, 64<<10)
	for {
		n, src, err := p.udp.ReadFromUDP(buf)
		if err != nil {
			return
		}
		if p.cut.Load() {
			continue
		}
		p.mu.Lock()
		up, ok := p.peers[src.String()]
		if !ok {
			raddr, _ := net.ResolveUDPAddr("udp", p.target)
			if up, err = net.DialUDP("udp", nil, raddr); err != nil {
				p.mu.Unlock()
				continue
			}
			p.peers[src.String()] = up
			p.wg.Add(1)
			go func() { // replies sent to the proxy's socket go back to src
				defer p.wg.Done()
				rb := make([]byte, 64<<10)
				for {
					n, err := up.Read(rb)
					if err != nil {
						return
					}
					if !p.cut.Load() {
						p.udp.WriteToUDP(rb[:n], src)
					}
				}
			}()
		}
		p.mu.Unlock()
		up.Write(buf[:n])
	}
}

func (p *gossipProxy) serveTCP() {
	defer p.wg.Done()
	for {
		c, err := p.tcp.Accept()
		if err != nil {
			return
		}
		if p.cut.Load() {
			c.Close()
			continue
		}
		up, err := net.Dial("tcp", p.target)
		if err != nil {
			c.Close()
			continue
		}
		p.mu.Lock()
		p.conns = append(p.conns, c, up)
		p.mu.Unlock()
		p.wg.Add(2)
		go func() { defer p.wg.Done(); io.Copy(up, c); up.Close() }()
		go func() { defer p.wg.Done(); io.Copy(c, up); c.Close() }()
	}
}

// setCut cuts the broker's gossip off (true) or restores it.
func (p *gossipProxy) setCut(cut bool) {
	p.cut.Store(cut)
	if cut {
		p.mu.Lock()
		for _, c := range p.conns {
			c.Close()
		}
		p.conns = nil
		p.mu.Unlock()
	}
}

func (p *gossipProxy) close() {
	p.udp.Close()
	p.tcp.Close()
	p.setCut(true)
	p.mu.Lock()
	for _, u := range p.peers {
		u.Close()
	}
	p.mu.Unlock()
	p.wg.Wait()
}

// Proof 5: one broker is cut off from the others' gossip but not from the
// bucket: each side believes it owns the other's partitions for a while,
// and the bucket decides: the history checker finds no offset with two
// values and no acknowledged record lost.
func TestClusterGossipPartition(t *testing.T) {
	c := &testCluster{bk: newBucket(t)}
	c.add(t, 0)
	c.add(t, 1)
	// The third advertises its gossip through a proxy the test can cut.
	third := &member{id: "b3", addr: freeAddr(t), gossip: freeAddr(t), dir: t.TempDir()}
	c.nodes = append(c.nodes, third)
	proxy := startGossipProxy(t, third.gossip)
	third.p = startBroker(t, third.addr, third.dir, c.bk.url(""), c.bk.env, "--node-id", third.id, "--gossip-listen", third.gossip,
		"--gossip-advertise", proxy.addr, "--join", c.nodes[0].gossip, "--settle", "1s", "--seal-interval", "2s")
	c.waitFormed(t)
	cli(t, "", c.bk.env, "topic", "create", faultTopic, "--partitions", fmt.Sprint(clusterPartitions), "--broker", c.nodes[0].addr)
	rec, path := newHistory(t)
	// Two loads: one through the majority, one through the cut-off broker
	// alone, so both sides take writes for the same partitions.
	l := startLoad(t, addrs(c.nodes[:2]), rec, stratapb.Acks_ACKS_DURABLE, 2, 100000)
	lonely := startNamedLoad(t, "lonely", third.addr, rec, stratapb.Acks_ACKS_DURABLE, 1, 100000)
	waitAcks(t, l, 2000)
	proxy.setCut(true)
	waitUntil(t, "the majority to drop the cut-off broker", func() bool {
		md := metadata(t, c.nodes[0].addr)
		return md != nil && len(md.Brokers) == 2
	})
	// The cut is one-way at the packet level (the cut-off broker's own
	// probes still reach the others and are answered), so its view may
	// keep or flap the others while they drop it: both sides propose
	// owners of their own for a while, and both loads go on.
	n, m := l.acked.Load(), lonely.acked.Load()
	waitAcks(t, l, n+2000)
	t.Logf("while cut: the cut-off broker sees %d brokers, and acked %d records", len(metadata(t, third.addr).GetBrokers()), lonely.acked.Load()-m)
	proxy.setCut(false)
	c.waitFormed(t)
	n = l.acked.Load()
	waitAcks(t, l, n+1000)
	lonely.stop()
	l.stop()
	t.Logf("acks through the cut-off broker: %d", lonely.acked.Load())
	drain(t, c.nodes[0].addr, rec, clusterPartitions)
	check(t, rec, path)
}

// freePorts returns a base port with n consecutive ports free on loopback.
func freePorts(t testing.TB, n int) int {
	t.Helper()
	for range 50 {
		base := 20000 + int(time.Now().UnixNano()%12000) // below the ephemeral range
		ok := true
		for i := range n {
			l, err := net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", base+i))
			if err != nil {
				ok = false
				break
			}
			l.Close()
		}
		if ok {
			return base
		}
	}
	t.Fatalf("no %d consecutive free ports", n)
	return 0
}

// The three-broker topology of scripts/cluster.sh, as the README tells a
// newcomer to run it: up, a topic, records in through one broker and out
// through the list, status, down (every process it started gone).
func TestClusterScript(t *testing.T) {
	state := t.TempDir()
	env := []string{"STRATA_CLUSTER_DIR=" + state,
		fmt.Sprintf("STRATA_CLUSTER_PORT=%d", freePorts(t, 3)),
		fmt.Sprintf("STRATA_CLUSTER_GOSSIP_PORT=%d", freePorts(t, 3))}
	script := func(args ...string) string {
		t.Helper()
		cmd := exec.Command("bash", append([]string{"../../scripts/cluster.sh"}, args...)...)
		cmd.Env = append(os.Environ(), env...)
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("cluster.sh %v: %v\n%s", args, err, out)
		}
		return string(out)
	}
	// Stop what up started even when the test fails half-way (with the
	// test's state directory: the default one is not ours).
	t.Cleanup(func() {
		cmd := exec.Command("bash", "../../scripts/cluster.sh", "down")
		cmd.Env = append(os.Environ(), env...)
		cmd.Run()
	})
	up := script("up")
	m := regexp.MustCompile(`brokers: (\S+)`).FindStringSubmatch(up)
	if m == nil {
		t.Fatalf("cluster.sh up printed no broker list:\n%s", up)
	}
	brokers := m[1]
	first := strings.Split(brokers, ",")[0]
	waitUntil(t, "the script's three brokers to see each other", func() bool {
		md := metadata(t, first)
		return md != nil && len(md.Brokers) == 3
	})
	cli(t, "", nil, "topic", "create", "scripted", "--partitions", "6", "--broker", first)
	var in strings.Builder
	for i := range 300 {
		fmt.Fprintf(&in, "k%d=v%d\n", i, i)
	}
	if got := strings.TrimSpace(cli(t, in.String(), nil, "produce", "scripted", "--key-separator", "=", "--broker", first)); got != "300" {
		t.Fatalf("produce through one broker acknowledged %q, want 300", got)
	}
	out := cli(t, "", nil, "consume", "scripted", "--from", "earliest", "--max", "300", "--broker", brokers)
	if n := strings.Count(out, "\n"); n != 300 {
		t.Fatalf("consumed %d records through the broker list, want 300", n)
	}
	if st := script("status"); strings.Count(st, " up ") < 3 {
		t.Fatalf("status after up:\n%s", st)
	}
	files, _ := filepath.Glob(filepath.Join(state, "b*.pid"))
	var pids []string
	for _, f := range files {
		data, _ := os.ReadFile(f)
		pids = append(pids, strings.TrimSpace(string(data)))
	}
	if len(pids) != 3 {
		t.Fatalf("pid files %v, want 3", files)
	}
	script("down")
	for _, pid := range pids {
		if _, err := os.Stat("/proc/" + pid); err == nil {
			t.Errorf("broker pid %s still runs after down", pid)
		}
	}
}

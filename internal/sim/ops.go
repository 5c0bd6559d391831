package sim

import (
	"context"
	"fmt"
	"io"
	"math/rand/v2"
	"strconv"
	"strings"
	"sync"
	"testing/synctest"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/stratalog/strata/api/stratapb"
	"github.com/stratalog/strata/core"
	"github.com/stratalog/strata/internal/history"
)

// This file is the schedule: the step kinds, the plan (a pure function of
// the seed), and the runner that carries a plan out in a World.

// Kind is what a step does.
type Kind int

// The step kinds.
const (
	KProduce     Kind = iota // a non-idempotent produce (never retried)
	KProduceIdem             // an idempotent producer's next batch, or its retry
	KFetch                   // a read from an offset
	KDescribe                // DescribeTopic
	KListOffsets             // ListOffsets latest
	KCollect                 // WAL garbage collection on one broker, now
	KFaults                  // a fault burst on one broker's store begins
	KHeal                    // ... and ends
	KPause                   // SIGSTOP
	KResume                  // SIGCONT
	KKill                    // kill -9, with or without the disk
	KRestart                 // a new process in a dead slot
	KDelete                  // DeleteTopic
	KCreate                  // CreateTopic of a deleted topic's name
	KAdvance                 // only time passes: seals, GC and sweeps run
	KHandOff                 // a broker hands every open partition off (seal, mark unowned), as on a graceful leave or a rebalance
	KShareCreate             // CreateShareGroup of the share group on topic a (planned once, early)
	KReceive                 // Receive from the share group
	KSettle                  // ack, nack, release or reject a random subset of the deliveries the client holds
	numKinds
)

var kindNames = [numKinds]string{"produce", "produce-idem", "fetch", "describe", "list-offsets", "gc", "faults", "heal", "pause", "resume", "kill", "restart", "delete-topic", "create-topic", "advance", "hand-off", "share-create", "receive", "settle"}

func (k Kind) String() string {
	if k < 0 || k >= numKinds {
		return fmt.Sprintf("Kind(%d)", int(k))
	}
	return kindNames[k]
}

// ParseKind parses a kind's name.
func ParseKind(s string) (Kind, error) {
	for k, n := range kindNames {
		if n == s {
			return Kind(k), nil
		}
	}
	return 0, fmt.Errorf("sim: unknown step kind %q (kinds: %s)", s, strings.Join(kindNames[:], ", "))
}

// topicSpec is one of the simulated topics. Topic a is never deleted, so
// most of what the checker checks lives in one era; b is deleted and
// re-created.
type topicSpec struct {
	name      string
	parts     int32
	deletable bool
}

var topicSpecs = []topicSpec{{"a", 2, false}, {"b", 1, true}}

// deletable is the index of the topic that is deleted and re-created.
const deletable = 1

// idemProducers is how many idempotent producers there are; each has one
// batch in flight per partition at most.
const idemProducers = 2

// Options configure one run.
type Options struct {
	Seed    uint64
	Steps   int           // default 250
	Brokers int           // default 3
	Disable map[Kind]bool // kinds never planned (kill also disables restart; gc also stops the brokers' own WAL collector)
	// Sweeps plans one advance past the partitions' sweep interval and
	// grace (70 minutes of fake time), so sweeps run.
	Sweeps bool
	Logs   io.Writer // broker logs; nil discards them
}

// Flags are the test flags that replay a run with these options.
func (o Options) Flags() string {
	f := fmt.Sprintf("-sim.seed=%d", o.Seed)
	if o.Steps > 0 {
		f += fmt.Sprintf(" -sim.steps=%d", o.Steps)
	}
	if o.Brokers > 0 {
		f += fmt.Sprintf(" -sim.brokers=%d", o.Brokers)
	}
	var off []string
	for k := range numKinds {
		if o.Disable[k] && !(k == KRestart && o.Disable[KKill]) {
			off = append(off, k.String())
		}
	}
	if len(off) > 0 {
		f += " -sim.disable=" + strings.Join(off, ",")
	}
	if o.Sweeps {
		f += " -sim.sweeps=1"
	}
	return f
}

func (o Options) withDefaults() Options {
	if o.Steps <= 0 {
		o.Steps = 250
	}
	if o.Brokers <= 0 {
		o.Brokers = 3
	}
	return o
}

// Step is one step of a plan. Which fields matter depends on Kind.
type Step struct {
	Kind     Kind
	Slot     int
	Topic    int
	Part     int32
	N        int // records
	Local    bool
	Producer int
	Frac     float64 // fetch: the offset as a fraction of the highest offset seen
	Faults   Faults
	KeepDisk bool
	TornSeed uint64 // kill with the disk: nonzero keeps a torn tail of unsynced writes
	Wait     time.Duration
	// Delay: a produce to topic a whose records carry a delivery delay
	// header (core.HeaderDelay) of this much.
	Delay time.Duration
	// Vis and Poll: a receive's lease length and long-poll wait. Part is
	// -1 for a receive of every partition the broker owns.
	Vis, Poll time.Duration
	Settle    core.SettleKind // a settle's kind
}

func (s Step) String() string {
	b, tp := fmt.Sprintf("b%d", s.Slot), fmt.Sprintf("%s/%d", topicSpecs[s.Topic].name, s.Part)
	acks := "durable"
	if s.Local {
		acks = "local"
	}
	var out string
	switch s.Kind {
	case KProduce:
		out = fmt.Sprintf("produce %s %s x%d %s", b, tp, s.N, acks)
		if s.Delay > 0 {
			out += fmt.Sprintf(" delay %v", s.Delay)
		}
	case KProduceIdem:
		out = fmt.Sprintf("produce-idem p%d %s %s x%d %s", s.Producer, b, tp, s.N, acks)
	case KFetch:
		out = fmt.Sprintf("fetch %s %s from %.0f%%", b, tp, 100*s.Frac)
	case KDescribe, KDelete, KCreate:
		out = fmt.Sprintf("%v %s %s", s.Kind, b, topicSpecs[s.Topic].name)
	case KListOffsets:
		out = fmt.Sprintf("list-offsets %s %s", b, tp)
	case KFaults:
		out = fmt.Sprintf("faults %s %v", b, s.Faults)
	case KKill:
		disk := "lose-disk"
		if s.KeepDisk {
			disk = "keep-disk"
			if s.TornSeed != 0 {
				disk += " torn"
			}
		}
		out = fmt.Sprintf("kill %s %s", b, disk)
	case KAdvance:
		out = "advance"
	case KShareCreate:
		out = fmt.Sprintf("share-create %s %s/%s", b, topicSpecs[shareTopic].name, shareGroup)
	case KReceive:
		out = fmt.Sprintf("receive %s %s x%d vis %v poll %v", b, shareParts(s.Part), 4*s.N, s.Vis, s.Poll)
	case KSettle:
		out = fmt.Sprintf("settle %s %s of %s %.0f%%", b, settleName(s.Settle), shareParts(s.Part), 100*s.Frac)
	default:
		out = fmt.Sprintf("%v %s", s.Kind, b)
	}
	return fmt.Sprintf("%s, then %v", out, s.Wait)
}

// NewPlan returns the steps of a run: a pure function of o.Seed and the
// other options. The planner keeps its own model of which slots are up,
// paused and faulty and which topics exist, and only plans steps that
// make sense in it (a resume of a paused broker, a create of a deleted
// topic); since only steps change those states, the model holds at run
// time too, except for topics, whose delete or create may fail.
func NewPlan(o Options) []Step {
	o = o.withDefaults()
	rng := rand.New(rand.NewPCG(o.Seed, 0x73696d))
	n := o.Brokers
	alive, paused, faulty := make([]bool, n), make([]bool, n), make([]bool, n)
	for i := range alive {
		alive[i] = true
	}
	exists := make([]bool, len(topicSpecs))
	for i := range exists {
		exists[i] = true
	}
	type due struct {
		at   int
		step Step
	}
	var dues []due
	sweepAt := -1
	if o.Sweeps {
		sweepAt = rng.IntN(o.Steps)
	}
	weights := [numKinds]int{
		KProduce: 30, KProduceIdem: 20, KFetch: 12, KDescribe: 4, KListOffsets: 4, KCollect: 5,
		KFaults: 4, KPause: 3, KKill: 3, KRestart: 1, KDelete: 1, KAdvance: 3, KHandOff: 3,
		KReceive: 12, KSettle: 16,
	}
	// The share group is created once, early: before most produces.
	shareAt := rng.IntN(6)
	if o.Disable[KShareCreate] {
		shareAt = -1
		weights[KReceive], weights[KSettle] = 0, 0
	}
	total := 0
	for k := range weights {
		if o.Disable[Kind(k)] {
			weights[k] = 0
		}
		total += weights[k]
	}
	count := func(f func(i int) bool) (c int) {
		for i := range n {
			if f(i) {
				c++
			}
		}
		return c
	}
	pickSlot := func(f func(i int) bool) (int, bool) {
		var ok []int
		for i := range n {
			if f(i) {
				ok = append(ok, i)
			}
		}
		if len(ok) == 0 {
			return 0, false
		}
		return ok[rng.IntN(len(ok))], true
	}
	isAlive := func(i int) bool { return alive[i] }
	running := func(i int) bool { return alive[i] && !paused[i] }
	wait := func() time.Duration {
		switch x := rng.IntN(100); {
		case x < 70:
			return time.Duration(rng.IntN(100)) * time.Millisecond
		case x < 95:
			return time.Duration(100+rng.IntN(900)) * time.Millisecond
		}
		return time.Duration(1000+rng.IntN(2000)) * time.Millisecond
	}
	var plan []Step
	for len(plan) < o.Steps && total > 0 {
		i := len(plan)
		// Steps that were scheduled for now go first.
		if j := indexDue(len(dues), func(j int) bool { return dues[j].at <= i }); j >= 0 {
			st := dues[j].step
			dues = append(dues[:j], dues[j+1:]...)
			ok := true
			switch st.Kind {
			case KResume:
				ok = alive[st.Slot] && paused[st.Slot]
				paused[st.Slot] = false
			case KHeal:
				ok = alive[st.Slot] && faulty[st.Slot]
				faulty[st.Slot] = false
			case KRestart:
				ok = !alive[st.Slot]
				alive[st.Slot] = true
			case KCreate:
				slot, found := pickSlot(running)
				ok = !exists[st.Topic] && found
				st.Slot = slot
				if ok {
					exists[st.Topic] = true
				}
			}
			if ok {
				st.Wait = wait()
				plan = append(plan, st)
			}
			continue
		}
		if i == sweepAt {
			plan = append(plan, Step{Kind: KAdvance, Wait: 70 * time.Minute})
			continue
		}
		if shareAt >= 0 && i >= shareAt {
			if slot, ok := pickSlot(running); ok {
				plan = append(plan, Step{Kind: KShareCreate, Slot: slot, Topic: shareTopic, Wait: wait()})
				shareAt = -1
				continue
			}
		}
		x := rng.IntN(total)
		k := Kind(0)
		for ; x >= weights[k]; k++ {
			x -= weights[k]
		}
		st := Step{Kind: k, Topic: 0, N: 1 + rng.IntN(4), Local: rng.IntN(10) < 3, Producer: rng.IntN(idemProducers)}
		if rng.IntN(3) == 0 {
			st.Topic = deletable // a third of the work goes to the topic that is re-created
		}
		st.Part = int32(rng.IntN(int(topicSpecs[st.Topic].parts)))
		slot, ok := pickSlot(isAlive)
		st.Slot = slot
		switch k {
		case KProduce, KProduceIdem:
			// Writes mostly go to the partition's home broker, as a
			// client routed by ownership would send them; the others
			// move ownership on purpose.
			if home := (2*st.Topic + int(st.Part)) % n; alive[home] && rng.IntN(10) < 8 {
				st.Slot = home
			}
			if k == KProduce && st.Topic == shareTopic && rng.IntN(10) == 0 {
				st.Delay = time.Duration(500+rng.IntN(3500)) * time.Millisecond
			}
		case KReceive, KSettle:
			// Mostly to the home broker of one partition, as a routed
			// client would send them; else anywhere, for every partition
			// (a receive) or any receipts (a settle).
			st.Topic, st.Part = shareTopic, -1
			if p := int32(rng.IntN(int(topicSpecs[shareTopic].parts))); alive[int(p)%n] && rng.IntN(10) < 7 {
				st.Part, st.Slot = p, int(p)%n
			}
			st.Vis = time.Duration(2000+rng.IntN(4000)) * time.Millisecond
			if rng.IntN(2) == 0 {
				st.Poll = time.Duration(rng.IntN(500)) * time.Millisecond
			}
			st.Frac = 0.3 + 0.7*rng.Float64()
			switch x := rng.IntN(90); {
			case x < 50:
				st.Settle = core.SettleAck
			case x < 70:
				st.Settle = core.SettleNack
			case x < 85:
				st.Settle = core.SettleRelease
			default:
				st.Settle = core.SettleReject
			}
		case KFetch:
			st.Frac = rng.Float64()
			if rng.IntN(5) == 0 {
				st.Frac = 1
			}
		case KFaults:
			slot, ok = pickSlot(func(i int) bool { return alive[i] && !faulty[i] })
			st.Slot = slot
			switch rng.IntN(4) {
			case 0:
				st.Faults = Faults{Err503: 0.3 + 0.7*rng.Float64()}
			case 1:
				st.Faults = Faults{Lost: 0.2 + 0.3*rng.Float64()}
			case 2:
				st.Faults = Faults{Hang: 0.1 + 0.3*rng.Float64()}
			default:
				st.Faults = Faults{Err503: 0.1, Lost: 0.1, Hang: 0.1}
			}
			if ok {
				faulty[slot] = true
				dues = append(dues, due{i + 1 + rng.IntN(20), Step{Kind: KHeal, Slot: slot}})
			}
		case KPause:
			slot, ok = pickSlot(running)
			st.Slot = slot
			if ok {
				paused[slot] = true
				dues = append(dues, due{i + 1 + rng.IntN(15), Step{Kind: KResume, Slot: slot}})
			}
		case KKill:
			st.KeepDisk = rng.IntN(10) < 6
			if st.KeepDisk && rng.IntN(10) < 3 {
				st.TornSeed = rng.Uint64() | 1
			}
			if ok {
				alive[slot], paused[slot], faulty[slot] = false, false, false
				// A slot comes back most of the time, and always when no
				// other one is up.
				if rng.IntN(10) < 8 || count(isAlive) == 0 {
					dues = append(dues, due{i + 2 + rng.IntN(20), Step{Kind: KRestart, Slot: slot}})
				}
			}
		case KRestart:
			slot, ok = pickSlot(func(i int) bool { return !alive[i] })
			st.Slot = slot
			if ok {
				alive[slot] = true
			}
		case KDelete:
			slot, ok = pickSlot(running)
			st.Slot = slot
			st.Topic = deletable
			ok = ok && exists[st.Topic]
			if ok {
				exists[st.Topic] = false
				dues = append(dues, due{i + 1 + rng.IntN(8), Step{Kind: KCreate, Topic: st.Topic}})
			}
		case KAdvance:
			st.Wait = time.Duration(2000+rng.IntN(13000)) * time.Millisecond
		}
		if !ok {
			continue
		}
		if st.Wait == 0 {
			st.Wait = wait()
		}
		plan = append(plan, st)
	}
	return plan
}

func indexDue(n int, f func(int) bool) int {
	for j := range n {
		if f(j) {
			return j
		}
	}
	return -1
}

// topicState is what the runner knows of one topic name. era counts the
// topic's lives: odd eras are lives (era 2k-1 is the k-th topic of that
// name), even eras the gaps after a delete (the world counts them as the
// config writes apply; the runner copies the count after each delete or
// create). The checker treats each era as its own topic.
type topicState struct {
	spec   topicSpec
	era    int
	busy   bool    // a delete or create of it is in flight
	maxOff []int64 // per partition: the highest high watermark seen (for fetch offsets)
}

// eraSnap is a topic's era when an operation started.
type eraSnap struct{ era int }

// outcome of one produce attempt.
type outcome int

const (
	outUnknown outcome = iota
	outAck
	outFail
)

// attempt is one produce request.
type attempt struct {
	step    int
	proc    string
	topic   int
	part    int32
	values  []string
	local   bool
	delay   time.Duration // its records carry a delivery delay (core.HeaderDelay)
	retry   bool          // an earlier attempt of these values had an unknown outcome
	eras    [2]int        // the eras the client may have written to (see runner.eras)
	sent    int64         // logical time the broker got it
	sentAt  time.Time     // ... and its fake time
	done    int64         // logical time the answer came
	res     outcome
	offsets []int64
	err     string
}

// readRec is one read's records.
type readRec struct {
	proc       string
	topic      int
	eras       [2]int // the eras the client may have read (see runner.eras)
	part       int32
	recs       []history.Rec
	sent, done int64 // logical times; 0 for the drain's reads
}

// seqState is an idempotent producer's state in one partition.
type seqState struct {
	id      int64 // 0: InitProducer first
	era     int
	next    int32
	pending *pendingBatch
	busy    bool
}

type pendingBatch struct {
	seq    int32
	values []string
	retry  bool
}

type tpKey struct {
	producer, topic int
	part            int32
}

// runner carries out a plan.
type runner struct {
	o     Options
	w     *World
	plan  []Step
	start time.Time
	ops   sync.WaitGroup // client operations in flight

	mu       sync.Mutex // guards the fields below
	topics   []*topicState
	seqs     map[tpKey]*seqState
	notes    [][]string // per step: what happened
	stepAt   []time.Duration
	attempts []*attempt
	reads    []readRec
	hwms     []history.Event
	drainErr []string
	liveErr  []string
	cutoff   int64 // logical time the final phase's own writes began (see excuse)
	share    shareRun
}

func (r *runner) note(i int, format string, args ...any) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.notes[i] = append(r.notes[i], fmt.Sprintf(format, args...))
}

func (r *runner) snapshot(t int) eraSnap {
	r.mu.Lock()
	defer r.mu.Unlock()
	return eraSnap{r.topics[t].era}
}

// eras is the range of eras an operation that started at s may have seen.
func (r *runner) eras(t int, s eraSnap) [2]int {
	r.mu.Lock()
	defer r.mu.Unlock()
	to := r.topics[t].era
	if r.topics[t].busy {
		to++
	}
	return [2]int{s.era, to}
}

// Run carries out the plan of o in a new world and checks the history.
// It must run inside a synctest bubble (synctest.Test): the whole
// simulation runs on the bubble's fake clock.
func Run(o Options) *Result {
	o = o.withDefaults()
	r := &runner{o: o, w: NewWorld(o.Seed, o.Brokers, o.Logs), plan: NewPlan(o), start: time.Now(), seqs: map[tpKey]*seqState{}}
	r.w.noGC = o.Disable[KCollect]
	r.share.rng = rand.New(rand.NewPCG(o.Seed, 0x7368617265))
	r.notes = make([][]string, len(r.plan)+1)
	r.stepAt = make([]time.Duration, len(r.plan))
	for _, ts := range topicSpecs {
		r.topics = append(r.topics, &topicState{spec: ts, maxOff: make([]int64, ts.parts)})
	}
	res := &Result{Seed: o.Seed, Plan: r.plan, flags: o.Flags()}
	if err := r.setup(); err != nil {
		res.Drain = append(res.Drain, "setup: "+err.Error())
		return res
	}
	for i, st := range r.plan {
		r.stepAt[i] = time.Since(r.start)
		r.exec(i, st)
		time.Sleep(st.Wait)
		synctest.Wait()
	}
	r.finish()
	r.check(res)
	return res
}

// setup starts every slot and creates the topics.
func (r *runner) setup() error {
	for s := range r.o.Brokers {
		if _, err := r.w.Start(s); err != nil {
			return err
		}
	}
	p := r.w.Proc(0)
	for _, t := range r.topics {
		cfg := &stratapb.TopicConfig{Name: t.spec.name, Partitions: t.spec.parts}
		if _, err := p.B.CreateTopic(context.Background(), &stratapb.CreateTopicRequest{Config: cfg}); err != nil {
			return err
		}
		t.era = r.w.Era(t.spec.name)
	}
	return nil
}

func (r *runner) exec(i int, st Step) {
	proc := r.w.Proc(st.Slot)
	switch st.Kind {
	case KRestart:
		p, err := r.w.Start(st.Slot)
		if err != nil {
			r.note(i, "start failed: %v", err)
		} else {
			r.note(i, "started %s", p.Name)
		}
		return
	case KAdvance:
		return
	}
	if proc == nil {
		r.note(i, "skipped: slot %d is down", st.Slot)
		return
	}
	switch st.Kind {
	case KProduce:
		r.produce(i, st, proc)
	case KProduceIdem:
		r.produceIdem(i, st, proc)
	case KFetch:
		r.fetch(i, st, proc)
	case KDescribe:
		r.async(i, proc, "describe", func(ctx context.Context) (string, error) {
			resp, err := proc.B.DescribeTopic(ctx, &stratapb.DescribeTopicRequest{Name: topicSpecs[st.Topic].name})
			if err != nil {
				return "", err
			}
			var hw []int64
			for _, p := range resp.Partitions {
				hw = append(hw, p.HighWatermark)
				r.sawHWM(st.Topic, p.Partition, p.HighWatermark)
			}
			return fmt.Sprintf("high watermarks %v", hw), nil
		})
	case KListOffsets:
		r.async(i, proc, "list-offsets", func(ctx context.Context) (string, error) {
			resp, err := proc.B.ListOffsets(ctx, &stratapb.ListOffsetsRequest{Topic: topicSpecs[st.Topic].name, Partition: st.Part, Spec: &stratapb.ListOffsetsRequest_Latest{Latest: true}})
			if err != nil {
				return "", err
			}
			r.sawHWM(st.Topic, st.Part, resp.Offset)
			return fmt.Sprintf("latest %d", resp.Offset), nil
		})
	case KCollect:
		r.async(i, proc, "gc", func(ctx context.Context) (string, error) {
			n, err := proc.Core.CollectWAL(ctx)
			return fmt.Sprintf("deleted %d WAL objects", n), err
		})
	case KHandOff:
		r.async(i, proc, "gc", func(ctx context.Context) (string, error) {
			return fmt.Sprintf("handed off %d partitions", proc.Core.Release()), nil
		})
	case KFaults:
		proc.SetFaults(st.Faults)
		r.note(i, "%s: %v", proc.Name, st.Faults)
	case KHeal:
		proc.SetFaults(Faults{})
		r.note(i, "%s healed", proc.Name)
	case KPause:
		proc.Pause()
		r.note(i, "%s paused", proc.Name)
	case KResume:
		proc.Resume()
		r.note(i, "%s resumed", proc.Name)
	case KKill:
		var torn *rand.Rand
		if st.TornSeed != 0 {
			torn = rand.New(rand.NewPCG(st.TornSeed, 1))
		}
		r.note(i, "killed %s", r.w.Kill(st.Slot, st.KeepDisk, torn))
	case KDelete, KCreate:
		r.admin(i, st, proc)
	case KShareCreate:
		r.shareCreate(i, proc)
	case KReceive:
		r.receive(i, st, proc)
	case KSettle:
		r.settle(i, st, proc)
	}
}

// async runs a client call in its own goroutine and notes its result.
// read names a read-only request, or is "gc" for a WAL collection (not a
// client request), or "".
func (r *runner) async(i int, p *Process, read string, fn func(ctx context.Context) (string, error)) {
	r.ops.Add(1)
	go func() {
		defer r.ops.Done()
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		var msg string
		call := p.Call
		if read == "gc" {
			call = p.Trigger
		} else if read != "" {
			call = func(ctx context.Context, fn func(context.Context) error) (bool, error) { return p.Read(ctx, read, fn) }
		}
		sent, err := call(ctx, func(ctx context.Context) (err error) {
			msg, err = fn(ctx)
			return err
		})
		switch {
		case !sent:
			r.note(i, "not sent: %v", err)
		case err != nil:
			r.note(i, "%s: error: %v", p.Name, short(err))
		default:
			r.note(i, "%s: %s", p.Name, msg)
		}
	}()
}

func (r *runner) sawHWM(t int, p int32, hwm int64) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if p >= 0 && int(p) < len(r.topics[t].maxOff) && hwm > r.topics[t].maxOff[p] {
		r.topics[t].maxOff[p] = hwm
	}
}

func values(step, n int) []string {
	out := make([]string, n)
	for j := range out {
		out[j] = fmt.Sprintf("s%d.%d", step, j)
	}
	return out
}

func (r *runner) produce(i int, st Step, p *Process) {
	a := &attempt{step: i, proc: p.Name, topic: st.Topic, part: st.Part, values: values(i, st.N), local: st.Local, delay: st.Delay}
	r.ops.Add(1)
	go func() {
		defer r.ops.Done()
		r.send(i, p, a, 0, 0)
	}()
}

// send makes one produce attempt and records it. It returns the answer's
// code; codes.Unavailable when the request was not sent.
func (r *runner) send(i int, p *Process, a *attempt, producerID int64, seq int32) codes.Code {
	req := &stratapb.ProduceRequest{Topic: topicSpecs[a.topic].name, Partition: a.part, Acks: stratapb.Acks_ACKS_DURABLE, TimeoutMs: int32(tuning.ProduceTimeout / time.Millisecond)}
	if a.local {
		req.Acks = stratapb.Acks_ACKS_LOCAL
	}
	if producerID != 0 {
		req.ProducerId, req.BaseSequence = producerID, seq
	}
	for _, v := range a.values {
		rec := &stratapb.Record{Value: []byte(v)}
		if a.delay > 0 {
			rec.Headers = []*stratapb.Header{{Key: core.HeaderDelay, Value: []byte(strconv.FormatInt(a.delay.Milliseconds(), 10))}}
		}
		req.Records = append(req.Records, rec)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	snap := r.snapshot(a.topic)
	var resp *stratapb.ProduceResponse
	sent, err := p.Call(ctx, func(ctx context.Context) (err error) {
		a.sent, a.sentAt = r.w.Now(), time.Now()
		resp, err = p.B.Produce(ctx, req)
		return err
	})
	a.eras = r.eras(a.topic, snap)
	a.done = r.w.Now()
	if !sent {
		r.note(i, "not sent: %v", err)
		return codes.Unavailable // nothing reached the broker; not recorded
	}
	code := status.Code(err)
	switch {
	case err == nil:
		a.res, a.offsets = outAck, resp.Offsets
		r.sawHWM(a.topic, a.part, resp.Offsets[len(resp.Offsets)-1]+1)
		dup := ""
		if resp.Duplicate {
			dup = " (duplicate: stored before)"
		}
		r.note(i, "%s: ack %s/%d@%v%s (t%d)", p.Name, r.label(a.topic, a.eras[0]), a.part, a.offsets, dup, a.sent)
	case !a.retry && (code == codes.InvalidArgument || code == codes.NotFound || code == codes.Aborted):
		a.res, a.err = outFail, err.Error()
		r.note(i, "%s: refused: %v", p.Name, short(err))
	default:
		a.res, a.err = outUnknown, err.Error()
		r.note(i, "%s: unknown: %v", p.Name, short(err))
	}
	r.mu.Lock()
	r.attempts = append(r.attempts, a)
	r.mu.Unlock()
	return code
}

func (r *runner) produceIdem(i int, st Step, p *Process) {
	k := tpKey{st.Producer, st.Topic, st.Part}
	r.mu.Lock()
	ss := r.seqs[k]
	if ss == nil {
		ss = &seqState{}
		r.seqs[k] = ss
	}
	if ss.busy {
		r.mu.Unlock()
		r.note(i, "skipped: producer p%d has a batch in flight there", st.Producer)
		return
	}
	if era := r.topics[st.Topic].era; ss.era != era {
		*ss = seqState{era: era} // a new topic: a new producer, from sequence 0
	}
	b := ss.pending
	if b == nil {
		b = &pendingBatch{seq: ss.next, values: values(i, st.N)}
	}
	ss.busy = true
	id := ss.id
	r.mu.Unlock()
	r.ops.Add(1)
	go func() {
		defer r.ops.Done()
		code := r.idemSend(i, p, st, b, id, ss)
		r.mu.Lock()
		defer r.mu.Unlock()
		ss.busy = false
		n := int32(len(b.values))
		switch code {
		case codes.OK, codes.FailedPrecondition: // stored (FailedPrecondition: long ago)
			ss.next, ss.pending = b.seq+n, nil
		case codes.Aborted, codes.NotFound, codes.InvalidArgument:
			// Out of sequence (an earlier batch we thought unknown was
			// never stored) or the topic is gone: start over with a new
			// producer id.
			ss.id, ss.next, ss.pending = 0, 0, nil
		default: // unknown: retry it with the same sequence
			b.retry = true
			ss.pending = b
		}
	}()
}

// idemSend gets a producer id if needed and sends batch b; it returns the
// answer's code (codes.Unknown when nothing was sent).
func (r *runner) idemSend(i int, p *Process, st Step, b *pendingBatch, id int64, ss *seqState) codes.Code {
	if id == 0 {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		var resp *stratapb.InitProducerResponse
		sent, err := p.Call(ctx, func(ctx context.Context) (err error) {
			resp, err = p.B.InitProducer(ctx, &stratapb.InitProducerRequest{})
			return err
		})
		cancel()
		if !sent || err != nil {
			r.note(i, "init producer failed: %v", short(err))
			return codes.Unavailable
		}
		id = resp.ProducerId
		r.mu.Lock()
		ss.id = id
		r.mu.Unlock()
	}
	a := &attempt{step: i, proc: p.Name, topic: st.Topic, part: st.Part, values: b.values, local: st.Local, retry: b.retry}
	r.note(i, "p%d id %d seq %d values %s..%s", st.Producer, id, b.seq, b.values[0], b.values[len(b.values)-1])
	return r.send(i, p, a, id, b.seq)
}

func (r *runner) fetch(i int, st Step, p *Process) {
	r.ops.Add(1)
	go func() {
		defer r.ops.Done()
		r.mu.Lock()
		from := int64(st.Frac * float64(r.topics[st.Topic].maxOff[st.Part]))
		r.mu.Unlock()
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		snap := r.snapshot(st.Topic)
		stream := &fetchStream{ctx: ctx}
		req := &stratapb.FetchRequest{Topic: topicSpecs[st.Topic].name, Partition: st.Part, Start: &stratapb.FetchRequest_Offset{Offset: from}, MaxBytes: 16 << 10, MaxWaitMs: 5}
		var sentAt int64
		sent, err := p.Read(ctx, "fetch", func(ctx context.Context) error {
			sentAt = r.w.Now()
			stream.ctx = ctx
			return p.B.Fetch(req, stream)
		})
		if !sent {
			r.note(i, "not sent: %v", err)
			return
		}
		eras := r.eras(st.Topic, snap)
		recs := r.records(stream, st.Topic, st.Part)
		if len(recs) > 0 {
			r.mu.Lock()
			r.reads = append(r.reads, readRec{proc: p.Name, topic: st.Topic, eras: eras, part: st.Part, recs: recs, sent: sentAt, done: r.w.Now()})
			r.mu.Unlock()
		}
		msg := fmt.Sprintf("read %d records from %d", len(recs), from)
		if len(recs) > 0 {
			msg += fmt.Sprintf(": %d=%s .. %d=%s", recs[0].Offset, recs[0].Value, recs[len(recs)-1].Offset, recs[len(recs)-1].Value)
		}
		if err != nil {
			msg += fmt.Sprintf("; error: %v", short(err))
		}
		r.note(i, "%s: %s", p.Name, msg)
	}()
}

// records collects a fetch stream's records and notes the high watermark.
func (r *runner) records(s *fetchStream, t int, part int32) []history.Rec {
	var recs []history.Rec
	for _, resp := range s.out {
		r.sawHWM(t, part, resp.HighWatermark)
		for _, rec := range resp.Records {
			recs = append(recs, history.Rec{Offset: rec.Offset, Value: string(rec.Value)})
		}
	}
	return recs
}

// admin deletes or creates a topic, synchronously: no other step runs
// meanwhile. The world's record of config writes then says which era the
// topic is in, even when the call failed.
func (r *runner) admin(i int, st Step, p *Process) {
	t := r.topics[st.Topic]
	r.mu.Lock()
	t.busy = true
	r.mu.Unlock()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	name := t.spec.name
	_, err := p.Call(ctx, func(ctx context.Context) (err error) {
		if st.Kind == KDelete {
			_, err = p.B.DeleteTopic(ctx, &stratapb.DeleteTopicRequest{Name: name})
		} else {
			_, err = p.B.CreateTopic(ctx, &stratapb.CreateTopicRequest{Config: &stratapb.TopicConfig{Name: name, Partitions: t.spec.parts}})
		}
		return err
	})
	cancel()
	r.mu.Lock()
	if era := r.w.Era(name); era != t.era {
		t.era = era
		for p := range t.maxOff {
			t.maxOff[p] = 0
		}
	}
	t.busy = false
	era := t.era
	r.mu.Unlock()
	msg := "ok"
	if err != nil {
		msg = "error: " + short(err)
	}
	r.note(i, "%s: %s; the topic is now %s", p.Name, msg, r.label(st.Topic, era))
}

// label names an era of a topic for the checker: "a#2" is the second
// topic named a, "a#2-deleted" the time after it was deleted.
func (r *runner) label(t, era int) string {
	name := topicSpecs[t].name
	if era%2 == 1 {
		return fmt.Sprintf("%s#%d", name, (era+1)/2)
	}
	return fmt.Sprintf("%s#%d-deleted", name, era/2)
}

// short cuts an error message for the schedule.
func short(err error) string {
	if err == nil {
		return "<nil>"
	}
	s := err.Error()
	if len(s) > 160 {
		s = s[:160] + "..."
	}
	return s
}

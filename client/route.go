package client

// Routing in a cluster. Each partition's writes are taken only by its
// owner and each group is coordinated by one broker; any broker serves
// reads and admin calls. The client learns who owns what from the
// Metadata RPC of any broker it reaches (the seeds, then the brokers an
// answer listed) and keeps it in a cache, refreshed:
//   - on NOT_OWNER (FAILED_PRECONDITION with an ErrorInfo naming the
//     owner): the owner it names is used at once, and the whole cache is
//     refreshed in the background;
//   - when a broker cannot be reached (UNAVAILABLE): the caller refreshes
//     with backoff and full jitter until the metadata names another owner
//     or the broker answers again, for at most the failover timeout;
//   - when a topic or group is not in the cache.
// A broker without the Metadata RPC (UNIMPLEMENTED) is a broker of a
// single-broker deployment: everything goes to it. A cluster of one that
// answers Metadata is reached at the address the client used, whatever it
// advertises (a broker listening on 0.0.0.0 advertises that).

import (
	"context"
	"slices"
	"time"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/stratalog/strata/api/stratapb"
)

// The NOT_OWNER answer, as the Metadata RPC documents it.
const (
	notOwnerReason = "NOT_OWNER"
	errorDomain    = "strata.v1"
)

const (
	// metadataTimeout bounds one Metadata call (to one broker).
	metadataTimeout = 5 * time.Second
	// backgroundRefreshTimeout bounds a refresh in the background.
	backgroundRefreshTimeout = 10 * time.Second
	// downFor is how long a broker that could not be reached is tried
	// after the others.
	downFor = 2 * time.Second
	// probeTimeout bounds the call that checks whether a broker that
	// could not be reached answers again.
	probeTimeout = time.Second
	// maxRedirects bounds the NOT_OWNER redirects one request follows
	// (views of the cluster converge by gossip; two brokers may briefly
	// point at each other). The first is followed at once, the next after
	// backoff from redirectBackoff.
	maxRedirects    = 10
	redirectBackoff = 20 * time.Millisecond
	// While a broker cannot be reached, metadata is refreshed with backoff
	// from failoverBackoff up to maxFailoverBackoff, full jitter.
	failoverBackoff    = 50 * time.Millisecond
	maxFailoverBackoff = time.Second
)

// metadata is the client's view of the cluster. Guarded by Client.mu.
type metadata struct {
	single  string   // the brokers have no Metadata RPC: every call goes to this one
	last    string   // the broker that answered last: calls without an owner go there first
	brokers []string // the live brokers, as the last answer listed them
	// topics holds the owner of each partition per topic of interest (nil:
	// not known yet); Metadata is asked for these topics only (the broker
	// answers from memory; for every topic it lists the bucket).
	topics map[string][]string
	groups map[string]string // coordinator per group of interest ("": unknown)
	// down holds brokers a call could not reach, tried after the others
	// until the time noted.
	down    map[string]time.Time
	loading *mdLoad // a Metadata call under way
	bgBusy  bool    // a background refresh is under way
}

// mdLoad is a Metadata call under way; done is closed when it ends.
type mdLoad struct{ done chan struct{} }

// NotOwner reports whether err is a broker's NOT_OWNER answer, and the
// address of the owner it names ("" when it names none).
func NotOwner(err error) (ownerAddr string, ok bool) {
	st, isStatus := status.FromError(err)
	if !isStatus || st.Code() != codes.FailedPrecondition {
		return "", false
	}
	for _, d := range st.Details() {
		if info, isInfo := d.(*errdetails.ErrorInfo); isInfo && info.Reason == notOwnerReason && info.Domain == errorDomain {
			return info.Metadata["owner_address"], true
		}
	}
	return "", false
}

// unreachable reports whether err says the broker could not serve the call
// now: it is down, shutting down or overloaded (UNAVAILABLE). The call
// may be tried elsewhere.
func unreachable(err error) bool { return status.Code(err) == codes.Unavailable }

// candidates returns the brokers to try, in order: the one that answered
// last, the brokers the metadata lists, the seeds; those a call could not
// reach lately come last.
func (c *Client) candidates() []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.md.single != "" {
		return []string{c.md.single}
	}
	var all []string
	add := func(a string) {
		if a != "" && !slices.Contains(all, a) {
			all = append(all, a)
		}
	}
	add(c.md.last)
	for _, a := range c.md.brokers {
		add(a)
	}
	for _, a := range c.seeds {
		add(a)
	}
	now := time.Now()
	up, down := all[:0:0], []string(nil)
	for _, a := range all {
		if now.Before(c.md.down[a]) {
			down = append(down, a)
		} else {
			up = append(up, a)
		}
	}
	return append(up, down...)
}

// markDown notes that a call could not reach addr.
func (c *Client) markDown(addr string) {
	c.mu.Lock()
	c.md.down[addr] = time.Now().Add(downFor)
	c.mu.Unlock()
}

// answered notes that addr answered a call.
func (c *Client) answered(addr string) {
	c.mu.Lock()
	delete(c.md.down, addr)
	if c.md.single == "" {
		c.md.last = addr
	}
	c.mu.Unlock()
}

// refresh loads the metadata from the first broker that answers. When a
// load is under way, it waits for that one instead, and is done unless
// need is set and still reports true. It returns the last broker's error
// when none answered.
func (c *Client) refresh(ctx context.Context, need func() bool) error {
	for {
		c.mu.Lock()
		l := c.md.loading
		if l == nil {
			break // with mu held
		}
		c.mu.Unlock()
		select {
		case <-l.done:
		case <-ctx.Done():
			return ctx.Err()
		}
		if need == nil || !need() {
			return nil
		}
	}
	if c.md.single != "" {
		c.mu.Unlock()
		return nil
	}
	l := &mdLoad{done: make(chan struct{})}
	c.md.loading = l
	topics := make([]string, 0, len(c.md.topics))
	for t := range c.md.topics {
		topics = append(topics, t)
	}
	groups := make([]string, 0, len(c.md.groups))
	for g := range c.md.groups {
		groups = append(groups, g)
	}
	c.mu.Unlock()
	err := c.load(ctx, topics, groups)
	c.mu.Lock()
	c.md.loading = nil
	close(l.done)
	c.mu.Unlock()
	return err
}

// load asks the brokers in turn for the metadata of topics (every topic
// when none is named) and groups, and keeps the first answer.
func (c *Client) load(ctx context.Context, topics, groups []string) error {
	var lastErr error
	for _, addr := range c.candidates() {
		api, err := c.stub(addr)
		if err != nil {
			lastErr = err
			continue
		}
		req := &stratapb.MetadataRequest{Topics: topics, Groups: groups}
		actx, cancel := context.WithTimeout(ctx, metadataTimeout)
		resp, err := api.Metadata(actx, req)
		if status.Code(err) == codes.InvalidArgument && len(groups) > 0 {
			// A group name the broker refuses (its calls fail on their
			// own): the rest of the metadata is still worth having.
			req.Groups = nil
			resp, err = api.Metadata(actx, req)
		}
		if status.Code(err) == codes.NotFound && len(topics) > 0 {
			// A topic of interest is gone: ask for every topic, which
			// tells which ones still exist.
			req.Topics = nil
			resp, err = api.Metadata(actx, req)
		}
		cancel()
		switch {
		case err == nil:
			c.apply(addr, resp, len(req.Topics) == 0)
			return nil
		case status.Code(err) == codes.Unimplemented:
			c.mu.Lock()
			c.md.single = addr
			c.mu.Unlock()
			return nil
		case ctx.Err() != nil:
			return err
		case unreachable(err):
			c.markDown(addr)
		}
		lastErr = err
	}
	return lastErr
}

// apply keeps the Metadata answer resp of the broker reached at addr, an
// answer for every topic when all is set.
func (c *Client) apply(addr string, resp *stratapb.MetadataResponse, all bool) {
	// A cluster of one is reached where the client reached it; so is an
	// owner without an address (a broker that does not know its own).
	one := len(resp.Brokers) <= 1
	at := func(a string) string {
		if one || a == "" {
			return addr
		}
		return a
	}
	answered := make(map[string][]string, len(resp.Topics))
	for _, t := range resp.Topics {
		owners := make([]string, t.Partitions)
		for _, o := range t.Owners {
			if o.Partition >= 0 && o.Partition < t.Partitions {
				owners[o.Partition] = at(o.Address)
			}
		}
		answered[t.Name] = owners
	}
	var brokers []string
	for _, b := range resp.Brokers {
		brokers = append(brokers, at(b.Address))
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	c.md.brokers, c.md.last = brokers, addr
	delete(c.md.down, addr)
	for name := range c.md.topics {
		if owners, ok := answered[name]; ok {
			c.md.topics[name] = owners
		} else if all {
			delete(c.md.topics, name) // it does not exist (any more)
		}
	}
	for _, g := range resp.Groups {
		if _, ok := c.md.groups[g.Group]; ok {
			c.md.groups[g.Group] = at(g.Address)
		}
	}
}

// refreshInBackground refreshes the metadata without waiting for it,
// unless a background refresh is under way.
func (c *Client) refreshInBackground() {
	c.mu.Lock()
	if c.md.bgBusy || c.shut || c.md.single != "" {
		c.mu.Unlock()
		return
	}
	c.md.bgBusy = true
	c.bg.Add(1)
	c.mu.Unlock()
	go func() {
		defer c.bg.Done()
		ctx, cancel := context.WithTimeout(c.closed, backgroundRefreshTimeout)
		c.refresh(ctx, nil)
		cancel()
		c.mu.Lock()
		c.md.bgBusy = false
		c.mu.Unlock()
	}()
}

// cachedOwner is the owner of partition p of topic as the cache has it,
// and registers the topic so that refreshes ask for it.
func (c *Client) cachedOwner(topic string, p int32) (string, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.md.single != "" {
		return c.md.single, true
	}
	owners, ok := c.md.topics[topic]
	if !ok {
		c.md.topics[topic] = nil
	}
	if p < 0 || int(p) >= len(owners) || owners[p] == "" {
		return "", false
	}
	return owners[p], true
}

// ownerOf is the broker to send partition p of topic's writes to: its
// owner, after a refresh when the cache does not know it, or else any
// broker (which redirects).
func (c *Client) ownerOf(ctx context.Context, topic string, p int32) string {
	if a, ok := c.cachedOwner(topic, p); ok {
		return a
	}
	c.refresh(ctx, func() bool { _, ok := c.cachedOwner(topic, p); return !ok })
	if a, ok := c.cachedOwner(topic, p); ok {
		return a
	}
	return c.candidates()[0]
}

// learnOwner notes that addr owns partition p of topic (a NOT_OWNER
// answer named it).
func (c *Client) learnOwner(topic string, p int32, addr string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	owners := c.md.topics[topic]
	if p >= 0 && int(p) < len(owners) {
		owners = slices.Clone(owners) // a refresh may hand out the old slice
		owners[p] = addr
		c.md.topics[topic] = owners
	}
}

// partitionCount is the number of partitions of topic: from the metadata,
// or from ListTopics (brokers without the Metadata RPC). 0: no such topic.
func (c *Client) partitionCount(ctx context.Context, topic string) (int32, error) {
	count := func() int32 {
		c.mu.Lock()
		defer c.mu.Unlock()
		owners, ok := c.md.topics[topic]
		if !ok {
			c.md.topics[topic] = nil // of interest from now on
		}
		return int32(len(owners))
	}
	if n := count(); n > 0 {
		return n, nil
	}
	err := c.refresh(ctx, func() bool { return count() == 0 })
	if n := count(); n > 0 {
		return n, nil
	}
	if c := status.Code(err); c == codes.PermissionDenied || c == codes.Unauthenticated {
		return 0, err // not "does not exist": the broker will not say
	}
	resp, err := c.api.ListTopics(ctx, &stratapb.ListTopicsRequest{})
	if err != nil {
		return 0, err
	}
	for _, t := range resp.Topics {
		if t.Name == topic {
			return t.Partitions, nil
		}
	}
	return 0, nil
}

// cachedCoordinator is group's coordinator as the cache has it, and
// registers the group so that refreshes ask for it.
func (c *Client) cachedCoordinator(group string) (string, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.md.single != "" {
		return c.md.single, true
	}
	a, ok := c.md.groups[group]
	if !ok {
		c.md.groups[group] = ""
	}
	return a, a != ""
}

// coordinatorOf is the broker to send group's calls to: its coordinator,
// after a refresh when the cache does not know it, or else any broker.
func (c *Client) coordinatorOf(ctx context.Context, group string) string {
	if a, ok := c.cachedCoordinator(group); ok {
		return a
	}
	c.refresh(ctx, func() bool { _, ok := c.cachedCoordinator(group); return !ok })
	if a, ok := c.cachedCoordinator(group); ok {
		return a
	}
	return c.candidates()[0]
}

// learnCoordinator notes that addr coordinates group.
func (c *Client) learnCoordinator(group, addr string) {
	c.mu.Lock()
	c.md.groups[group] = addr
	c.mu.Unlock()
}

// sleep waits d, or until ctx ends or the client closes; it reports
// whether to go on.
func (c *Client) sleep(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
	case <-c.closed.Done():
	}
	return false
}

// alive reports whether the broker at addr answers a call.
func (c *Client) alive(ctx context.Context, addr string) bool {
	api, err := c.stub(addr)
	if err != nil {
		return false
	}
	ctx, cancel := context.WithTimeout(ctx, probeTimeout)
	defer cancel()
	_, err = api.GetStats(ctx, &stratapb.GetStatsRequest{}) // in memory: cheap
	switch status.Code(err) {
	case codes.Unavailable, codes.DeadlineExceeded, codes.Canceled:
		return false
	}
	return true
}

// awaitOwner waits, after a call could not reach failed, until the
// metadata names another broker for what route looks up (in the cache),
// or failed answers again, or deadline passes or ctx ends: it refreshes
// with backoff and full jitter in between.
func (c *Client) awaitOwner(ctx context.Context, route func() string, failed string, deadline time.Time) {
	for n := 0; ; n++ {
		c.refresh(ctx, nil)
		if route() != failed || c.alive(ctx, failed) || !time.Now().Before(deadline) {
			return
		}
		if !c.sleep(ctx, jitter(backoff(failoverBackoff, n, maxFailoverBackoff))) {
			return
		}
	}
}

// call is one attempt of a call at one broker.
type call func(ctx context.Context, api stratapb.StrataClient) error

// callAny makes call at first (when not "") and then at the other brokers
// in turn, as long as each is unreachable; when every known broker was,
// it refreshes the metadata once and tries the brokers it learned.
func (c *Client) callAny(ctx context.Context, first string, do call) error {
	tried := map[string]bool{}
	var err error
	for round := 0; round < 2; round++ {
		cands := c.candidates()
		if first != "" {
			cands = append([]string{first}, cands...)
		}
		for _, addr := range cands {
			if tried[addr] {
				continue
			}
			tried[addr] = true
			api, derr := c.stub(addr)
			if derr != nil {
				return derr
			}
			err = do(ctx, api)
			if err == nil {
				c.answered(addr)
				return nil
			}
			if !unreachable(err) || ctx.Err() != nil {
				return err
			}
			c.markDown(addr)
			c.refreshInBackground()
		}
		if round == 0 {
			c.refresh(ctx, nil)
		}
	}
	return err
}

// callRouted makes call at the broker route names (an owner or a
// coordinator), following NOT_OWNER redirects (learn notes the owner a
// redirect names) and, while the broker cannot be reached, refreshing the
// metadata with backoff and full jitter and trying again, for at most the
// failover timeout.
func (c *Client) callRouted(ctx context.Context, route func(context.Context) string, learn func(addr string), do call) error {
	start := time.Now()
	redirects, failures := 0, 0
	for {
		addr := route(ctx)
		api, err := c.stub(addr)
		if err != nil {
			return err
		}
		err = do(ctx, api)
		if err == nil {
			c.answered(addr)
			return nil
		}
		if owner, ok := NotOwner(err); ok {
			redirects++
			if redirects > maxRedirects {
				return err
			}
			if owner != "" {
				learn(owner)
			}
			c.refreshInBackground()
			if redirects > 1 && !c.sleep(ctx, jitter(backoff(redirectBackoff, redirects-2, maxBackoff))) {
				return err
			}
			continue
		}
		if !unreachable(err) || ctx.Err() != nil || time.Since(start) >= c.cfg.failover {
			return err
		}
		c.markDown(addr)
		if !c.sleep(ctx, jitter(backoff(failoverBackoff, failures, maxFailoverBackoff))) {
			return err
		}
		failures++
		c.refresh(ctx, nil)
	}
}

// callPartition makes call at the owner of partition p of topic
// (callRouted).
func (c *Client) callPartition(ctx context.Context, topic string, p int32, do call) error {
	return c.callRouted(ctx, func(ctx context.Context) string { return c.ownerOf(ctx, topic, p) },
		func(addr string) { c.learnOwner(topic, p, addr) }, do)
}

// callGroup makes call at group's coordinator (callRouted).
func (c *Client) callGroup(ctx context.Context, group string, do call) error {
	return c.callRouted(ctx, func(ctx context.Context) string { return c.coordinatorOf(ctx, group) },
		func(addr string) { c.learnCoordinator(group, addr) }, do)
}

// produceOnce makes one attempt of req at its partition's owner and
// returns the broker it went to. On NOT_OWNER it notes the owner named
// and refreshes in the background; the caller retries.
func (c *Client) produceOnce(ctx context.Context, req *stratapb.ProduceRequest) (*stratapb.ProduceResponse, string, error) {
	addr := c.ownerOf(ctx, req.Topic, req.Partition)
	api, err := c.stub(addr)
	if err != nil {
		return nil, addr, err
	}
	resp, err := api.Produce(ctx, req)
	switch owner, moved := NotOwner(err); {
	case err == nil:
		c.answered(addr)
	case moved:
		if owner != "" {
			c.learnOwner(req.Topic, req.Partition, owner)
		}
		c.refreshInBackground()
	case unreachable(err):
		c.markDown(addr)
	case status.Code(err) == codes.DeadlineExceeded:
		c.refreshInBackground() // the owner may be hung, or gone
	}
	return resp, addr, err
}

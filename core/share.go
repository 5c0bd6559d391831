package core

// Share groups: queue semantics on a topic (docs/queues.md).
//
// A share group's settings are an object in the bucket
// (meta.ShareConfigKey), written by CAS. Its state on partition p (package
// queue) lives with p's owner: every change (a lease, a settle, a
// dead-letter move, a spill of delayed records) is an event appended to
// partition p of the topic's state log, the internal topic
// "__share.<topic>", colocated with the topic (same owner, same partition
// numbers), so the events go through the same group-committed WAL as
// records and are answered only once durable. The owner snapshots the
// state to the bucket now and then; a new owner (after a takeover, a
// restart or the loss of the disk) rebuilds it from the latest snapshot
// plus the events after it (share_runtime.go).
//
// Safety, by who can write what:
//   - Events: only the owner of the state-log partition, which is claimed
//     like any partition (manifest epoch CAS, WAL fence); a fenced owner's
//     events never become durable, so it answers no settle as done.
//   - Snapshots: written at a state-log offset X only after every event
//     below X is durable, PutIfAbsent; a stale owner's snapshot describes
//     the committed events below X, which a new owner's log continues.
//   - Runs of spilled delayed records: immutable, new random keys,
//     referenced only by a durable spill event.
//   - Dead-letter records: written with a producer id and sequence logged
//     before the write, so a retry by a new owner is a duplicate.

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"sort"
	"sync"
	"time"

	"github.com/stratalog/strata/meta"
	"github.com/stratalog/strata/queue"
	"github.com/stratalog/strata/tier"
)

// ErrAlreadyExists: what the request creates exists already.
var ErrAlreadyExists = errors.New("core: already exists")

// shareConfigTTL is how long a broker trusts a cached share-group config
// (an alter or delete through another broker is seen within it).
const shareConfigTTL = 5 * time.Second

// shares holds a broker's share-group configs and runtimes.
type shares struct {
	mu       sync.Mutex
	configs  map[string]*cachedShareConfig // by topic store + "\x00" + group
	runtimes map[runtimeKey]*sharePart
	// scanned is when activateShares last looked (owned by shareLoop);
	// activating bounds the builds it runs at once.
	scanned    time.Time
	activating chan struct{}
	tokens     map[runtimeKey]chan struct{} // each key's token, outliving its runtimes (sharePart.token)
	wake       chan struct{}                // closed and replaced when any runtime may have records
}

// tokenOf returns key's token (sharePart.token), made on first use. The
// caller holds s.mu.
func (s *shares) tokenOf(key runtimeKey) chan struct{} {
	t := s.tokens[key]
	if t == nil {
		t = make(chan struct{}, 1)
		s.tokens[key] = t
	}
	return t
}

type cachedShareConfig struct {
	cfg    *ShareGroupConfig
	loaded time.Time
}

type runtimeKey struct {
	store, group string
	p            int32
}

func (s *shares) init() {
	s.configs = map[string]*cachedShareConfig{}
	s.runtimes = map[runtimeKey]*sharePart{}
	s.activating = make(chan struct{}, 4)
	s.tokens = map[runtimeKey]chan struct{}{}
	s.wake = make(chan struct{})
}

// notify wakes receivers waiting for records.
func (s *shares) notify() {
	s.mu.Lock()
	close(s.wake)
	s.wake = make(chan struct{})
	s.mu.Unlock()
}

func (s *shares) waitCh() <-chan struct{} {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.wake
}

// queueConfig is the queue package's view of a group's settings.
func (c *ShareGroupConfig) queueConfig() queue.Config {
	return c.tunedConfig(ShareTuning{})
}

// tunedConfig is queueConfig with the broker's tuning.
func (c *ShareGroupConfig) tunedConfig(tu ShareTuning) queue.Config {
	return queue.Config{
		Window:            tu.Window,
		MemTimers:         tu.MemTimers,
		Horizon:           tu.Horizon,
		Visibility:        time.Duration(c.VisibilityMs) * time.Millisecond,
		MaxDeliveries:     c.MaxDeliveries,
		BackoffMin:        time.Duration(c.BackoffMinMs) * time.Millisecond,
		BackoffMax:        time.Duration(c.BackoffMaxMs) * time.Millisecond,
		BackoffMultiplier: c.BackoffMultiplier,
		OrderedByKey:      c.OrderedByKey,
		PriorityAging:     time.Duration(c.PriorityAgingMs) * time.Millisecond,
		Seed:              c.Seed,
	}
}

// check validates the settable fields.
func (c *ShareGroupConfig) check() error {
	if err := validGroupName(c.Group); err != nil {
		return err
	}
	const maxMs = int64(queue.MaxDelay / time.Millisecond)
	for _, f := range []struct {
		name string
		v    int64
	}{{"visibility_ms", c.VisibilityMs}, {"backoff_min_ms", c.BackoffMinMs}, {"backoff_max_ms", c.BackoffMaxMs}, {"priority_aging_ms", c.PriorityAgingMs}} {
		if f.v < 0 || f.v > maxMs {
			return errorf(ErrInvalidArgument, "%s %d is out of range: use 0 (the default) up to %d", f.name, f.v, maxMs)
		}
	}
	if err := c.queueConfig().Check(); err != nil {
		return errorf(ErrInvalidArgument, "%v", err)
	}
	if err := c.queueConfig().Defaults().Check(); err != nil {
		return errorf(ErrInvalidArgument, "%v", err)
	}
	if err := validNewName(c.deadLetterTopic()); err != nil {
		return errorf(ErrInvalidArgument, "dead-letter topic: %v (the default is <topic>.dlq.<group>: with a long topic or group name, name a dead-letter topic)", err)
	}
	if c.DeadLetterTopic != "" {
		if c.DeadLetterTopic == c.Topic {
			return errorf(ErrInvalidArgument, "the dead-letter topic of group %q is its own topic %q: dead letters would be delivered again; name another topic, or leave it empty for %q", c.Group, c.Topic, c.Topic+".dlq."+c.Group)
		}
	}
	return nil
}

// deadLetterTopic is the group's dead-letter topic.
func (c *ShareGroupConfig) deadLetterTopic() string {
	if c.DeadLetterTopic != "" {
		return c.DeadLetterTopic
	}
	return c.Topic + ".dlq." + c.Group
}

// tag identifies the group's creation in its state-log events (the record
// key) and receipts: a deleted and re-created group never takes the old
// one's events or receipts for its own.
func (c *ShareGroupConfig) tag() string { return fmt.Sprintf("%s/%016x", c.Group, c.Seed) }

// CreateShareGroup creates a share group on a topic, and its dead-letter
// topic when it does not exist (colocated with the topic, same partitions).
func (b *Broker) CreateShareGroup(ctx context.Context, cfg ShareGroupConfig) (*ShareGroupConfig, error) {
	if err := clientTopic(cfg.Topic, "consume as a queue"); err != nil {
		return nil, err
	}
	t, err := b.loadTopic(ctx, cfg.Topic)
	if err != nil {
		return nil, err
	}
	if err := cfg.check(); err != nil {
		return nil, err
	}
	if _, err := b.ensureTopic(ctx, shareLogPrefix+t.cfg.Name, t); err != nil {
		return nil, err
	}
	if _, err := b.ensureTopic(ctx, cfg.deadLetterTopic(), t); err != nil {
		return nil, err
	}
	cfg.Seed = rand.Uint64() | 1
	cfg.StartOffsets = make([]int64, t.cfg.Partitions)
	if !cfg.StartFromEarliest {
		for p := range t.cfg.Partitions {
			_, hw, err := b.partitionBounds(ctx, t, p)
			if err != nil {
				return nil, err
			}
			cfg.StartOffsets[p] = hw
		}
	}
	data, _ := json.Marshal(&cfg)
	_, err = meta.CAS{Store: b.cfg.Store}.Swap(ctx, meta.ShareConfigKey(t.store, cfg.Group), "", data)
	var cerr *meta.ConflictError
	if errors.As(err, &cerr) {
		return nil, errorf(ErrAlreadyExists, "share group %q on topic %q already exists; change it with alter, or delete it first", cfg.Group, cfg.Topic)
	}
	if err != nil {
		return nil, classify(fmt.Errorf("share group %q: %w", cfg.Group, err))
	}
	b.cacheShareConfig(t, &cfg)
	b.cfg.Logger.Info("share group created", "topic", cfg.Topic, "group", cfg.Group, "dead_letter_topic", cfg.deadLetterTopic())
	return &cfg, nil
}

// ensureTopic creates topic name, colocated with t, unless it exists.
func (b *Broker) ensureTopic(ctx context.Context, name string, t *topic) (*topic, error) {
	if dt, err := b.loadTopic(ctx, name); err == nil {
		return dt, nil
	} else if !errors.Is(err, ErrTopicNotFound) {
		return nil, err
	}
	_, err := b.createTopic(ctx, TopicConfig{Name: name, Partitions: t.cfg.Partitions, Colocate: t.cfg.Name})
	if err != nil && !errors.Is(err, ErrTopicExists) {
		return nil, err
	}
	return b.loadTopic(ctx, name)
}

// AlterShareGroup replaces a share group's settings (its seed stays).
func (b *Broker) AlterShareGroup(ctx context.Context, cfg ShareGroupConfig) (*ShareGroupConfig, error) {
	t, err := b.loadTopic(ctx, cfg.Topic)
	if err != nil {
		return nil, err
	}
	if err := cfg.check(); err != nil {
		return nil, err
	}
	var out ShareGroupConfig
	_, err = meta.CAS{Store: b.cfg.Store}.Update(ctx, meta.ShareConfigKey(t.store, cfg.Group), func(cur meta.Version) ([]byte, error) {
		if !cur.Exists() {
			return nil, errorf(ErrGroupNotFound, "share group %q on topic %q does not exist; create it with `strata queue create %s --group %s`", cfg.Group, cfg.Topic, cfg.Topic, cfg.Group)
		}
		var old ShareGroupConfig
		if err := json.Unmarshal(cur.Data, &old); err != nil {
			return nil, errorf(ErrInternal, "share group %q config is unreadable: %v", cfg.Group, err)
		}
		out = cfg
		out.Seed, out.StartOffsets, out.StartFromEarliest = old.Seed, old.StartOffsets, old.StartFromEarliest
		data, _ := json.Marshal(&out)
		return data, nil
	})
	if err != nil {
		return nil, classify(err)
	}
	b.cacheShareConfig(t, &out)
	return &out, nil
}

// DeleteShareGroup deletes a share group: its config, snapshots and runs.
// Its dead-letter topic stays (delete it as any topic).
func (b *Broker) DeleteShareGroup(ctx context.Context, topicName, group string) error {
	t, err := b.loadTopic(ctx, topicName)
	if err != nil {
		return err
	}
	if _, err := b.shareConfig(ctx, t, group, true); err != nil {
		return err
	}
	if err := b.cfg.Store.Delete(ctx, meta.ShareConfigKey(t.store, group)); err != nil {
		return classify(err)
	}
	b.forgetShareGroup(t.store, group)
	if _, err := b.deletePrefix(ctx, meta.ShareGroupPrefix(t.store, group)); err != nil {
		return err
	}
	b.cfg.Logger.Info("share group deleted", "topic", topicName, "group", group)
	return nil
}

// forgetShareGroup drops a group's cached config and runtimes here.
func (b *Broker) forgetShareGroup(store, group string) {
	b.shares.mu.Lock()
	delete(b.shares.configs, store+"\x00"+group)
	for k, rt := range b.shares.runtimes {
		if k.store == store && (group == "" || k.group == group) {
			rt.dropped.Store(true)
			delete(b.shares.runtimes, k)
		}
	}
	// The keys' tokens go too: a group created again has another tag, so
	// a dropped runtime of the old one still appending cannot mislead a
	// new one's rebuild.
	for k := range b.shares.tokens {
		if k.store == store && (group == "" || k.group == group) {
			delete(b.shares.tokens, k)
		}
	}
	b.shares.mu.Unlock()
}

// ListShareGroups lists the share groups of a topic, or of every topic
// when topicName is "".
func (b *Broker) ListShareGroups(ctx context.Context, topicName string) ([]*ShareGroupConfig, error) {
	var topics []*topic
	if topicName != "" {
		t, err := b.loadTopic(ctx, topicName)
		if err != nil {
			return nil, err
		}
		topics = append(topics, t)
	} else {
		cfgs, err := b.ListTopics(ctx)
		if err != nil {
			return nil, err
		}
		for _, c := range cfgs {
			if t, err := b.loadTopic(ctx, c.Name); err == nil {
				topics = append(topics, t)
			}
		}
	}
	var out []*ShareGroupConfig
	for _, t := range topics {
		var groups []string
		err := b.cfg.Store.List(ctx, meta.ShareTopicPrefix(t.store), func(o tier.ObjectInfo) error {
			if g, ok := meta.ShareGroupOfConfigKey(t.store, o.Key); ok {
				groups = append(groups, g)
			}
			return nil
		})
		if err != nil {
			return nil, classify(err)
		}
		for _, g := range groups {
			cfg, err := b.shareConfig(ctx, t, g, true)
			if errors.Is(err, ErrGroupNotFound) {
				continue // deleted meanwhile
			}
			if err != nil {
				return nil, err
			}
			out = append(out, cfg)
		}
	}
	sort.Slice(out, func(i, j int) bool {
		return out[i].Topic < out[j].Topic || out[i].Topic == out[j].Topic && out[i].Group < out[j].Group
	})
	return out, nil
}

func (b *Broker) cacheShareConfig(t *topic, cfg *ShareGroupConfig) {
	b.shares.mu.Lock()
	b.shares.configs[t.store+"\x00"+cfg.Group] = &cachedShareConfig{cfg: cfg, loaded: time.Now()}
	b.shares.mu.Unlock()
}

// shareConfig returns a group's config, from the cache unless it is older
// than shareConfigTTL or fresh is set.
func (b *Broker) shareConfig(ctx context.Context, t *topic, group string, fresh bool) (*ShareGroupConfig, error) {
	if err := validGroupName(group); err != nil {
		return nil, err
	}
	key := t.store + "\x00" + group
	b.shares.mu.Lock()
	c := b.shares.configs[key]
	b.shares.mu.Unlock()
	if c != nil && !fresh && time.Since(c.loaded) < shareConfigTTL {
		return c.cfg, nil
	}
	rc, _, err := b.cfg.Store.Get(ctx, meta.ShareConfigKey(t.store, group))
	if errors.Is(err, tier.ErrNotFound) {
		b.forgetShareGroup(t.store, group)
		return nil, errorf(ErrGroupNotFound, "share group %q on topic %q does not exist; create it with `strata queue create %s --group %s`", group, t.cfg.Name, t.cfg.Name, group)
	}
	if err != nil {
		if c != nil {
			return c.cfg, nil // the store is unavailable: keep what we had
		}
		return nil, classify(err)
	}
	data, err := io.ReadAll(io.LimitReader(rc, 1<<20))
	rc.Close()
	if err != nil {
		return nil, classify(err)
	}
	cfg, err := decodeShareConfig(t.cfg.Name, group, data)
	if err != nil {
		return nil, errorf(ErrInternal, "share group %q config %s is unreadable (%v); delete and re-create the group", group, meta.ShareConfigKey(t.store, group), err)
	}
	if c != nil && c.cfg.Seed != cfg.Seed {
		b.forgetShareGroup(t.store, group) // deleted and re-created elsewhere
	}
	b.cacheShareConfig(t, cfg)
	return cfg, nil
}

// decodeShareConfig parses a stored share-group config and checks what
// CreateShareGroup checked when it wrote it.
func decodeShareConfig(topic, group string, data []byte) (*ShareGroupConfig, error) {
	var cfg ShareGroupConfig
	if err := json.Unmarshal(data, &cfg); err != nil {
		return nil, err
	}
	if cfg.Group != group || cfg.Seed == 0 {
		return nil, fmt.Errorf("it names group %q (seed %d)", cfg.Group, cfg.Seed)
	}
	cfg.Topic = topic
	if err := cfg.check(); err != nil {
		return nil, err
	}
	for _, o := range cfg.StartOffsets {
		if o < 0 {
			return nil, fmt.Errorf("start offset %d is negative", o)
		}
	}
	return &cfg, nil
}

// deleteShares deletes everything of t's share groups (t is being
// deleted): their objects and the state log.
func (b *Broker) deleteShares(ctx context.Context, t *topic) error {
	b.forgetShareGroup(t.store, "")
	if _, err := b.deletePrefix(ctx, meta.ShareTopicPrefix(t.store)); err != nil {
		return err
	}
	if _, err := b.deleteTopic(ctx, shareLogPrefix+t.cfg.Name); err != nil && !errors.Is(err, ErrTopicNotFound) {
		return err
	}
	return nil
}

package meta

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"sort"

	"github.com/stratalog/strata/tier"
)

// ManifestVersion is the manifest format this build writes and the newest it
// reads. A manifest with a larger version is rejected, never rewritten.
const ManifestVersion = 1

// maxManifestBytes bounds what Load will read: far above any real manifest
// (a segment reference is ~250 bytes), small enough to never exhaust memory.
const maxManifestBytes = 256 << 20

// ErrManifestVersion is wrapped when a manifest was written by a newer strata.
var ErrManifestVersion = errors.New("meta: manifest format version not supported")

// ErrManifestCorrupt is wrapped when a manifest cannot be decoded or breaks
// its invariants (segments out of order or overlapping).
var ErrManifestCorrupt = errors.New("meta: manifest corrupt")

// SegmentRef is one sealed segment as the manifest records it.
type SegmentRef struct {
	Key          string `json:"key"`           // object key of the segment
	BaseOffset   int64  `json:"base_offset"`   // first offset held
	LastOffset   int64  `json:"last_offset"`   // last offset held (inclusive)
	MinTimestamp int64  `json:"min_timestamp"` // ms since epoch
	MaxTimestamp int64  `json:"max_timestamp"` // ms since epoch
	Records      int64  `json:"records"`
	Size         int64  `json:"size"` // object bytes
	Codec        string `json:"codec"`
	SealedAtMs   int64  `json:"sealed_at_ms"` // wall clock of the sealing broker
	// MsgIDs counts the records that carry a message id (the partition's
	// dedup header), so an opening partition reads only the segments that
	// can rebuild its dedup set. 0 in segments sealed before message ids
	// existed, or by a partition with dedup off.
	MsgIDs int64 `json:"msg_ids,omitempty"`
}

// Manifest is the authoritative list of a partition's sealed segments, plus
// the partition's log start offset and owner epoch. It lives in the bucket at
// ManifestKey and changes only by compare-and-swap (ManifestStore.Update).
//
// Invariants: segments are sorted by BaseOffset, do not overlap, and every
// segment's LastOffset >= LogStartOffset; LogStartOffset <= NextOffset().
type Manifest struct {
	Version        int          `json:"version"`
	Topic          string       `json:"topic"`
	Partition      int32        `json:"partition"`
	Epoch          int64        `json:"epoch"`      // owner epoch; a new owner bumps it
	Generation     int64        `json:"generation"` // bumped by every successful update
	UpdateID       string       `json:"update_id"`  // random per update: recognizes our own write after a lost response
	LogStartOffset int64        `json:"log_start_offset"`
	Segments       []SegmentRef `json:"segments"`

	// Owner is the WAL incarnation of the broker that claimed the
	// partition last ("" before the object-store WAL existed).
	Owner string `json:"owner,omitempty"`
	// WALOwners are earlier owners whose WAL objects may still hold records
	// of this partition past the sealed end, oldest first. A new owner
	// fences and reads them; the first commit after its recovery clears
	// the list.
	WALOwners []string `json:"wal_owners,omitempty"`
	// Producers is the idempotent producers' state as of the sealed end:
	// each producer's last sealed batches (as many as a producer may have
	// in flight), so a retry of any of them after a takeover or restart is
	// still recognized.
	Producers []ProducerState `json:"producers,omitempty"`
}

// ProducerState is an idempotent producer's last sealed batch in one
// partition, and the batches before it.
type ProducerState struct {
	ID         int64 `json:"id"`
	Epoch      int16 `json:"epoch"`
	FirstSeq   int32 `json:"first_seq"`   // sequence of the last batch's first record
	Count      int32 `json:"count"`       // records in the last batch
	BaseOffset int64 `json:"base_offset"` // offset of the last batch's first record
	// LastMs is broker time (never a record's own timestamp) no earlier
	// than when the last batch was appended; expiry counts from it.
	LastMs int64 `json:"last_ms"`
	// Earlier are the batches before the last one, oldest first.
	Earlier []ProducerBatch `json:"earlier,omitempty"`
}

// ProducerBatch is one remembered batch of an idempotent producer.
type ProducerBatch struct {
	FirstSeq   int32 `json:"first_seq"`
	Count      int32 `json:"count"`
	BaseOffset int64 `json:"base_offset"`
}

// NextOffset is the offset after the last sealed record (the log start when
// nothing is sealed).
func (m *Manifest) NextOffset() int64 {
	if n := len(m.Segments); n > 0 {
		return m.Segments[n-1].LastOffset + 1
	}
	return m.LogStartOffset
}

// SealedBytes is the total size of the sealed segments.
func (m *Manifest) SealedBytes() int64 {
	var n int64
	for _, s := range m.Segments {
		n += s.Size
	}
	return n
}

// FindSegment returns the index of the segment holding offset, or of the
// first segment after it when offset falls in no segment; len(Segments) when
// offset is past every segment.
func (m *Manifest) FindSegment(offset int64) int {
	return sort.Search(len(m.Segments), func(i int) bool { return m.Segments[i].LastOffset >= offset })
}

// Clone returns a deep copy that can be modified and passed to Update.
func (m *Manifest) Clone() *Manifest {
	c := *m
	c.Segments = append([]SegmentRef(nil), m.Segments...)
	c.WALOwners = append([]string(nil), m.WALOwners...)
	c.Producers = append([]ProducerState(nil), m.Producers...)
	for i := range c.Producers {
		c.Producers[i].Earlier = append([]ProducerBatch(nil), c.Producers[i].Earlier...)
	}
	return &c
}

// Validate checks the manifest's invariants.
func (m *Manifest) Validate() error {
	if m.Version > ManifestVersion {
		return fmt.Errorf("%w: manifest version %d is newer than this build supports (%d): upgrade strata", ErrManifestVersion, m.Version, ManifestVersion)
	}
	if m.Version < 1 {
		return fmt.Errorf("%w: version %d", ErrManifestCorrupt, m.Version)
	}
	if m.LogStartOffset < 0 {
		return fmt.Errorf("%w: negative log start offset %d", ErrManifestCorrupt, m.LogStartOffset)
	}
	prev := int64(-1)
	for i, s := range m.Segments {
		switch {
		case s.Key == "":
			return fmt.Errorf("%w: segment %d has no key", ErrManifestCorrupt, i)
		case s.LastOffset < s.BaseOffset:
			return fmt.Errorf("%w: segment %d (%s) ends at %d before it starts at %d", ErrManifestCorrupt, i, s.Key, s.LastOffset, s.BaseOffset)
		case s.BaseOffset <= prev:
			return fmt.Errorf("%w: segment %d (%s) starts at %d, overlapping the previous one ending at %d", ErrManifestCorrupt, i, s.Key, s.BaseOffset, prev)
		case s.LastOffset < m.LogStartOffset:
			return fmt.Errorf("%w: segment %d (%s) lies wholly below the log start %d", ErrManifestCorrupt, i, s.Key, m.LogStartOffset)
		case s.MsgIDs < 0 || s.MsgIDs > s.LastOffset-s.BaseOffset+1:
			return fmt.Errorf("%w: segment %d (%s) counts %d records with message ids, outside 0 to its %d offsets", ErrManifestCorrupt, i, s.Key, s.MsgIDs, s.LastOffset-s.BaseOffset+1)
		}
		prev = s.LastOffset
	}
	if m.NextOffset() < m.LogStartOffset {
		return fmt.Errorf("%w: log start %d is past the sealed end %d", ErrManifestCorrupt, m.LogStartOffset, m.NextOffset())
	}
	if m.Owner != "" {
		if err := ValidateIncarnation(m.Owner); err != nil {
			return fmt.Errorf("%w: owner: %v", ErrManifestCorrupt, err)
		}
	}
	for _, o := range m.WALOwners {
		if err := ValidateIncarnation(o); err != nil {
			return fmt.Errorf("%w: earlier WAL owner: %v", ErrManifestCorrupt, err)
		}
	}
	for i, p := range m.Producers {
		for _, e := range p.Earlier {
			if e.Count <= 0 || e.FirstSeq < 0 || e.BaseOffset < 0 {
				return fmt.Errorf("%w: producer state %d (id %d) has an earlier batch with count %d, first sequence %d, base offset %d; want a positive count and no negative values",
					ErrManifestCorrupt, i, p.ID, e.Count, e.FirstSeq, e.BaseOffset)
			}
		}
		if len(p.Earlier) > 64 {
			return fmt.Errorf("%w: producer state %d (id %d) remembers %d batches, over 64", ErrManifestCorrupt, i, p.ID, len(p.Earlier)+1)
		}
		if p.Count <= 0 || p.FirstSeq < 0 || p.BaseOffset < 0 || p.Epoch < 0 {
			return fmt.Errorf("%w: producer state %d (id %d) has count %d, first sequence %d, base offset %d, epoch %d; want a positive count and no negative values",
				ErrManifestCorrupt, i, p.ID, p.Count, p.FirstSeq, p.BaseOffset, p.Epoch)
		}
	}
	return nil
}

// ValidateIncarnation checks a broker incarnation name, which becomes part
// of object keys (wal/<incarnation>/...): 1 to 128 characters of letters,
// digits, '.', '_' and '-', and not "." or "..".
func ValidateIncarnation(name string) error {
	if name == "" || len(name) > 128 || name == "." || name == ".." {
		return fmt.Errorf("incarnation name %q must be 1 to 128 characters and not \".\" or \"..\"", name)
	}
	for _, c := range name {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '.' || c == '_' || c == '-') {
			return fmt.Errorf("incarnation name %q has %q: use only letters, digits, '.', '_' and '-'", name, c)
		}
	}
	return nil
}

// DecodeManifest parses and validates manifest bytes.
func DecodeManifest(data []byte) (*Manifest, error) {
	var m Manifest
	dec := json.NewDecoder(bytes.NewReader(data))
	if err := dec.Decode(&m); err != nil {
		return nil, fmt.Errorf("%w: %v", ErrManifestCorrupt, err)
	}
	if err := m.Validate(); err != nil {
		return nil, err
	}
	return &m, nil
}

// EncodeManifest serializes a manifest.
func EncodeManifest(m *Manifest) ([]byte, error) {
	if err := m.Validate(); err != nil {
		return nil, err
	}
	return json.MarshalIndent(m, "", " ")
}

// ManifestStore reads and compare-and-swaps one partition's manifest.
// It holds no state besides the key; it is safe for concurrent use, though
// one partition should have one writer (the owner) at a time.
type ManifestStore struct {
	store tier.Store
	key   string
	retry tier.Backoff
}

// NewManifestStore returns the manifest store of (topic, partition).
func NewManifestStore(store tier.Store, topic string, partition int32) *ManifestStore {
	return &ManifestStore{store: store, key: ManifestKey(topic, partition), retry: tier.DefaultBackoff()}
}

// Key is the manifest's object key.
func (s *ManifestStore) Key() string { return s.key }

// Load reads the manifest and its ETag. A missing manifest is tier.ErrNotFound.
func (s *ManifestStore) Load(ctx context.Context) (*Manifest, string, error) {
	var (
		m    *Manifest
		etag string
	)
	err := s.retry.Do(ctx, func(ctx context.Context) error {
		rc, info, err := s.store.Get(ctx, s.key)
		if err != nil {
			return err
		}
		defer rc.Close()
		data, err := io.ReadAll(io.LimitReader(rc, maxManifestBytes+1))
		if err != nil {
			return err
		}
		if len(data) > maxManifestBytes {
			return fmt.Errorf("%w: %s is over %d bytes", ErrManifestCorrupt, s.key, maxManifestBytes)
		}
		dm, err := DecodeManifest(data)
		if err != nil {
			return fmt.Errorf("manifest %s: %w", s.key, err)
		}
		m, etag = dm, info.ETag
		return nil
	})
	if err != nil {
		return nil, "", fmt.Errorf("meta: load manifest %s: %w", s.key, err)
	}
	return m, etag, nil
}

// Create writes the first manifest of a partition. If one exists already the
// result is ErrFenced: somebody else created it first.
func (s *ManifestStore) Create(ctx context.Context, m *Manifest) (string, error) {
	return s.write(ctx, "", m)
}

// Update replaces the manifest whose ETag is prevETag with m, after setting
// m's Version, Generation (prev+1 is the caller's job: it must be the loaded
// generation + 1) and a fresh UpdateID. If the manifest changed since it was
// loaded, the result wraps tier.ErrFenced and the caller must stop writing the
// partition. A write whose response was lost is recognized by its UpdateID
// and reported as the success it was.
func (s *ManifestStore) Update(ctx context.Context, prevETag string, m *Manifest) (string, error) {
	if prevETag == "" {
		return "", fmt.Errorf("meta: update manifest %s: empty etag; use Create for a new manifest", s.key)
	}
	return s.write(ctx, prevETag, m)
}

func (s *ManifestStore) write(ctx context.Context, prevETag string, m *Manifest) (string, error) {
	m.Version = ManifestVersion
	m.UpdateID = randomID(8)
	data, err := EncodeManifest(m)
	if err != nil {
		return "", fmt.Errorf("meta: write manifest %s: %w", s.key, err)
	}
	etag, err := CAS{Store: s.store, Retry: s.retry, Limit: maxManifestBytes}.Swap(ctx, s.key, prevETag, data)
	var cerr *ConflictError
	if errors.As(err, &cerr) {
		if !cerr.Current.Exists() {
			return "", fmt.Errorf("%w: manifest %s was deleted (ours was based on %q)", tier.ErrFenced, s.key, prevETag)
		}
		cur, derr := DecodeManifest(cerr.Current.Data)
		if derr != nil {
			return "", fmt.Errorf("%w: manifest %s was replaced by one this build cannot read: %v", tier.ErrFenced, s.key, derr)
		}
		if prevETag == "" {
			return "", fmt.Errorf("%w: manifest %s already exists (epoch %d)", tier.ErrFenced, s.key, cur.Epoch)
		}
		return "", fmt.Errorf("%w: manifest %s is at generation %d epoch %d (ours was based on %q)", tier.ErrFenced, s.key, cur.Generation, cur.Epoch, prevETag)
	}
	if err != nil {
		return "", fmt.Errorf("meta: write manifest %s: %w", s.key, err)
	}
	return etag, nil
}

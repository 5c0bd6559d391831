package export

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"regexp"
	"strings"

	"github.com/stratalog/strata/columnar"
	"github.com/stratalog/strata/tier"
)

// ManifestVersion is the export manifest format this build writes and the
// newest it reads; a newer one is refused, never rewritten.
const ManifestVersion = 1

// maxManifestBytes bounds what a manifest read accepts: an entry is about
// 400 bytes, so this holds some 150,000 files of one partition.
const maxManifestBytes = 64 << 20

// ErrManifestCorrupt is wrapped when an export manifest cannot be decoded
// or breaks its invariants.
var ErrManifestCorrupt = errors.New("export: manifest corrupt")

// ErrManifestVersion is wrapped when an export manifest was written by a
// newer strata.
var ErrManifestVersion = errors.New("export: manifest format version not supported")

// Manifest is the export state of one partition of one topic identity at
// one target: the committed ranges, and at most one pending claim. It
// changes only by compare-and-swap (see the package doc).
//
// Invariants (Validate): ranges are sorted by First and disjoint; the
// claim overlaps none of them; every count is in range.
type Manifest struct {
	Version   int     `json:"version"`
	Topic     string  `json:"topic"`
	TopicID   string  `json:"topic_id,omitempty"`
	Partition int32   `json:"partition"`
	UpdateID  string  `json:"update_id"` // fresh in every version (meta.CAS's rule)
	Ranges    []Range `json:"ranges"`
	Pending   *Claim  `json:"pending,omitempty"`
}

// Range is one committed range of offsets and its file.
type Range struct {
	First int64  `json:"first"` // first offset (inclusive)
	Last  int64  `json:"last"`  // last offset (inclusive)
	Key   string `json:"key"`   // the Parquet file ("" when Lost)
	Date  string `json:"date"`  // UTC date of its records
	Claim string `json:"claim"` // the claim it was written for
	Rows  int64  `json:"rows"`  // records in the file
	Bytes int64  `json:"bytes"` // Parquet file bytes
	// SegmentBytes is the share of sealed segment bytes the range was
	// planned with (what FileBytes cuts by).
	SegmentBytes int64 `json:"segment_bytes"`
	MinTimestamp int64 `json:"min_timestamp,omitempty"` // ms since the epoch
	MaxTimestamp int64 `json:"max_timestamp,omitempty"`
	// Misfits counts the rows whose value did not fit the topic's value
	// schema (columnar's Report); MisfitOffsets names the first of them.
	Misfits       int64   `json:"misfits,omitempty"`
	MisfitOffsets []int64 `json:"misfit_offsets,omitempty"`
	CommittedMs   int64   `json:"committed_ms"` // wall clock of the committer
	// Lost is set when the range's records were deleted by retention
	// before any exporter stored its file: there is no file, and the
	// offsets are never exported. It says why.
	Lost string `json:"lost,omitempty"`
}

// Claim is the range an exporter is writing: fixed before any file is
// written, and finished (written and committed) by whoever finds it.
type Claim struct {
	ID    string `json:"id"` // random; also in the file's metadata
	First int64  `json:"first"`
	Last  int64  `json:"last"`
	Key   string `json:"key"`
	Date  string `json:"date"`
	// The row-group sizes the file is written with, so that whoever
	// finishes the claim writes the same file.
	RowGroupBytes int64  `json:"row_group_bytes"`
	RowGroupLimit int64  `json:"row_group_limit"`
	SegmentBytes  int64  `json:"segment_bytes"`
	By            string `json:"by"`         // the exporter that claimed it (informational)
	ClaimedMs     int64  `json:"claimed_ms"` // its wall clock then
}

var (
	topicNameRE = regexp.MustCompile(`^[a-zA-Z0-9._-]{1,200}$`)
	topicIDRE   = regexp.MustCompile(`^[0-9a-f]{1,64}$`)
	claimIDRE   = regexp.MustCompile(`^[0-9a-f]{1,64}$`)
	dateRE      = regexp.MustCompile(`^-?[0-9]{4,6}-[0-9]{2}-[0-9]{2}$`)
)

func corrupt(format string, args ...any) error {
	return fmt.Errorf("%w: %s", ErrManifestCorrupt, fmt.Sprintf(format, args...))
}

// checkSpan checks a range or claim's offsets, key and date.
func checkSpan(what string, first, last int64, key, date string, keyRequired bool) error {
	switch {
	case first < 0 || last < first:
		return corrupt("%s has offsets %d to %d; want 0 <= first <= last", what, first, last)
	case !dateRE.MatchString(date):
		return corrupt("%s has date %q; want YYYY-MM-DD", what, date)
	case key == "" && keyRequired:
		return corrupt("%s has no file key", what)
	}
	if key != "" {
		if err := tier.ValidateKey(key); err != nil {
			return corrupt("%s: %v", what, err)
		}
		if !strings.HasSuffix(key, ".parquet") {
			return corrupt("%s has key %q, not a .parquet file", what, key)
		}
	}
	return nil
}

// Validate checks the manifest's invariants.
func (m *Manifest) Validate() error {
	switch {
	case m.Version > ManifestVersion:
		return fmt.Errorf("%w: version %d, this build reads up to %d: upgrade strata", ErrManifestVersion, m.Version, ManifestVersion)
	case m.Version < 1:
		return corrupt("version %d", m.Version)
	case !topicNameRE.MatchString(m.Topic):
		return corrupt("topic %q is not a topic name", m.Topic)
	case m.TopicID != "" && !topicIDRE.MatchString(m.TopicID):
		return corrupt("topic id %q is not lowercase hex", m.TopicID)
	case m.Partition < 0:
		return corrupt("partition %d is negative", m.Partition)
	}
	prev := int64(-1)
	for i := range m.Ranges {
		r := &m.Ranges[i]
		what := fmt.Sprintf("range %d", i)
		if err := checkSpan(what, r.First, r.Last, r.Key, r.Date, r.Lost == ""); err != nil {
			return err
		}
		span := r.Last - r.First + 1
		switch {
		case r.First <= prev:
			return corrupt("%s starts at %d, not after the previous range's end %d", what, r.First, prev)
		case r.Lost != "" && r.Key != "":
			return corrupt("%s is marked lost but names file %q", what, r.Key)
		case !claimIDRE.MatchString(r.Claim):
			return corrupt("%s has claim id %q", what, r.Claim)
		case r.Rows < 0 || r.Rows > span || r.Bytes < 0 || r.SegmentBytes < 0:
			return corrupt("%s counts %d rows and %d bytes (%d segment bytes) over %d offsets", what, r.Rows, r.Bytes, r.SegmentBytes, span)
		case r.Misfits < 0 || r.Misfits > r.Rows || len(r.MisfitOffsets) > columnar.MaxReportedOffsets || int64(len(r.MisfitOffsets)) > r.Misfits:
			return corrupt("%s counts %d misfits and names %d of them, for %d rows", what, r.Misfits, len(r.MisfitOffsets), r.Rows)
		case r.MinTimestamp > r.MaxTimestamp:
			return corrupt("%s has timestamps %d to %d", what, r.MinTimestamp, r.MaxTimestamp)
		}
		for _, o := range r.MisfitOffsets {
			if o < r.First || o > r.Last {
				return corrupt("%s names misfit offset %d outside %d to %d", what, o, r.First, r.Last)
			}
		}
		prev = r.Last
	}
	if c := m.Pending; c != nil {
		if err := checkSpan("the pending claim", c.First, c.Last, c.Key, c.Date, true); err != nil {
			return err
		}
		switch {
		case !claimIDRE.MatchString(c.ID):
			return corrupt("the pending claim has id %q", c.ID)
		case c.RowGroupBytes <= 0 || c.RowGroupLimit < c.RowGroupBytes || c.SegmentBytes < 0:
			return corrupt("the pending claim has row groups of %d to %d bytes and %d segment bytes", c.RowGroupBytes, c.RowGroupLimit, c.SegmentBytes)
		case len(c.By) > 256:
			return corrupt("the pending claim's exporter name is %d bytes", len(c.By))
		}
		for i := range m.Ranges {
			if r := &m.Ranges[i]; c.First <= r.Last && r.First <= c.Last {
				return corrupt("the pending claim %d to %d overlaps committed range %d to %d", c.First, c.Last, r.First, r.Last)
			}
		}
	}
	return nil
}

// DecodeManifest parses and validates an export manifest.
func DecodeManifest(data []byte) (*Manifest, error) {
	if len(data) > maxManifestBytes {
		return nil, corrupt("%d bytes, over %d", len(data), maxManifestBytes)
	}
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	var m Manifest
	if err := dec.Decode(&m); err != nil {
		// A newer format may add fields: say so rather than "corrupt".
		var v struct {
			Version int `json:"version"`
		}
		if json.Unmarshal(data, &v) == nil && v.Version > ManifestVersion {
			return nil, fmt.Errorf("%w: version %d, this build reads up to %d: upgrade strata", ErrManifestVersion, v.Version, ManifestVersion)
		}
		return nil, corrupt("%v", err)
	}
	if dec.More() {
		return nil, corrupt("data after the manifest object")
	}
	if err := m.Validate(); err != nil {
		return nil, err
	}
	return &m, nil
}

// EncodeManifest validates and serializes a manifest.
func EncodeManifest(m *Manifest) ([]byte, error) {
	if err := m.Validate(); err != nil {
		return nil, err
	}
	return json.MarshalIndent(m, "", " ")
}

// Covered counts the offsets in [from, to) that committed ranges cover.
func (m *Manifest) Covered(from, to int64) int64 {
	var n int64
	for _, r := range m.Ranges {
		lo, hi := max(r.First, from), min(r.Last+1, to)
		if hi > lo {
			n += hi - lo
		}
	}
	return n
}

// nextGap returns the first offset s >= from below to that no committed
// range covers, and the end (exclusive) of the gap it starts; ok is false
// when [from, to) is covered.
func (m *Manifest) nextGap(from, to int64) (s, end int64, ok bool) {
	s = from
	for _, r := range m.Ranges {
		if r.Last < s {
			continue
		}
		if r.First > s {
			return s, min(r.First, to), s < to
		}
		s = r.Last + 1
	}
	return s, to, s < to
}

// commit returns a copy of m with the range r appended (in order) and the
// claim cleared.
func (m *Manifest) commit(r Range) *Manifest {
	c := *m
	c.Pending = nil
	c.Ranges = make([]Range, 0, len(m.Ranges)+1)
	placed := false
	for _, x := range m.Ranges {
		if !placed && x.First > r.First {
			c.Ranges = append(c.Ranges, r)
			placed = true
		}
		c.Ranges = append(c.Ranges, x)
	}
	if !placed {
		c.Ranges = append(c.Ranges, r)
	}
	return &c
}

package fetch

import (
	"container/list"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/sync/singleflight"

	"github.com/stratalog/strata/meta"
	"github.com/stratalog/strata/segment"
	"github.com/stratalog/strata/tier"
)

// CacheConfig bounds and tunes the cold-read cache.
type CacheConfig struct {
	// MemoryBytes bounds the compressed block bytes held in memory.
	// Default 256 MiB.
	MemoryBytes int64
	// DiskBytes bounds the block bytes kept on local disk under Dir; 0
	// disables the disk level. Default 0.
	DiskBytes int64
	// Dir holds the disk level; required when DiskBytes > 0. Its contents
	// are wiped at NewCache: the cache is never trusted across restarts.
	Dir string
	// SpanBytes caps one ranged GET: a miss loads the missing block and the
	// uncached blocks after it, up to this many bytes, in one request.
	// Default 4 MiB.
	SpanBytes int64
	// ReadAheadSpans is how many spans ahead of a sequential reader are
	// loaded in the background. 0 disables read-ahead. Default 2.
	ReadAheadSpans int
	// MaxConcurrentGets is the cold-read budget: ranged GETs in flight at
	// once, shared by all readers of this cache. Read-ahead only uses a slot
	// that is free; it never waits for one. Default 8.
	MaxConcurrentGets int
	// FooterEntries bounds how many segment footers are cached. Default 4096.
	FooterEntries int
	// DecodedBytes bounds the decoded (decompressed) blocks kept in memory.
	// Read-ahead decodes the blocks it loads on its own goroutine, so a
	// sequential replay decompresses on a second core. Default 64 MiB.
	DecodedBytes int64
	// GetTimeout bounds one ranged GET. Default 30s.
	GetTimeout time.Duration
}

// DefaultCacheConfig returns the defaults described on CacheConfig.
func DefaultCacheConfig() CacheConfig {
	return CacheConfig{
		MemoryBytes:       256 << 20,
		SpanBytes:         4 << 20,
		ReadAheadSpans:    2,
		MaxConcurrentGets: 8,
		FooterEntries:     4096,
		DecodedBytes:      64 << 20,
		GetTimeout:        30 * time.Second,
	}
}

// Validate reports the first invalid field.
func (c *CacheConfig) Validate() error {
	switch {
	case c.MemoryBytes <= 0:
		return fmt.Errorf("fetch: cache config: MemoryBytes %d must be positive", c.MemoryBytes)
	case c.DiskBytes < 0:
		return fmt.Errorf("fetch: cache config: DiskBytes %d must not be negative", c.DiskBytes)
	case c.DiskBytes > 0 && c.Dir == "":
		return errors.New("fetch: cache config: Dir is required when DiskBytes > 0")
	case c.SpanBytes <= 0 || c.MaxConcurrentGets <= 0 || c.FooterEntries <= 0 || c.GetTimeout <= 0:
		return errors.New("fetch: cache config: SpanBytes, MaxConcurrentGets, FooterEntries and GetTimeout must be positive")
	case c.ReadAheadSpans < 0 || c.DecodedBytes < 0:
		return errors.New("fetch: cache config: ReadAheadSpans and DecodedBytes must not be negative")
	}
	return nil
}

// CacheStats are cumulative counters.
type CacheStats struct {
	Hits          int64 // block lookups served from memory or disk
	DiskHits      int64 // of which from disk
	Misses        int64 // block lookups that waited for a GET
	Gets          int64 // ranged GETs issued (blocks and footers)
	BytesFetched  int64 // bytes those GETs returned
	Prefetches    int64 // spans loaded by read-ahead
	MemoryBytes   int64 // compressed block bytes in memory now
	DecodedBytes  int64 // estimated size of the decoded blocks in memory now
	DiskBytes     int64 // bytes on disk now
	Evictions     int64
	FooterLoads   int64
	FooterEntries int64
}

type blockKey struct {
	seg string
	idx int
}

type blockEntry struct {
	key  blockKey
	data []byte
}

type diskEntry struct {
	key  blockKey
	size int64
}

// flight is one span load in progress; waiters block on done.
type flight struct {
	done   chan struct{}
	blocks map[int][]byte // set before done is closed
	err    error
}

// Cache is the shared cold-read cache of one broker: segment footers and
// compressed blocks, in memory and optionally on disk.
type Cache struct {
	cfg  CacheConfig
	sem  chan struct{} // MaxConcurrentGets slots
	ctx  context.Context
	stop context.CancelFunc
	wg   sync.WaitGroup // read-ahead goroutines

	footers singleflight.Group

	mu struct {
		sync.Mutex
		mem      map[blockKey]*list.Element // of *blockEntry
		memLRU   *list.List                 // front = most recent
		memBytes int64
		disk     map[blockKey]*list.Element // of *diskEntry
		diskLRU  *list.List
		diskSize int64
		inflight map[blockKey]*flight
		footer   map[string]*list.Element // of *footerEntry
		footLRU  *list.List
		dec      map[blockKey]*list.Element // of *decodedEntry
		decLRU   *list.List
		decBytes int64
	}

	hits, diskHits, misses, gets, fetched, prefetches, evictions, footerLoads atomic.Int64
	closeOnce                                                                 sync.Once
}

type decodedEntry struct {
	key     blockKey
	batches []segment.Batch
	size    int64
}

type footerEntry struct {
	key    string
	footer *segment.Footer
}

// NewCache builds a cache. With a disk level, Dir is created and emptied.
func NewCache(cfg CacheConfig) (*Cache, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if cfg.DiskBytes > 0 {
		if err := os.RemoveAll(cfg.Dir); err != nil {
			return nil, fmt.Errorf("fetch: clear cache dir: %w", err)
		}
		if err := os.MkdirAll(cfg.Dir, 0o755); err != nil {
			return nil, fmt.Errorf("fetch: create cache dir: %w", err)
		}
	}
	c := &Cache{cfg: cfg, sem: make(chan struct{}, cfg.MaxConcurrentGets)}
	c.ctx, c.stop = context.WithCancel(context.Background())
	c.mu.mem = make(map[blockKey]*list.Element)
	c.mu.memLRU = list.New()
	c.mu.disk = make(map[blockKey]*list.Element)
	c.mu.diskLRU = list.New()
	c.mu.inflight = make(map[blockKey]*flight)
	c.mu.footer = make(map[string]*list.Element)
	c.mu.footLRU = list.New()
	c.mu.dec = make(map[blockKey]*list.Element)
	c.mu.decLRU = list.New()
	return c, nil
}

// Close stops read-ahead and waits for it. It is idempotent. The cache must
// not be used afterwards.
func (c *Cache) Close() error {
	c.closeOnce.Do(func() {
		c.stop()
		c.wg.Wait()
	})
	return nil
}

// Stats returns the counters.
func (c *Cache) Stats() CacheStats {
	c.mu.Lock()
	mem, disk, fe, dec := c.mu.memBytes, c.mu.diskSize, int64(c.mu.footLRU.Len()), c.mu.decBytes
	c.mu.Unlock()
	return CacheStats{
		Hits: c.hits.Load(), DiskHits: c.diskHits.Load(), Misses: c.misses.Load(),
		Gets: c.gets.Load(), BytesFetched: c.fetched.Load(), Prefetches: c.prefetches.Load(),
		MemoryBytes: mem, DecodedBytes: dec, DiskBytes: disk, Evictions: c.evictions.Load(),
		FooterLoads: c.footerLoads.Load(), FooterEntries: fe,
	}
}

// countingRange adapts a BucketReader object to segment.RangeReader.
type countingRange struct {
	c   *Cache
	src tier.BucketReader
	key string
}

func (r countingRange) ReadRange(ctx context.Context, off, length int64) ([]byte, error) {
	return r.c.getRange(ctx, r.src, r.key, off, length)
}

// getRange performs one ranged GET under the cold-read budget.
func (c *Cache) getRange(ctx context.Context, src tier.BucketReader, key string, off, length int64) ([]byte, error) {
	select {
	case c.sem <- struct{}{}:
	case <-ctx.Done():
		return nil, ctx.Err()
	}
	defer func() { <-c.sem }()
	return c.doGet(ctx, src, key, off, length)
}

func (c *Cache) doGet(ctx context.Context, src tier.BucketReader, key string, off, length int64) ([]byte, error) {
	ctx, cancel := context.WithTimeout(ctx, c.cfg.GetTimeout)
	defer cancel()
	c.gets.Add(1)
	rc, err := src.GetRange(ctx, key, off, length)
	if err != nil {
		return nil, err
	}
	defer rc.Close()
	buf := make([]byte, length)
	n, err := io.ReadFull(rc, buf)
	c.fetched.Add(int64(n))
	if err != nil {
		return nil, fmt.Errorf("fetch: read %s [%d,+%d): %w", key, off, length, err)
	}
	return buf, nil
}

// Footer returns the footer of a sealed segment, loading it (one or two
// ranged GETs) on a miss.
func (c *Cache) Footer(ctx context.Context, src tier.BucketReader, seg meta.SegmentRef) (*segment.Footer, error) {
	c.mu.Lock()
	if el, ok := c.mu.footer[seg.Key]; ok {
		c.mu.footLRU.MoveToFront(el)
		c.mu.Unlock()
		return el.Value.(*footerEntry).footer, nil
	}
	c.mu.Unlock()
	v, err, _ := c.footers.Do(seg.Key, func() (any, error) {
		// Detached from one caller's cancellation: others may share it.
		lctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), c.cfg.GetTimeout)
		defer cancel()
		c.footerLoads.Add(1)
		r, err := segment.Open(lctx, countingRange{c, src, seg.Key}, seg.Size)
		if err != nil {
			return nil, fmt.Errorf("fetch: open segment %s: %w", seg.Key, err)
		}
		f := r.Footer()
		c.mu.Lock()
		if _, ok := c.mu.footer[seg.Key]; !ok {
			c.mu.footer[seg.Key] = c.mu.footLRU.PushFront(&footerEntry{seg.Key, f})
			for c.mu.footLRU.Len() > c.cfg.FooterEntries {
				old := c.mu.footLRU.Remove(c.mu.footLRU.Back()).(*footerEntry)
				delete(c.mu.footer, old.key)
			}
		}
		c.mu.Unlock()
		return f, nil
	})
	if err != nil {
		return nil, err
	}
	return v.(*segment.Footer), nil
}

// Block returns block i of the segment as stored (compressed, with its block
// header), from the cache or with one ranged GET that also loads the
// uncached blocks after it, up to SpanBytes.
func (c *Cache) Block(ctx context.Context, src tier.BucketReader, seg string, f *segment.Footer, i int) ([]byte, error) {
	return c.block(ctx, src, seg, f, i, true)
}

// StoredBlock is Block for a reader that sends blocks as stored: a span it
// loads is not decoded ahead (nothing on the broker decompresses it).
func (c *Cache) StoredBlock(ctx context.Context, src tier.BucketReader, seg string, f *segment.Footer, i int) ([]byte, error) {
	return c.block(ctx, src, seg, f, i, false)
}

// block is Block; decodeAhead says whether a span it loads decodes the
// blocks after i for the decoded-block cache.
func (c *Cache) block(ctx context.Context, src tier.BucketReader, seg string, f *segment.Footer, i int, decodeAhead bool) ([]byte, error) {
	if i < 0 || i >= len(f.Blocks) {
		return nil, fmt.Errorf("fetch: block %d of %s out of range (%d blocks)", i, seg, len(f.Blocks))
	}
	k := blockKey{seg, i}
	for {
		data, fl, diskHit := c.lookup(k)
		if data != nil {
			c.hits.Add(1)
			return data, nil
		}
		if diskHit {
			if data, err := c.readDisk(k); err == nil {
				c.hits.Add(1)
				c.diskHits.Add(1)
				c.insertMem(k, data)
				return data, nil
			}
			c.dropDisk(k) // unreadable cache file: forget it and load
			continue
		}
		c.misses.Add(1)
		if fl == nil {
			fl = c.startSpan(src, seg, f, i, false, decodeAhead)
			if fl == nil {
				continue // raced with another loader; look again
			}
		}
		select {
		case <-fl.done:
		case <-ctx.Done():
			return nil, ctx.Err()
		}
		if fl.err != nil {
			return nil, fl.err
		}
		if data := fl.blocks[i]; data != nil {
			return data, nil
		}
		// The flight did not cover i (it should); look again.
	}
}

// lookup finds k in memory, in flight, or on disk.
func (c *Cache) lookup(k blockKey) (data []byte, fl *flight, onDisk bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if el, ok := c.mu.mem[k]; ok {
		c.mu.memLRU.MoveToFront(el)
		return el.Value.(*blockEntry).data, nil, false
	}
	if fl, ok := c.mu.inflight[k]; ok {
		return nil, fl, false
	}
	if el, ok := c.mu.disk[k]; ok {
		c.mu.diskLRU.MoveToFront(el)
		return nil, nil, true
	}
	return nil, nil, false
}

// startSpan registers a flight for block i and the uncached blocks after it
// and starts loading them. For read-ahead (prefetch) it takes a GET slot
// only if one is free, and returns nil otherwise. It returns nil when block
// i is already cached or in flight. With decode, the loaded blocks a
// reader will want next are decoded into the decoded-block cache.
func (c *Cache) startSpan(src tier.BucketReader, seg string, f *segment.Footer, i int, prefetch, decode bool) *flight {
	c.mu.Lock()
	k := blockKey{seg, i}
	if _, ok := c.mu.mem[k]; ok {
		c.mu.Unlock()
		return nil
	}
	if _, ok := c.mu.inflight[k]; ok {
		c.mu.Unlock()
		return nil
	}
	if _, ok := c.mu.disk[k]; ok {
		c.mu.Unlock()
		return nil
	}
	j := i + 1
	span := f.Blocks[i].Len
	for j < len(f.Blocks) && span+f.Blocks[j].Len <= c.cfg.SpanBytes {
		kj := blockKey{seg, j}
		_, inMem := c.mu.mem[kj]
		_, inFlight := c.mu.inflight[kj]
		_, onDisk := c.mu.disk[kj]
		if inMem || inFlight || onDisk {
			break
		}
		span += f.Blocks[j].Len
		j++
	}
	if prefetch {
		select {
		case c.sem <- struct{}{}:
		default:
			c.mu.Unlock()
			return nil
		}
	}
	fl := &flight{done: make(chan struct{})}
	for b := i; b < j; b++ {
		c.mu.inflight[blockKey{seg, b}] = fl
	}
	c.mu.Unlock()

	load := func() {
		defer close(fl.done)
		if !prefetch {
			select {
			case c.sem <- struct{}{}:
			case <-c.ctx.Done():
				c.finishSpan(seg, f, i, j, fl, nil, c.ctx.Err())
				return
			}
		}
		defer func() { <-c.sem }()
		off := f.Blocks[i].Pos
		raw, err := c.doGet(c.ctx, src, seg, off, f.Blocks[j-1].Pos+f.Blocks[j-1].Len-off)
		c.finishSpan(seg, f, i, j, fl, raw, err)
		if err == nil && decode && c.cfg.DecodedBytes > 0 {
			// Decode ahead of the reader, on this goroutine: the reader
			// decodes the block it asked for (i) itself unless this was
			// read-ahead.
			from := i + 1
			if prefetch {
				from = i
			}
			for b := from; b < j && c.ctx.Err() == nil; b++ {
				if batches, err := segment.DecodeBlock(fl.blocks[b], f.Codec); err == nil {
					c.insertDecoded(blockKey{seg, b}, batches)
				}
			}
		}
	}
	c.wg.Add(1)
	go func() {
		defer c.wg.Done()
		load()
	}()
	if prefetch {
		c.prefetches.Add(1)
	}
	return fl
}

// finishSpan publishes a span's blocks (or its error) to the cache and the
// flight's waiters, and clears the flight, in that order under one lock, so
// a concurrent lookup sees the block either in flight or cached.
func (c *Cache) finishSpan(seg string, f *segment.Footer, i, j int, fl *flight, raw []byte, err error) {
	if err == nil {
		fl.blocks = make(map[int][]byte, j-i)
		base := f.Blocks[i].Pos
		for b := i; b < j; b++ {
			start := f.Blocks[b].Pos - base
			// Full slice expression: a block never aliases its neighbour's
			// capacity, so each can be evicted and reused on its own.
			fl.blocks[b] = raw[start : start+f.Blocks[b].Len : start+f.Blocks[b].Len]
		}
	}
	fl.err = err
	var spill []blockEntry
	c.mu.Lock()
	for b := i; b < j; b++ {
		k := blockKey{seg, b}
		delete(c.mu.inflight, k)
		if err == nil {
			spill = append(spill, c.insertMemLocked(k, fl.blocks[b])...)
		}
	}
	c.mu.Unlock()
	c.spillToDisk(spill)
}

// Batches returns block i decoded: from the decoded-block cache when
// read-ahead already decoded it, otherwise fetched (Block) and decoded.
// The batches are shared: callers must not modify them.
func (c *Cache) Batches(ctx context.Context, src tier.BucketReader, seg string, f *segment.Footer, i int) ([]segment.Batch, error) {
	k := blockKey{seg, i}
	c.mu.Lock()
	if el, ok := c.mu.dec[k]; ok {
		c.mu.decLRU.MoveToFront(el)
		c.mu.Unlock()
		c.hits.Add(1)
		return el.Value.(*decodedEntry).batches, nil
	}
	c.mu.Unlock()
	raw, err := c.Block(ctx, src, seg, f, i)
	if err != nil {
		return nil, err
	}
	batches, err := segment.DecodeBlock(raw, f.Codec)
	if err != nil {
		return nil, fmt.Errorf("fetch: segment %s block %d: %w", seg, i, err)
	}
	c.insertDecoded(k, batches)
	return batches, nil
}

// insertDecoded keeps decoded batches, evicting the least recently used
// beyond DecodedBytes.
func (c *Cache) insertDecoded(k blockKey, batches []segment.Batch) {
	if c.cfg.DecodedBytes == 0 {
		return
	}
	var size int64
	for bi := range batches {
		for ri := range batches[bi].Records {
			r := &batches[bi].Records[ri]
			size += int64(len(r.Key)+len(r.Value)) + 96
		}
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if _, ok := c.mu.dec[k]; ok {
		return
	}
	c.mu.dec[k] = c.mu.decLRU.PushFront(&decodedEntry{k, batches, size})
	c.mu.decBytes += size
	for c.mu.decBytes > c.cfg.DecodedBytes && c.mu.decLRU.Len() > 1 {
		e := c.mu.decLRU.Remove(c.mu.decLRU.Back()).(*decodedEntry)
		delete(c.mu.dec, e.key)
		c.mu.decBytes -= e.size
	}
}

// insertMem adds a block to the memory level.
func (c *Cache) insertMem(k blockKey, data []byte) {
	c.mu.Lock()
	spill := c.insertMemLocked(k, data)
	c.mu.Unlock()
	c.spillToDisk(spill)
}

// insertMemLocked adds a block and evicts the least recently used ones over
// the memory bound; it returns the evicted blocks for the disk level.
func (c *Cache) insertMemLocked(k blockKey, data []byte) []blockEntry {
	if el, ok := c.mu.mem[k]; ok {
		c.mu.memLRU.MoveToFront(el)
		return nil
	}
	c.mu.mem[k] = c.mu.memLRU.PushFront(&blockEntry{k, data})
	c.mu.memBytes += int64(len(data))
	var out []blockEntry
	for c.mu.memBytes > c.cfg.MemoryBytes && c.mu.memLRU.Len() > 1 {
		e := c.mu.memLRU.Remove(c.mu.memLRU.Back()).(*blockEntry)
		delete(c.mu.mem, e.key)
		c.mu.memBytes -= int64(len(e.data))
		c.evictions.Add(1)
		if c.cfg.DiskBytes > 0 {
			if _, ok := c.mu.disk[e.key]; !ok {
				out = append(out, *e)
			}
		}
	}
	return out
}

// spillToDisk writes blocks evicted from memory to the disk level.
// Failures only lose cache entries.
func (c *Cache) spillToDisk(blocks []blockEntry) {
	for _, e := range blocks {
		if int64(len(e.data)) > c.cfg.DiskBytes {
			continue
		}
		if err := os.WriteFile(c.diskPath(e.key), e.data, 0o644); err != nil {
			continue
		}
		var drop []blockKey
		c.mu.Lock()
		if _, ok := c.mu.disk[e.key]; !ok {
			c.mu.disk[e.key] = c.mu.diskLRU.PushFront(&diskEntry{e.key, int64(len(e.data))})
			c.mu.diskSize += int64(len(e.data))
		}
		for c.mu.diskSize > c.cfg.DiskBytes {
			d := c.mu.diskLRU.Remove(c.mu.diskLRU.Back()).(*diskEntry)
			delete(c.mu.disk, d.key)
			c.mu.diskSize -= d.size
			drop = append(drop, d.key)
		}
		c.mu.Unlock()
		for _, k := range drop {
			os.Remove(c.diskPath(k))
		}
	}
}

func (c *Cache) diskPath(k blockKey) string {
	h := sha256.Sum256([]byte(k.seg))
	return filepath.Join(c.cfg.Dir, hex.EncodeToString(h[:12])+"-"+strconv.Itoa(k.idx))
}

func (c *Cache) readDisk(k blockKey) ([]byte, error) {
	return os.ReadFile(c.diskPath(k))
}

func (c *Cache) dropDisk(k blockKey) {
	c.mu.Lock()
	if el, ok := c.mu.disk[k]; ok {
		c.mu.diskLRU.Remove(el)
		delete(c.mu.disk, k)
		c.mu.diskSize -= el.Value.(*diskEntry).size
	}
	c.mu.Unlock()
	os.Remove(c.diskPath(k))
}

// Prefetch starts loading up to ReadAheadSpans spans of blocks from block i
// on, in the background, using only free GET slots, and decodes them.
func (c *Cache) Prefetch(src tier.BucketReader, seg string, f *segment.Footer, i int) {
	c.prefetch(src, seg, f, i, true)
}

// PrefetchStored is Prefetch for a reader that sends blocks as stored:
// the spans are loaded, not decoded.
func (c *Cache) PrefetchStored(src tier.BucketReader, seg string, f *segment.Footer, i int) {
	c.prefetch(src, seg, f, i, false)
}

func (c *Cache) prefetch(src tier.BucketReader, seg string, f *segment.Footer, i int, decode bool) {
	for n := 0; n < c.cfg.ReadAheadSpans && i < len(f.Blocks); n++ {
		if c.ctx.Err() != nil {
			return
		}
		// Skip blocks already cached or in flight.
		for i < len(f.Blocks) {
			data, fl, onDisk := c.lookup(blockKey{seg, i})
			if data == nil && fl == nil && !onDisk {
				break
			}
			i++
		}
		if i >= len(f.Blocks) {
			return
		}
		if c.startSpan(src, seg, f, i, true, decode) == nil {
			return // no free slot: the reader is ahead of the budget
		}
		// Advance past the span just started.
		for i < len(f.Blocks) {
			if _, fl, _ := c.lookup(blockKey{seg, i}); fl == nil {
				break
			}
			i++
		}
	}
}

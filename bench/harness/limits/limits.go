// Package limits measures what this machine allows, in the same run as the
// workloads: sequential write+fsync bandwidth of the data disk, MinIO PUT
// and GET byte rates for the object sizes strata uses, and zstd / s2 speed
// on the workloads' own payload. Each strata figure is reported against one
// of these.
package limits

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"time"

	"github.com/stratalog/strata/bench/harness/hist"

	"github.com/klauspost/compress/s2"
	"github.com/klauspost/compress/zstd"

	"github.com/stratalog/strata/tier"
)

// Rate is one measured limit.
type Rate struct {
	Name    string  `json:"name"`
	MBPerS  float64 `json:"mb_per_s"`
	OpsPerS float64 `json:"ops_per_s,omitempty"`
	Bytes   int64   `json:"bytes"`
	Seconds float64 `json:"seconds"`
	Note    string  `json:"note,omitempty"`
}

func rate(name string, bytes int64, ops int, d time.Duration) Rate {
	return Rate{Name: name, MBPerS: float64(bytes) / 1e6 / d.Seconds(), OpsPerS: float64(ops) / d.Seconds(), Bytes: bytes, Seconds: d.Seconds()}
}

// DiskFsync writes writeSize-byte blocks sequentially to a new file in dir,
// fsyncing after each, for at most dur or maxBytes.
func DiskFsync(dir string, writeSize int, dur time.Duration, maxBytes int64) (Rate, error) {
	f, err := os.CreateTemp(dir, "fsync-*.bin")
	if err != nil {
		return Rate{}, err
	}
	defer os.Remove(f.Name())
	defer f.Close()
	buf := bytes.Repeat([]byte{0xa5}, writeSize)
	start := time.Now()
	var n int64
	ops := 0
	for time.Since(start) < dur && n < maxBytes {
		if _, err := f.Write(buf); err != nil {
			return Rate{}, err
		}
		if err := f.Sync(); err != nil {
			return Rate{}, err
		}
		n += int64(writeSize)
		ops++
	}
	r := rate(fmt.Sprintf("disk write+fsync %s", size(writeSize)), n, ops, time.Since(start))
	return r, nil
}

func size(n int) string {
	switch {
	case n >= 1<<20 && n%(1<<20) == 0:
		return fmt.Sprintf("%d MiB", n>>20)
	case n >= 1<<10 && n%(1<<10) == 0:
		return fmt.Sprintf("%d KiB", n>>10)
	}
	return fmt.Sprintf("%d B", n)
}

// ObjectStore PUTs count objects of objSize bytes (payload: data, repeated),
// then GETs them back whole, one request at a time; and GETs rangeSize
// ranges of them (strata's cold read span).
func ObjectStore(ctx context.Context, st tier.Store, data []byte, objSize, count, rangeSize int) (put, get, ranged Rate, err error) {
	body := make([]byte, 0, objSize)
	for len(body) < objSize {
		body = append(body, data[:min(len(data), objSize-len(body))]...)
	}
	keys := make([]string, count)
	start := time.Now()
	for i := range keys {
		keys[i] = fmt.Sprintf("limits/obj-%d-%d", time.Now().UnixNano(), i)
		if _, err = st.Put(ctx, keys[i], bytes.NewReader(body), int64(len(body))); err != nil {
			return
		}
	}
	put = rate("object PUT "+size(objSize), int64(objSize*count), count, time.Since(start))
	start = time.Now()
	var n int64
	for _, k := range keys {
		rc, _, e := st.Get(ctx, k)
		if e != nil {
			err = e
			return
		}
		m, e := io.Copy(io.Discard, rc)
		rc.Close()
		if e != nil {
			err = e
			return
		}
		n += m
	}
	get = rate("object GET "+size(objSize), n, count, time.Since(start))
	if rangeSize > 0 && rangeSize < objSize {
		start = time.Now()
		n, ops := int64(0), 0
		for _, k := range keys {
			for off := 0; off+rangeSize <= objSize; off += rangeSize {
				rc, e := st.GetRange(ctx, k, int64(off), int64(rangeSize))
				if e != nil {
					err = e
					return
				}
				m, _ := io.Copy(io.Discard, rc)
				rc.Close()
				n += m
				ops++
			}
		}
		ranged = rate("object ranged GET "+size(rangeSize), n, ops, time.Since(start))
	}
	for _, k := range keys {
		st.Delete(ctx, k)
	}
	return
}

// PutLatency PUTs count objects of objSize bytes (payload: data,
// repeated), one at a time (as strata's WAL writer stores one object per
// slot), stopping early after maxTime, and returns their latencies. The
// objects are deleted afterwards.
func PutLatency(ctx context.Context, st tier.Store, data []byte, objSize, count int, maxTime time.Duration) (hist.Summary, error) {
	body := make([]byte, 0, objSize)
	for len(body) < objSize {
		body = append(body, data[:min(len(data), objSize-len(body))]...)
	}
	h := hist.New()
	var keys []string
	defer func() {
		for _, k := range keys {
			st.Delete(context.Background(), k)
		}
	}()
	deadline := time.Now().Add(maxTime)
	for i := 0; i < count && (i == 0 || time.Now().Before(deadline)); i++ {
		k := fmt.Sprintf("limits/put-%d-%d", time.Now().UnixNano(), i)
		start := time.Now()
		if _, err := st.PutIfAbsent(ctx, k, bytes.NewReader(body), int64(len(body))); err != nil {
			return h.Summarize(), err
		}
		h.Record(time.Since(start))
		keys = append(keys, k)
	}
	return h.Summarize(), nil
}

// Codecs compresses and decompresses block (the workloads' payload) with
// zstd SpeedFastest (strata's default) and s2, for at least dur each.
// MB/s are of uncompressed bytes.
func Codecs(block []byte, dur time.Duration) ([]Rate, error) {
	enc, err := zstd.NewWriter(nil, zstd.WithEncoderLevel(zstd.SpeedFastest), zstd.WithEncoderConcurrency(1))
	if err != nil {
		return nil, err
	}
	dec, err := zstd.NewReader(nil, zstd.WithDecoderConcurrency(1))
	if err != nil {
		return nil, err
	}
	defer dec.Close()
	loop := func(name string, f func() error) (Rate, error) {
		start := time.Now()
		ops := 0
		for ops == 0 || time.Since(start) < dur {
			if err := f(); err != nil {
				return Rate{}, err
			}
			ops++
		}
		return rate(name, int64(len(block)*ops), ops, time.Since(start)), nil
	}
	zc := enc.EncodeAll(block, nil)
	sc := s2.Encode(nil, block)
	var out []Rate
	var buf []byte
	for _, c := range []struct {
		name string
		f    func() error
	}{
		{"zstd fastest encode", func() error { buf = enc.EncodeAll(block, buf[:0]); return nil }},
		{"zstd decode", func() error { var e error; buf, e = dec.DecodeAll(zc, buf[:0]); return e }},
		{"s2 encode", func() error { buf = s2.Encode(buf[:cap(buf)], block); return nil }},
		{"s2 decode", func() error { var e error; buf, e = s2.Decode(buf[:cap(buf)], sc); return e }},
	} {
		r, err := loop(c.name, c.f)
		if err != nil {
			return nil, err
		}
		switch c.name {
		case "zstd fastest encode":
			r.Note = fmt.Sprintf("ratio %.2fx", float64(len(block))/float64(len(zc)))
		case "s2 encode":
			r.Note = fmt.Sprintf("ratio %.2fx", float64(len(block))/float64(len(sc)))
		}
		out = append(out, r)
	}
	return out, nil
}

// TempDir makes a directory for the disk test next to the targets' data.
func TempDir(parent string) (string, error) { return os.MkdirTemp(parent, "limits-") }

var _ = filepath.Join

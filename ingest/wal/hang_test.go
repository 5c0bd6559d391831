package wal

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"io"
	"testing"
	"time"

	"github.com/stratalog/strata/internal/faultproxy"
	"github.com/stratalog/strata/internal/testenv"
	"github.com/stratalog/strata/tier"
)

// TestHungPutCostsOneDeadline: when the object store's connections go
// silent (a lost NAT or load-balancer state: requests are never answered,
// not even after the store is healthy again), each WAL PUT attempt ends at
// its own deadline, so the pending records of every partition are stored
// by the first attempt after the hang ends, not after minio-go's
// one-minute header timeout. With HangResponses the hung attempts applied
// (the backend stored the object, the answer never came): the retry finds
// the object and reads it back as ours.
//
// The store's deadline is 500 ms per request here; the test waits at most
// 20 s for the records (the old code waited 60 s for the first hung PUT).
// Needs MinIO (scripts/with-minio.sh); under CI=true a missing MinIO fails.
func TestHungPutCostsOneDeadline(t *testing.T) {
	for _, tc := range []struct {
		name     string
		hang     faultproxy.Hang
		readBack bool // the retry finds the object and reads it back
	}{
		{"requests", faultproxy.HangRequests, false},  // never reach the store
		{"responses", faultproxy.HangResponses, true}, // applied, answer lost
	} {
		t.Run(tc.name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			direct, proxied, p := hungStores(t, ctx, tier.Deadline{Base: 500 * time.Millisecond})
			inc := NewIncarnation(time.Now())
			w, err := NewWriter(Config{Store: proxied, Incarnation: inc, FlushInterval: 5 * time.Millisecond})
			if err != nil {
				t.Fatal(err)
			}
			defer func() {
				// Bounded: a failing run may leave a PUT hung.
				c, cancel := context.WithTimeout(context.Background(), 5*time.Second)
				defer cancel()
				w.Close(c)
			}()

			p.SetHang(tc.hang)
			a := newAcks()
			add(t, w, "t", 0, batch(0, 3, "a"), a.sink("t/0"))
			add(t, w, "t", 1, batch(0, 2, "b"), a.sink("t/1"))
			// Three attempts hang, each given up at its deadline: the
			// store stays silent for a while (1.5 s and more).
			waitFor(t, "three PUT attempts to hang", func() bool { return p.Stats().Hung >= 3 })
			if a.get("t/0") != 0 || a.get("t/1") != 0 {
				t.Fatalf("acked while every request hung: t/0 %d, t/1 %d", a.get("t/0"), a.get("t/1"))
			}
			healed := p.Stats()
			p.SetHang(faultproxy.NoHang) // healthy again; hung connections stay silent
			waitFor(t, "both partitions durable after the hang ends", func() bool {
				return a.get("t/0") == 3 && a.get("t/1") == 2
			})
			// The two partitions share one object or, when the flusher
			// started the first upload before the second add, take one
			// each (the first record after a quiet spell goes at once).
			st := w.Stats()
			if st.Objects < 1 || st.Objects > 2 || st.Attempts < st.Objects+3 || st.Failures < 3 {
				t.Errorf("writer stats %+v: want 1 or 2 objects after at least 3 failed attempts", st)
			}
			if err := w.Err(); err != nil {
				t.Errorf("writer failed: %v", err)
			}
			if reads := p.Stats().Requests["GET"] - healed.Requests["GET"]; (reads > 0) != tc.readBack {
				t.Errorf("%d reads after the hang, want a read-back: %v", reads, tc.readBack)
			}
			got := map[string]string{}
			for seq := range uint64(st.Objects) {
				for k, v := range readWALObject(t, ctx, direct, Key(inc, seq)) {
					if got[k] != "" {
						t.Errorf("%s stored in two objects", k)
					}
					got[k] = v
				}
			}
			if got["t/0"] != "a-0,a-1,a-2" || got["t/1"] != "b-0,b-1" {
				t.Errorf("stored objects hold %v", got)
			}
		})
	}
}

// hungStores returns a store on a fresh bucket of the test MinIO, and one
// on the same bucket through a fault proxy with request deadlines d.
func hungStores(t *testing.T, ctx context.Context, d tier.Deadline) (direct, proxied tier.Store, p *faultproxy.Proxy) {
	t.Helper()
	ep := testenv.MinIO(t)
	p, err := faultproxy.Start(faultproxy.Config{Target: "http://" + ep.Addr})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { p.Close() })
	b := make([]byte, 6)
	rand.Read(b)
	cfg := tier.S3Config{
		Endpoint: ep.Addr, Bucket: "strata-wal-" + hex.EncodeToString(b),
		AccessKey: ep.AccessKey, SecretKey: ep.SecretKey, Insecure: true, CreateBucket: true,
	}
	open := func(cfg tier.S3Config) tier.Store {
		s, err := tier.NewS3Store(ctx, cfg)
		if err != nil {
			t.Fatalf("connect to the test MinIO at %s: %v", cfg.Endpoint, err)
		}
		t.Cleanup(func() { s.Close() })
		return s
	}
	direct = open(cfg)
	cfg.Endpoint, cfg.CreateBucket, cfg.Deadline = p.Addr(), false, d
	return direct, open(cfg), p
}

// readWALObject reads a whole WAL object and returns, per "topic/partition",
// its record values joined by commas.
func readWALObject(t *testing.T, ctx context.Context, s tier.Store, key string) map[string]string {
	t.Helper()
	rc, _, err := s.Get(ctx, key)
	if err != nil {
		t.Fatalf("read %s: %v", key, err)
	}
	data, err := io.ReadAll(rc)
	rc.Close()
	if err != nil {
		t.Fatalf("read %s: %v", key, err)
	}
	h, err := DecodeHeader(data)
	if err != nil {
		t.Fatalf("%s: %v", key, err)
	}
	out := map[string]string{}
	for _, e := range h.Entries {
		start := h.DataStart + int64(e.Pos)
		batches, err := DecodeEntry(e, data[start:start+int64(e.Len)])
		if err != nil {
			t.Fatalf("%s: %v", key, err)
		}
		name := fmt.Sprintf("%s/%d", e.Topic, e.Partition)
		for _, b := range batches {
			for _, r := range b.Records {
				if out[name] != "" {
					out[name] += ","
				}
				out[name] += string(r.Value)
			}
		}
	}
	return out
}

// silentStore is a store whose PutIfAbsent, while hung, applies (or not)
// and then never returns until its context ends: a store with no request
// deadline of its own, but a Deadliner, so the writer's own per-attempt
// deadline is what ends the wait.
type silentStore struct {
	tier.Store
	apply   bool          // a hung put applies before it goes silent
	hung    chan bool     // receives at each hung put; true: keep hanging
	timeout time.Duration // the deadline it reports
}

func (s *silentStore) RequestTimeout(int64) time.Duration { return s.timeout }

func (s *silentStore) PutIfAbsent(ctx context.Context, key string, r io.Reader, size int64) (tier.ObjectInfo, error) {
	if !<-s.hung {
		return s.Store.PutIfAbsent(ctx, key, r, size)
	}
	if s.apply {
		s.Store.PutIfAbsent(ctx, key, r, size)
	}
	<-ctx.Done()
	return tier.ObjectInfo{}, ctx.Err()
}

// TestPutAttemptDeadline: the writer bounds each PUT attempt by the
// store's request deadline itself, so a store that never answers costs one
// deadline per attempt, also where the store has no deadline of its own;
// a hung attempt that applied is resolved by reading it back.
func TestPutAttemptDeadline(t *testing.T) {
	for _, apply := range []bool{false, true} {
		t.Run(fmt.Sprintf("applied=%v", apply), func(t *testing.T) {
			mem := tier.NewMemStore()
			s := &silentStore{Store: mem, apply: apply, hung: make(chan bool), timeout: 50 * time.Millisecond}
			inc := NewIncarnation(time.Now())
			w, err := NewWriter(Config{Store: s, Incarnation: inc, FlushInterval: time.Millisecond})
			if err != nil {
				t.Fatal(err)
			}
			defer func() {
				c, cancel := context.WithTimeout(context.Background(), 5*time.Second)
				defer cancel()
				w.Close(c) // bounded: a failing run leaves a PUT hung
			}()
			a := newAcks()
			add(t, w, "t", 0, batch(0, 2, "a"), a.sink("t/0"))
			next := func(hang bool) {
				t.Helper()
				select {
				case s.hung <- hang:
				case <-time.After(20 * time.Second):
					t.Fatal("no new PUT attempt in 20 s: the hung one still waits")
				}
			}
			for range 3 {
				next(true) // each hung attempt must end for the next to come
			}
			if a.get("t/0") != 0 {
				t.Fatal("acked while every attempt hung")
			}
			next(false)
			waitFor(t, "the records durable after the hang", func() bool { return a.get("t/0") == 2 })
			if st := w.Stats(); st.Objects != 1 || st.Attempts != 4 || st.Failures != 3 {
				t.Errorf("writer stats %+v: want 1 object after 3 failed attempts", st)
			}
			got := readWALObject(t, context.Background(), mem, Key(inc, 0))
			if got["t/0"] != "a-0,a-1" {
				t.Errorf("stored object holds %v", got)
			}
		})
	}
}

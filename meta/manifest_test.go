package meta_test

import (
	"context"
	"errors"
	"strings"
	"sync"
	"testing"

	"github.com/stratalog/strata/internal/storetest"
	"github.com/stratalog/strata/meta"
	"github.com/stratalog/strata/tier"
)

func TestManifestValidate(t *testing.T) {
	seg := func(base, last int64) meta.SegmentRef {
		return meta.SegmentRef{Key: "k", BaseOffset: base, LastOffset: last}
	}
	for _, tc := range []struct {
		name string
		m    meta.Manifest
		want error
	}{
		{"empty", meta.Manifest{Version: 1}, nil},
		{"tiling", meta.Manifest{Version: 1, Segments: []meta.SegmentRef{seg(0, 9), seg(10, 19)}}, nil},
		{"gap is allowed", meta.Manifest{Version: 1, Segments: []meta.SegmentRef{seg(0, 9), seg(15, 19)}}, nil},
		{"newer version", meta.Manifest{Version: 2}, meta.ErrManifestVersion},
		{"version 0", meta.Manifest{Version: 0}, meta.ErrManifestCorrupt},
		{"overlap", meta.Manifest{Version: 1, Segments: []meta.SegmentRef{seg(0, 9), seg(9, 19)}}, meta.ErrManifestCorrupt},
		{"reversed", meta.Manifest{Version: 1, Segments: []meta.SegmentRef{seg(10, 5)}}, meta.ErrManifestCorrupt},
		{"below log start", meta.Manifest{Version: 1, LogStartOffset: 20, Segments: []meta.SegmentRef{seg(0, 9)}}, meta.ErrManifestCorrupt},
		{"log start past end", meta.Manifest{Version: 1, LogStartOffset: 30, Segments: []meta.SegmentRef{seg(0, 29)}}, meta.ErrManifestCorrupt},
		{"no key", meta.Manifest{Version: 1, Segments: []meta.SegmentRef{{BaseOffset: 0, LastOffset: 1}}}, meta.ErrManifestCorrupt},
		{"message ids", meta.Manifest{Version: 1, Segments: []meta.SegmentRef{{Key: "k", LastOffset: 1, MsgIDs: 2}}}, nil},
		{"more message ids than records", meta.Manifest{Version: 1, Segments: []meta.SegmentRef{{Key: "k", LastOffset: 1, MsgIDs: 3}}}, meta.ErrManifestCorrupt},
		{"negative message ids", meta.Manifest{Version: 1, Segments: []meta.SegmentRef{{Key: "k", LastOffset: 1, MsgIDs: -1}}}, meta.ErrManifestCorrupt},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.m.Validate()
			if tc.want == nil && err != nil || tc.want != nil && !errors.Is(err, tc.want) {
				t.Fatalf("Validate() = %v, want %v", err, tc.want)
			}
		})
	}
	err := (&meta.Manifest{Version: 7}).Validate()
	if !strings.Contains(err.Error(), "upgrade strata") {
		t.Fatalf("newer-version error should say what to do: %v", err)
	}
}

func TestDecodeManifestRejectsGarbage(t *testing.T) {
	for _, in := range []string{"", "{", "null", `{"version":"x"}`, `[1,2]`, `{"version":1,"segments":[{"key":"a","base_offset":5,"last_offset":1}]}`} {
		if _, err := meta.DecodeManifest([]byte(in)); err == nil {
			t.Errorf("DecodeManifest(%q) succeeded", in)
		}
	}
}

func TestManifestCreateLoadUpdate(t *testing.T) {
	storetest.ForEach(t, func(t *testing.T, s tier.Store) {
		ctx := context.Background()
		ms := meta.NewManifestStore(s, "t", 3)
		if _, _, err := ms.Load(ctx); !errors.Is(err, tier.ErrNotFound) {
			t.Fatalf("load of a missing manifest: %v, want ErrNotFound", err)
		}
		m := &meta.Manifest{Topic: "t", Partition: 3, Epoch: 1, Generation: 1}
		etag, err := ms.Create(ctx, m)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := ms.Create(ctx, &meta.Manifest{Topic: "t", Partition: 3, Epoch: 1, Generation: 1}); !errors.Is(err, tier.ErrFenced) {
			t.Fatalf("second create: %v, want ErrFenced", err)
		}
		got, etag2, err := ms.Load(ctx)
		if err != nil || etag2 != etag || got.Epoch != 1 || got.Topic != "t" {
			t.Fatalf("load: %+v %q %v", got, etag2, err)
		}
		next := got.Clone()
		next.Generation++
		next.Segments = append(next.Segments, meta.SegmentRef{Key: "seg-0", BaseOffset: 0, LastOffset: 99, Size: 10})
		etag3, err := ms.Update(ctx, etag, next)
		if err != nil {
			t.Fatal(err)
		}
		// A writer still holding the old etag is fenced.
		stale := got.Clone()
		stale.Generation++
		if _, err := ms.Update(ctx, etag, stale); !errors.Is(err, tier.ErrFenced) {
			t.Fatalf("update from a stale etag: %v, want ErrFenced", err)
		}
		final, etag4, err := ms.Load(ctx)
		if err != nil || etag4 != etag3 || final.NextOffset() != 100 {
			t.Fatalf("the stale writer changed the manifest: %+v %v", final, err)
		}
	})
}

func TestManifestConcurrentUpdatesExactlyOneWins(t *testing.T) {
	storetest.ForEach(t, func(t *testing.T, s tier.Store) {
		ctx := context.Background()
		ms := meta.NewManifestStore(s, "race", 0)
		etag, err := ms.Create(ctx, &meta.Manifest{Topic: "race", Epoch: 1, Generation: 1})
		if err != nil {
			t.Fatal(err)
		}
		for round := 0; round < 5; round++ {
			cur, _, err := ms.Load(ctx)
			if err != nil {
				t.Fatal(err)
			}
			var (
				wg   sync.WaitGroup
				mu   sync.Mutex
				wins []string
			)
			for w := 0; w < 6; w++ {
				wg.Add(1)
				go func() {
					defer wg.Done()
					next := cur.Clone()
					next.Generation++
					next.Epoch = int64(100*round + w)
					e, err := ms.Update(ctx, etag, next)
					if err == nil {
						mu.Lock()
						wins = append(wins, e)
						mu.Unlock()
					} else if !errors.Is(err, tier.ErrFenced) {
						t.Errorf("loser got %v, want ErrFenced", err)
					}
				}()
			}
			wg.Wait()
			if len(wins) != 1 {
				t.Fatalf("round %d: %d writers won the CAS, want exactly 1", round, len(wins))
			}
			etag = wins[0]
		}
	})
}

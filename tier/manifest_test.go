package tier_test

import (
	"context"
	"errors"
	"strings"
	"sync"
	"testing"

	"github.com/stratalog/strata/internal/storetest"
	"github.com/stratalog/strata/tier"
)

func TestManifestValidate(t *testing.T) {
	seg := func(base, last int64) tier.SegmentRef {
		return tier.SegmentRef{Key: "k", BaseOffset: base, LastOffset: last}
	}
	for _, tc := range []struct {
		name string
		m    tier.Manifest
		want error
	}{
		{"empty", tier.Manifest{Version: 1}, nil},
		{"tiling", tier.Manifest{Version: 1, Segments: []tier.SegmentRef{seg(0, 9), seg(10, 19)}}, nil},
		{"gap is allowed", tier.Manifest{Version: 1, Segments: []tier.SegmentRef{seg(0, 9), seg(15, 19)}}, nil},
		{"newer version", tier.Manifest{Version: 2}, tier.ErrManifestVersion},
		{"version 0", tier.Manifest{Version: 0}, tier.ErrManifestCorrupt},
		{"overlap", tier.Manifest{Version: 1, Segments: []tier.SegmentRef{seg(0, 9), seg(9, 19)}}, tier.ErrManifestCorrupt},
		{"reversed", tier.Manifest{Version: 1, Segments: []tier.SegmentRef{seg(10, 5)}}, tier.ErrManifestCorrupt},
		{"below log start", tier.Manifest{Version: 1, LogStartOffset: 20, Segments: []tier.SegmentRef{seg(0, 9)}}, tier.ErrManifestCorrupt},
		{"log start past end", tier.Manifest{Version: 1, LogStartOffset: 30, Segments: []tier.SegmentRef{seg(0, 29)}}, tier.ErrManifestCorrupt},
		{"no key", tier.Manifest{Version: 1, Segments: []tier.SegmentRef{{BaseOffset: 0, LastOffset: 1}}}, tier.ErrManifestCorrupt},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.m.Validate()
			if tc.want == nil && err != nil || tc.want != nil && !errors.Is(err, tc.want) {
				t.Fatalf("Validate() = %v, want %v", err, tc.want)
			}
		})
	}
	err := (&tier.Manifest{Version: 7}).Validate()
	if !strings.Contains(err.Error(), "upgrade strata") {
		t.Fatalf("newer-version error should say what to do: %v", err)
	}
}

func TestDecodeManifestRejectsGarbage(t *testing.T) {
	for _, in := range []string{"", "{", "null", `{"version":"x"}`, `[1,2]`, `{"version":1,"segments":[{"key":"a","base_offset":5,"last_offset":1}]}`} {
		if _, err := tier.DecodeManifest([]byte(in)); err == nil {
			t.Errorf("DecodeManifest(%q) succeeded", in)
		}
	}
}

func TestManifestCreateLoadUpdate(t *testing.T) {
	storetest.ForEach(t, func(t *testing.T, s tier.Store) {
		ctx := context.Background()
		ms := tier.NewManifestStore(s, "t", 3)
		if _, _, err := ms.Load(ctx); !errors.Is(err, tier.ErrNotFound) {
			t.Fatalf("load of a missing manifest: %v, want ErrNotFound", err)
		}
		m := &tier.Manifest{Topic: "t", Partition: 3, Epoch: 1, Generation: 1}
		etag, err := ms.Create(ctx, m)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := ms.Create(ctx, &tier.Manifest{Topic: "t", Partition: 3, Epoch: 1, Generation: 1}); !errors.Is(err, tier.ErrFenced) {
			t.Fatalf("second create: %v, want ErrFenced", err)
		}
		got, etag2, err := ms.Load(ctx)
		if err != nil || etag2 != etag || got.Epoch != 1 || got.Topic != "t" {
			t.Fatalf("load: %+v %q %v", got, etag2, err)
		}
		next := got.Clone()
		next.Generation++
		next.Segments = append(next.Segments, tier.SegmentRef{Key: "seg-0", BaseOffset: 0, LastOffset: 99, Size: 10})
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
		ms := tier.NewManifestStore(s, "race", 0)
		etag, err := ms.Create(ctx, &tier.Manifest{Topic: "race", Epoch: 1, Generation: 1})
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

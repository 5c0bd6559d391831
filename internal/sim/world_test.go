package sim

import (
	"context"
	"encoding/json"
	"errors"
	"reflect"
	"strings"
	"testing"
	"testing/synctest"
	"time"

	"github.com/stratalog/strata/api/stratapb"
	"github.com/stratalog/strata/tier"
)

func TestPlanIsAPureFunctionOfTheSeed(t *testing.T) {
	o := Options{Seed: 42, Sweeps: true}
	a, b := NewPlan(o), NewPlan(o)
	if !reflect.DeepEqual(a, b) {
		t.Fatal("two plans of one seed differ")
	}
	if reflect.DeepEqual(a, NewPlan(Options{Seed: 43, Sweeps: true})) {
		t.Fatal("seeds 42 and 43 have the same plan")
	}
	off := NewPlan(Options{Seed: 42, Disable: map[Kind]bool{KKill: true, KRestart: true, KDelete: true}})
	for i, st := range off {
		if st.Kind == KKill || st.Kind == KRestart || st.Kind == KDelete || st.Kind == KCreate {
			t.Fatalf("step %d is %v although kill and delete are disabled", i, st)
		}
	}
}

// TestPlanFollowsItsModel replays plans against the planner's model: no
// step targets a dead slot (but restart, which targets only dead ones),
// resumes and heals follow their pauses and bursts, admin steps go to
// running brokers, and creates follow deletes.
func TestPlanFollowsItsModel(t *testing.T) {
	for seed := uint64(1); seed <= 200; seed++ {
		o := Options{Seed: seed}.withDefaults()
		alive, paused := make([]bool, o.Brokers), make([]bool, o.Brokers)
		for i := range alive {
			alive[i] = true
		}
		exists := []bool{true, true}
		kinds := map[Kind]int{}
		for i, st := range NewPlan(o) {
			kinds[st.Kind]++
			bad := func(why string) { t.Fatalf("seed %d step %d (%v): %s", seed, i, st, why) }
			switch st.Kind {
			case KRestart:
				if alive[st.Slot] {
					bad("restart of a live slot")
				}
				alive[st.Slot] = true
			case KAdvance:
			case KKill:
				if !alive[st.Slot] {
					bad("kill of a dead slot")
				}
				alive[st.Slot], paused[st.Slot] = false, false
			case KPause:
				if !alive[st.Slot] || paused[st.Slot] {
					bad("pause of a dead or paused slot")
				}
				paused[st.Slot] = true
			case KResume:
				if !paused[st.Slot] {
					bad("resume of a running slot")
				}
				paused[st.Slot] = false
			case KDelete, KCreate:
				if !alive[st.Slot] || paused[st.Slot] {
					bad("admin step on a dead or paused slot")
				}
				if exists[st.Topic] != (st.Kind == KDelete) {
					bad("delete of a deleted topic or create of an existing one")
				}
				exists[st.Topic] = st.Kind == KCreate
			default:
				if !alive[st.Slot] {
					bad("step on a dead slot")
				}
			}
		}
		if kinds[KProduce] == 0 || kinds[KFetch] == 0 {
			t.Fatalf("seed %d: no produce or fetch steps: %v", seed, kinds)
		}
	}
}

func put(ctx context.Context, s tier.Store, key string) error {
	_, err := s.PutIfAbsent(ctx, key, strings.NewReader("x"), 1)
	return err
}

func exists(w *World, key string) bool {
	_, err := w.bucket.Stat(context.Background(), key)
	return err == nil
}

// TestStoreFaults pins down the fault wrapper's semantics, which the
// checker's rules rely on.
func TestStoreFaults(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		w := NewWorld(1, 1, nil)
		bg := context.Background()

		s := w.newStore("p")
		s.setFaults(Faults{Err503: 1})
		err := put(bg, s, "k503")
		if !tier.IsRetryable(err) || exists(w, "k503") {
			t.Errorf("503: err %v, applied %v; want a retryable error, not applied", err, exists(w, "k503"))
		}

		s.setFaults(Faults{Lost: 1})
		err = put(bg, s, "klost")
		if !tier.IsRetryable(err) || !exists(w, "klost") {
			t.Errorf("lost response: err %v, applied %v; want a retryable error, applied", err, exists(w, "klost"))
		}

		s.setFaults(Faults{Hang: 1})
		ctx, cancel := context.WithTimeout(bg, 2*time.Second)
		start := time.Now()
		err = put(ctx, s, "khang")
		cancel()
		if !errors.Is(err, context.DeadlineExceeded) || time.Since(start) != 2*time.Second {
			t.Errorf("hang: err %v after %v; want the deadline's error after 2s", err, time.Since(start))
		}
		done := make(chan error, 1)
		go func() { done <- put(bg, s, "khang2") }() // no deadline: held until healed
		time.Sleep(time.Hour)
		synctest.Wait()
		select {
		case err := <-done:
			t.Fatalf("a hung call without a deadline returned before the heal: %v", err)
		default:
		}
		s.setFaults(Faults{})
		if err := <-done; !tier.IsRetryable(err) {
			t.Errorf("hang released by heal: %v; want a retryable error", err)
		}

		// Pause: held, then applied at resume although the caller's
		// deadline passed long before.
		s.pause()
		ctx, cancel = context.WithTimeout(bg, time.Second)
		defer cancel()
		go func() { done <- put(ctx, s, "kpause") }()
		cfg := make(chan error, 1)
		go func() { cfg <- put(bg, s, "topics/t/config.json") }()
		time.Sleep(time.Minute)
		synctest.Wait()
		if exists(w, "kpause") {
			t.Fatal("a paused process's write applied before the resume")
		}
		if exists(w, "topics/t/config.json") {
			t.Fatal("a paused process's config write applied before the resume")
		}
		if _, err := s.Stat(bg, "kpause"); !errors.Is(err, tier.ErrNotFound) {
			t.Errorf("a paused process's read: %v; want an answer (not found)", err)
		}
		s.resume()
		if err := <-done; err != nil || !exists(w, "kpause") {
			t.Errorf("after resume: err %v, applied %v; want the write applied", err, exists(w, "kpause"))
		}
		if err := <-cfg; err != nil || !exists(w, "topics/t/config.json") {
			t.Errorf("config write after resume: err %v; want it applied", err)
		}

		// Kill: held calls fail and never apply; later calls fail.
		s.pause()
		go func() { done <- put(bg, s, "kkill") }()
		synctest.Wait()
		s.kill()
		if err := <-done; !errors.Is(err, errKilled) {
			t.Errorf("held call at kill: %v; want errKilled", err)
		}
		s.resume()
		if err := put(bg, s, "kkill2"); !errors.Is(err, errKilled) || exists(w, "kkill") || exists(w, "kkill2") {
			t.Errorf("after kill: %v; want errKilled and nothing applied", err)
		}
	})
}

// TestBrokerUsesItsFS checks the core.Config.Partition.FS seam the simulation
// relies on: partition logs go to the configured filesystem, and
// DeleteTopic removes them from it.
func TestBrokerUsesItsFS(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		w := NewWorld(1, 1, nil)
		p, err := w.Start(0)
		if err != nil {
			t.Fatal(err)
		}
		disk := w.slots[0].disk
		ctx := context.Background()
		if _, err := p.B.CreateTopic(ctx, &stratapb.CreateTopicRequest{Config: &stratapb.TopicConfig{Name: "t", Partitions: 1}}); err != nil {
			t.Fatal(err)
		}
		if _, err := p.B.Produce(ctx, &stratapb.ProduceRequest{Topic: "t", Records: []*stratapb.Record{{Value: []byte("v")}}}); err != nil {
			t.Fatal(err)
		}
		// The directory is "t-0", or "t-<topic id>-0" once topics have
		// an identity.
		dir := "data/partitions/t-0"
		if rc, _, err := w.bucket.Get(ctx, "topics/t/config.json"); err == nil {
			var cfg struct {
				ID string `json:"topic_id"`
			}
			json.NewDecoder(rc).Decode(&cfg)
			rc.Close()
			if cfg.ID != "" {
				dir = "data/partitions/t-" + cfg.ID + "-0"
			}
		}
		if names, _ := disk.List(dir); !hasLog(names) {
			p.Core.Close(ctx)
			t.Fatalf("no log file in %s on the broker's FS: %v", dir, names)
		}
		if _, err := p.B.DeleteTopic(ctx, &stratapb.DeleteTopicRequest{Name: "t"}); err != nil {
			t.Fatal(err)
		}
		if names, _ := disk.List(dir); len(names) != 0 {
			t.Errorf("after DeleteTopic %s still holds %v", dir, names)
		}
		p.Core.Close(ctx)
	})
}

func hasLog(names []string) bool {
	for _, n := range names {
		if strings.HasSuffix(n, ".log") {
			return true
		}
	}
	return false
}

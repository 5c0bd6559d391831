package core

import (
	"context"
	"errors"
	"testing"

	"github.com/stratalog/strata/tier"
)

// A re-created topic has a new identity, on the broker that re-created it
// and on one that reads the bucket; the broker's own topics are refused.
func TestTopicIDChangesWhenRecreated(t *testing.T) {
	ctx := context.Background()
	store := tier.NewMemStore()
	b := newBroker(t, testConfig(t, store))
	if _, err := b.CreateTopic(ctx, TopicConfig{Name: "t", Partitions: 2}); err != nil {
		t.Fatal(err)
	}
	id1, cfg, err := b.TopicID(ctx, "t")
	if err != nil || id1 == "" || cfg.Partitions != 2 {
		t.Fatalf("TopicID = %q %+v %v; want an identity and 2 partitions", id1, cfg, err)
	}
	if _, err := b.DeleteTopic(ctx, "t"); err != nil {
		t.Fatal(err)
	}
	if _, _, err := b.TopicID(ctx, "t"); !errors.Is(err, ErrTopicNotFound) {
		t.Fatalf("TopicID of a deleted topic: %v, want ErrTopicNotFound", err)
	}
	if _, err := b.CreateTopic(ctx, TopicConfig{Name: "t", Partitions: 1}); err != nil {
		t.Fatal(err)
	}
	id2, _, err := b.TopicID(ctx, "t")
	if err != nil || id2 == "" || id2 == id1 {
		t.Fatalf("re-created topic: identity %q (was %q), %v; want a new one", id2, id1, err)
	}
	other := newBroker(t, testConfig(t, store))
	if id3, _, err := other.TopicID(ctx, "t"); err != nil || id3 != id2 {
		t.Fatalf("another broker reads identity %q, %v; want %q", id3, err, id2)
	}
	if _, _, err := b.TopicID(ctx, "__share.t"); !errors.Is(err, ErrInvalidArgument) {
		t.Fatalf("TopicID of a broker's own topic: %v, want ErrInvalidArgument", err)
	}
}

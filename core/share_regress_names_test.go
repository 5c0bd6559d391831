// Regression tests from an adversarial review of share groups: each test
// comment describes the bug as it was found (it is fixed); the test fails
// if it comes back.

package core

import (
	"context"
	"strings"
	"testing"

	"github.com/stratalog/strata/tier"
)

func TestShareRegressionNames(t *testing.T) {
	ctx := context.Background()
	b := newBroker(t, testConfig(t, tier.NewMemStore()))
	b.CreateTopic(ctx, TopicConfig{Name: "jobs", Partitions: 1})
	_, err := b.CreateShareGroup(ctx, ShareGroupConfig{Topic: "jobs", Group: ".."})
	t.Logf("group '..': %v", err)
	long := strings.Repeat("t", 150)
	b.CreateTopic(ctx, TopicConfig{Name: long, Partitions: 1})
	_, err = b.CreateShareGroup(ctx, ShareGroupConfig{Topic: long, Group: strings.Repeat("g", 60)})
	t.Logf("long: %v", err)
	_, err = b.CreateShareGroup(ctx, ShareGroupConfig{Topic: "jobs", Group: "g"})
	t.Logf("g on jobs: %v", err)
	_, err = b.CreateShareGroup(ctx, ShareGroupConfig{Topic: "__share.jobs", Group: "h"})
	t.Logf("h on __share.jobs: %v", err)
	if tp, err := b.loadTopic(ctx, "__share.__share.jobs"); err == nil {
		t.Logf("nested state log exists, colocate %q owner key %q; its data topic's owner key %q", tp.cfg.Colocate, tp.cfg.OwnerKey(0), mustTopic(t, b, "__share.jobs").cfg.OwnerKey(0))
	}
	_, err = b.Produce(ctx, &ProduceRequest{Topic: "__share.jobs", Partition: 0, Records: nil})
	n, err := b.DeleteTopic(ctx, "__share.jobs")
	t.Logf("client delete of the state log: %d objects, %v", n, err)
}

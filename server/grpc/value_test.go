package grpcserver_test

import (
	"context"
	"strings"
	"testing"

	"google.golang.org/grpc/codes"

	"github.com/stratalog/strata/api/stratapb"
	"github.com/stratalog/strata/core"
	"github.com/stratalog/strata/tier"
)

// value_format, value_schema and export go through the wire both ways: a
// topic created with them is stored with them (the schema compact) and
// creates, lists and describes with them; a schema inferred later
// describes too; a bad one is INVALID_ARGUMENT naming the field.
func TestTopicValueFields(t *testing.T) {
	store := tier.NewMemStore()
	c, b, _ := start(t, store, t.TempDir())
	ctx := context.Background()
	const compact = `{"fields":[{"name":"user","type":"string"},{"name":"n","type":"int64"}]}`
	resp, err := c.CreateTopic(ctx, &stratapb.CreateTopicRequest{Config: &stratapb.TopicConfig{Name: "typed", Partitions: 1,
		ValueFormat: "json", ValueSchema: `{"fields": [{"name": "user", "type": "string"}, {"name": "n", "type": "int64"}]}`, Export: "parquet"}})
	if err != nil {
		t.Fatal(err)
	}
	check := func(what string, tc *stratapb.TopicConfig) {
		t.Helper()
		if tc.GetValueFormat() != "json" || tc.GetValueSchema() != compact || tc.GetExport() != "parquet" {
			t.Fatalf("%s answered value_format %q, value_schema %q, export %q", what, tc.GetValueFormat(), tc.GetValueSchema(), tc.GetExport())
		}
	}
	check("create", resp.Config)
	d, err := c.DescribeTopic(ctx, &stratapb.DescribeTopicRequest{Name: "typed"})
	if err != nil {
		t.Fatal(err)
	}
	check("describe", d.Config)
	l, err := c.ListTopics(ctx, &stratapb.ListTopicsRequest{})
	if err != nil || len(l.Topics) != 1 {
		t.Fatalf("list: %v, %v", l, err)
	}
	check("list", l.Topics[0])
	stored, _, err := core.ReadTopicConfig(ctx, store, "typed")
	if err != nil || stored.ValueFormat != "json" || string(stored.ValueSchema) != compact || stored.Export != "parquet" {
		t.Fatalf("stored %+v, %v", stored, err)
	}

	// Inferred after create: describe answers it.
	if _, err := c.CreateTopic(ctx, &stratapb.CreateTopicRequest{Config: &stratapb.TopicConfig{Name: "later", Partitions: 1, ValueFormat: "json"}}); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Produce(ctx, &stratapb.ProduceRequest{Topic: "later", Records: []*stratapb.Record{{Value: []byte(`{"ok": true}`)}}}); err != nil {
		t.Fatal(err)
	}
	if _, err := b.ValueLayout(ctx, "later"); err != nil {
		t.Fatal(err)
	}
	d, err = c.DescribeTopic(ctx, &stratapb.DescribeTopicRequest{Name: "later"})
	if err != nil || d.Config.ValueSchema != `{"fields":[{"name":"ok","type":"bool"}]}` {
		t.Fatalf("describe after inference: %v, %v", d.GetConfig(), err)
	}

	for _, tc := range []struct {
		cfg  *stratapb.TopicConfig
		says string
	}{
		{&stratapb.TopicConfig{ValueFormat: "xml"}, "value_format"},
		{&stratapb.TopicConfig{ValueFormat: "json", ValueSchema: `{"fields": [`}, "value_schema"},
		{&stratapb.TopicConfig{ValueSchema: `{"fields": [{"name": "a", "type": "bool"}]}`}, "value_schema is set without value_format"},
		{&stratapb.TopicConfig{Export: "orc"}, "export"},
	} {
		tc.cfg.Name, tc.cfg.Partitions = "bad", 1
		_, err := c.CreateTopic(ctx, &stratapb.CreateTopicRequest{Config: tc.cfg})
		if code(err) != codes.InvalidArgument || !strings.Contains(err.Error(), tc.says) {
			t.Errorf("%v: %v, want INVALID_ARGUMENT naming %s", tc.cfg, err, tc.says)
		}
	}
}

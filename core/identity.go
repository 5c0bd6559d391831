package core

import "context"

// TopicID returns the identity topic name was given at creation, with its
// config, claiming nothing. A deleted and re-created topic has a new
// identity: a front end that hands clients a handle naming a topic (an
// Arrow Flight ticket) puts the identity in it and refuses a handle whose
// identity is no longer the topic's, so a handle of a deleted topic never
// reads its successor's records. Names of the broker's own topics ("__")
// are refused, as Fetch refuses them. An identity is empty only for a
// topic written by a broker that predates identities.
func (b *Broker) TopicID(ctx context.Context, name string) (string, *TopicConfig, error) {
	if err := clientTopic(name, "read"); err != nil {
		return "", nil, err
	}
	t, err := b.loadTopic(ctx, name)
	if err != nil {
		return "", nil, err
	}
	c := *t.cfg
	return t.id, &c, nil
}

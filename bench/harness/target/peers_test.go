package target

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"
)

// Each peer starts on loopback, takes 2,000 records, and gives them back
// to a consumer reading from the start and to one tailing. A peer that is
// not installed is skipped, except under CI=true (scripts/peers.sh install
// first).
func TestPeersRoundTrip(t *testing.T) {
	if testing.Short() {
		t.Skip("starts servers")
	}
	home, _ := os.UserHomeDir()
	nats := filepath.Join(home, ".cache", "strata", "bin", "nats-server")
	if d := os.Getenv("STRATA_TOOLS_DIR"); d != "" {
		nats = filepath.Join(d, "nats-server")
	}
	for _, tg := range []Target{
		NewNATS(NATSConfig{Bin: nats, Dir: t.TempDir(), Sync: "always"}),
		NewRedis(RedisConfig{Dir: t.TempDir(), Fsync: "always"}),
		NewRabbit(RabbitConfig{Dir: t.TempDir()}),
	} {
		t.Run(tg.Name(), func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
			defer cancel()
			if err := tg.Start(ctx); err != nil {
				tg.Stop()
				if errors.Is(err, ErrUnavailable) && os.Getenv("CI") != "true" {
					t.Skip(err)
				}
				t.Fatal(err)
			}
			defer tg.Stop()
			roundTrip(t, ctx, tg)
		})
	}
}

func roundTrip(t *testing.T, ctx context.Context, tg Target) {
	if err := tg.CreateTopic(ctx, "rt", 2); err != nil {
		t.Fatal(err)
	}
	tail, err := tg.NewConsumer(ctx, "rt", 1, false)
	if err != nil {
		t.Fatal(err)
	}
	defer tail.Close()
	time.Sleep(300 * time.Millisecond)
	p, err := tg.NewProducer(ctx, "rt", 2, ProducerOptions{Batch: 50, InFlight: 2, Linger: time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	const n = 2000
	acked := make(chan error, n)
	for i := 0; i < n; i++ {
		if err := p.Send(ctx, []byte(fmt.Sprintf("record-%05d", i)), func(err error) { acked <- err }); err != nil {
			t.Fatal(err)
		}
	}
	if err := p.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	p.Close()
	for i := 0; i < n; i++ {
		if err := <-acked; err != nil {
			t.Fatal(err)
		}
	}
	// read reads want records (at least want when !exact).
	read := func(c Consumer, want int, exact bool) {
		got := 0
		deadline := time.Now().Add(30 * time.Second)
		for got < want && time.Now().Before(deadline) {
			vs, err := c.Poll(ctx, 200*time.Millisecond)
			if err != nil {
				t.Fatal(err)
			}
			got += len(vs)
		}
		if got < want || exact && got != want {
			t.Fatalf("read %d records, want %d", got, want)
		}
	}
	read(tail, n/2, true)
	for part := 0; part < 2; part++ {
		c, err := tg.NewConsumer(ctx, "rt", part, true)
		if err != nil {
			t.Fatal(err)
		}
		read(c, n/2, true)
		c.Close()
	}
	if u := tg.Usage(ctx); u.RSSBytes == 0 || u.DiskBytes == 0 {
		t.Fatalf("usage %+v", u)
	}
}

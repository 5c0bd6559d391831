package main

import (
	"context"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/stratalog/strata/api/stratapb"
	"github.com/stratalog/strata/client"
)

// BenchmarkClusterFailover kills a broker of three with kill -9, ten times
// (a different one each time, restarted after), and reports how long its
// partitions took to be served again: from the kill to the first durable
// ack of a record sent to each of them through the Go client.
//
//	bash scripts/with-minio.sh go test ./cmd/strata -run '^$' -bench ClusterFailover -benchtime 1x
func BenchmarkClusterFailover(b *testing.B) {
	for range b.N {
		runFailoverRounds(b, 10)
	}
}

func runFailoverRounds(b *testing.B, rounds int) {
	c := startCluster(b, 3)
	rec, _ := newHistory(b)
	var worst []time.Duration
	for i := range rounds {
		victim := c.nodes[i%3]
		survivor := c.nodes[(i+1)%3]
		own := owners(b, survivor.addr)
		lost := partitionsOf(own, victim.id)
		if len(lost) == 0 {
			continue
		}
		killed := time.Now()
		victim.p.kill9(b)
		took := probe(b, rec, addrs(c.live(victim)), lost, killed)
		var w time.Duration
		for _, d := range took {
			w = max(w, d)
		}
		worst = append(worst, w)
		b.Logf("round %d: killed %s, its partitions %v served again after %v", i, victim.id, lost, w.Round(time.Millisecond))
		c.add(b, i%3)
		c.waitFormed(b)
	}
	slices.Sort(worst)
	if len(worst) == 0 {
		b.Fatal("no round killed a broker that owned a partition")
	}
	b.ReportMetric(float64(worst[len(worst)/2].Milliseconds()), "p50-failover-ms")
	b.ReportMetric(float64(worst[len(worst)-1].Milliseconds()), "max-failover-ms")
	b.ReportMetric(float64(worst[0].Milliseconds()), "min-failover-ms")
}

// BenchmarkClusterThroughput is the aggregate durable produce rate of 1, 2
// and 3 brokers on this machine (all on its 2 cores, with MinIO), through
// the Go client routing each partition's batches to its owner, and the
// replay rate of what was produced, read back through the cluster.
//
//	bash scripts/with-minio.sh go test ./cmd/strata -run '^$' -bench ClusterThroughput -benchtime 1x
func BenchmarkClusterThroughput(b *testing.B) {
	for _, n := range []int{1, 2, 3} {
		b.Run(fmt.Sprintf("brokers=%d", n), func(b *testing.B) {
			for range b.N {
				c := startCluster(b, n)
				const records, size = 200000, 200
				all := addrs(c.nodes)
				cl, err := client.Dial(all)
				if err != nil {
					b.Fatal(err)
				}
				defer cl.Close()
				value := make([]byte, size)
				start := time.Now()
				var wg sync.WaitGroup
				const producers = 4
				for p := range producers {
					wg.Add(1)
					go func() {
						defer wg.Done()
						prod := cl.NewProducer(faultTopic, client.WithAcks(stratapb.Acks_ACKS_DURABLE), client.WithBatchSize(500), client.WithLinger(5*time.Millisecond))
						var last *client.Result
						for i := range records / producers {
							r, err := prod.Send(context.Background(), client.Record{Key: []byte(fmt.Sprintf("k%d-%d", p, i)), Value: value})
							if err != nil {
								b.Error(err)
								return
							}
							last = r
						}
						if err := prod.Flush(context.Background()); err != nil {
							b.Error(err)
						}
						if last != nil {
							last.Wait(context.Background())
						}
						prod.Close(context.Background())
					}()
				}
				wg.Wait()
				el := time.Since(start)
				b.ReportMetric(float64(records)/el.Seconds(), "produce-records/s")
				b.ReportMetric(float64(records*size)/el.Seconds()/1e6, "produce-MB/s")
				start = time.Now()
				var parts []int32
				for p := range int32(clusterPartitions) {
					parts = append(parts, p)
				}
				cons, err := cl.NewConsumer(context.Background(), faultTopic, client.WithPartitions(parts...))
				if err != nil {
					b.Fatal(err)
				}
				read := 0
				for read < records {
					recs, err := cons.Poll(context.Background())
					if err != nil {
						b.Fatal(err)
					}
					read += len(recs)
				}
				el = time.Since(start)
				cons.Close(context.Background())
				b.ReportMetric(float64(read)/el.Seconds(), "replay-records/s")
			}
		})
	}
}

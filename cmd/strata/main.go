// Command strata is the strata binary. It is thin: flags and wiring; the
// work lives in the library packages (bench, ingest, fetch, tier). Every
// command that talks to a broker does so through the Go client (client/):
// produce is its idempotent, retrying Producer, consume its Consumer (over
// every partition of the topic, one partition, or as a group member).
// Every --broker flag takes one broker or a comma-separated list of a
// cluster's brokers: any one that answers is enough, and the client sends
// each request to the broker that owns what it names (a partition's
// writes to its owner, a group's calls to its coordinator), following the
// cluster as partitions move. stats reports the first broker that answers.
// queue and dlq are share groups (docs/queues.md) on the client's
// ShareConsumer (queue run on its Run) and Redrive.
//
//	strata serve   --listen HOST:PORT --data-dir DIR --object-store URL [--flight-listen HOST:PORT] [--node-id ID --gossip-listen HOST:PORT --join HOST:PORT[,...]] ... (every flag also STRATA_<NAME>)
//	strata topic   create|delete|list|describe [NAME] --broker HOST:PORT[,...] [--consumed-by G1,G2]
//	strata produce TOPIC --broker HOST:PORT[,...] [--key-separator SEP | --format json] [--partition P] [--acks none|local|durable] [--header K=V] [--delay DUR | --deliver-at T] [--priority N] [--dedup-id-header NAME]
//	strata consume TOPIC --broker HOST:PORT[,...] [--partition P [--from-offset N] | --from-time T | --from earliest|latest] [--max N] [--until T] [--format text|json] [--group G]
//	strata group   list|describe|reset GROUP --broker HOST:PORT[,...]
//	strata queue   create|alter|delete|list|describe|receive|ack|nack|release|reject|extend|run TOPIC --group G --broker HOST:PORT[,...]
//	strata dlq     list|redrive TOPIC --group G --broker HOST:PORT[,...]
//	strata stats   --broker HOST:PORT[,...]
//	strata acl     add|remove --principal P (--topic T | --group G | --cluster) [--prefix] --operation OPS | list --broker HOST:PORT[,...]
//	strata token   new [--principal P] | hash
//	strata export  parquet TOPIC --object-store URL --to URL [--from-time T --to-time T | --from-offset P:O,... --to-offset P:O,...]
//	strata flight  get TOPIC --flight HOST:PORT [--partition P] [--from-offset N --to-offset N | --from-time T --to-time T] [--print]
//	strata demo    [--dir DIR] [--object-store URL] [--records N] [--partitions N]
//
// Every flag not given takes STRATA_<NAME>, else the config file
// (~/.config/strata/config.yaml or $STRATA_CONFIG; config.go,
// docs/cli-config.md). list and describe commands and stats print aligned
// tables, or one JSON document with --output json (-o json).
// Every command that talks to a broker also takes --tls, --tls-ca,
// --tls-cert, --tls-key, --tls-server-name and --token (or STRATA_TOKEN)
// (docs/security.md).
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"syscall"

	"github.com/stratalog/strata/bench"
	"github.com/stratalog/strata/tier"
)

const usage = `strata: a tiered-storage streaming log

usage:
  strata serve   [flags]                 run a broker (gRPC)
  strata topic   create|delete|list|describe  manage topics
  strata produce TOPIC                   one record per stdin line (idempotent, retried); prints the number acknowledged
  strata consume TOPIC                   print records of every partition (text or json); --partition P for one,
                                         --max N to stop after N in total, --until T at a time, --group G to consume as a group member
  strata group   list|describe|reset     consumer groups: members, lag, offset resets
  strata queue   create|alter|delete|list|describe   share groups: a topic read as a queue (docs/queues.md)
  strata queue   receive|ack|nack|release|reject|extend   lease records, settle them by receipt
  strata queue   run TOPIC --group G -- CMD   run CMD per record (value on stdin): exit 0 acks, else nacks
  strata dlq     list|redrive            a share group's dead letters: print them, move them back
  strata stats                           a broker's read-cache and WAL counters (the first --broker that answers)
  strata acl     add|remove|list         who may produce, consume, describe or admin which topics and groups
  strata token   new|hash                make a bearer token and its hash for the broker's token file
  strata export  parquet TOPIC           a topic's sealed records as Parquet files, exactly once and resumable (docs/export.md)
  strata flight  get TOPIC               read a range over Arrow Flight (serve --flight-listen); prints rows, batches, MB/s
  strata demo    [flags]                 write a log, seal it into the object store, replay it
                                         from an empty reader, and print what happened

run 'strata COMMAND -h' for a command's flags
`

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, os.Args[1:]); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return // -h: the flags were printed
		}
		fmt.Fprintln(os.Stderr, "strata:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, args []string) error {
	if len(args) == 0 {
		fmt.Fprint(os.Stderr, usage)
		return errors.New("no command given")
	}
	switch args[0] {
	case "serve":
		return serve(ctx, args[1:])
	case "topic":
		return topicCmd(ctx, args[1:])
	case "produce":
		return produceCmd(ctx, args[1:])
	case "consume":
		return consumeCmd(ctx, args[1:])
	case "group":
		return groupCmd(ctx, args[1:])
	case "queue":
		return queueCmd(ctx, args[1:])
	case "dlq":
		return dlqCmd(ctx, args[1:])
	case "stats":
		return statsCmd(ctx, args[1:])
	case "acl":
		return aclCmd(ctx, args[1:])
	case "token":
		return tokenCmd(ctx, args[1:])
	case "export":
		return exportCmd(ctx, args[1:])
	case "flight":
		return flightCmd(ctx, args[1:])
	case "demo":
		return demo(ctx, args[1:])
	case "-h", "--help", "help":
		fmt.Print(usage)
		return nil
	default:
		fmt.Fprint(os.Stderr, usage)
		return fmt.Errorf("unknown command %q", args[0])
	}
}

func demo(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("demo", flag.ContinueOnError)
	dir := fs.String("dir", "", "working directory (default: a new temporary directory, removed afterwards)")
	store := fs.String("object-store", "", "object store URL: file:///abs/dir or s3://bucket/prefix?endpoint=HOST:PORT&insecure=true (default: file:// under --dir)")
	records := fs.Int("records", 20000, "records per partition")
	partitions := fs.Int("partitions", 3, "partitions")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if err := flagDefaults(fs); err != nil {
		return err
	}
	if *records <= 0 || *partitions <= 0 {
		return fmt.Errorf("--records and --partitions must be positive (got %d and %d)", *records, *partitions)
	}
	if *dir == "" {
		d, err := os.MkdirTemp("", "strata-demo-")
		if err != nil {
			return err
		}
		defer os.RemoveAll(d)
		*dir = d
	}
	abs, err := filepath.Abs(*dir)
	if err != nil {
		return err
	}
	if *store == "" {
		*store = "file://" + filepath.Join(abs, "bucket")
	}
	st, err := tier.Open(ctx, *store)
	if err != nil {
		return err
	}
	defer st.Close()
	fmt.Printf("object store: %s\n", tier.RedactURL(*store))
	_, err = bench.Demo(ctx, bench.DemoConfig{Dir: abs, Store: st, Records: *records, Partitions: *partitions}, os.Stdout)
	return err
}

package main

// strata queue run: a worker that runs a command per record, on the Go
// client's ShareConsumer.Run (which extends each lease while its command
// runs and settles it by the outcome).

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
	"unicode/utf8"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/stratalog/strata/client"
)

// stderrTail is how much of a failed command's stderr becomes its nack's
// reason (the broker keeps at most client.MaxReasonBytes).
const stderrTail = 1 << 10

func queueRun(ctx context.Context, args []string) error {
	fs, brokerAddr, group := queueFlags("run", "run TOPIC --group G [--concurrency N] [--prefetch N] [--visibility DUR] [--max N] --broker HOST:PORT[,...] -- CMD [ARGS...]",
		`Receives records of share group G and runs CMD once per record, the
record's value on CMD's stdin, up to --concurrency at once. CMD's stdout
and stderr are strata's. Exit status 0 acks the record; any other nacks
it (it comes back after the group's backoff, and goes to the dead-letter
topic after the group's max deliveries) with the last 1 KiB of CMD's
stderr as the reason (or the exit status when stderr was empty). While
CMD runs, its record's lease is extended (every half visibility), so CMD
may take longer than the visibility timeout; if the lease is lost anyway
CMD is killed (the record may be delivered to another worker by then).
Up to --prefetch more records are received ahead, leased, so a finished
command's slot is refilled at once (fewer when commands are slow: no
more than the slots get through in half a lease); records are settled
in the background, many per call.

CMD's environment is strata's with STRATA_TOPIC, STRATA_GROUP,
STRATA_PARTITION, STRATA_OFFSET, STRATA_DELIVERY_COUNT (1 on the first
delivery), STRATA_TIMESTAMP (RFC 3339) and, when the record has a key
(without a NUL byte), STRATA_KEY.

SIGINT or SIGTERM stops taking records, waits for the running commands
(they run in their own process group, so a terminal's Ctrl-C does not
reach them) and settles their records by their exit status as above.
--max N stops the same way once N records were taken.
On exit it prints a summary on stderr.`)
	concurrency := fs.Int("concurrency", 1, "commands run at once (each its own record)")
	prefetch := fs.Int("prefetch", -1, "records received ahead of idle command slots, 0 to 1000 (default: as many as --concurrency; 0: receive only for idle slots)")
	visibility := fs.Duration("visibility", 0, "lease of each record received, 1s to 12h, extended while its command runs (default: the group's visibility timeout)")
	maxN := fs.Int64("max", 0, "stop after this many records; 0 runs until SIGINT or SIGTERM")
	// The command starts after "--": its flags are not ours.
	var command []string
	if i := slices.Index(args, "--"); i >= 0 {
		args, command = args[:i], args[i+1:]
	}
	pos, err := parseArgs(fs, args)
	if err != nil {
		return err
	}
	topic, err := topicAndGroup("queue run", pos, *group)
	if err != nil {
		return err
	}
	switch {
	case len(command) == 0:
		return fmt.Errorf("strata queue run %s: give the command to run per record after --, like: strata queue run %s --group %s -- ./handle.sh", topic, topic, *group)
	case *concurrency < 1 || *concurrency > 1000:
		return fmt.Errorf("--concurrency %d is out of range: run 1 to 1000 commands at once", *concurrency)
	case *prefetch < -1 || *prefetch > 1000:
		return fmt.Errorf("--prefetch %d is out of range: receive 0 to 1000 records ahead", *prefetch)
	case *maxN < 0:
		return fmt.Errorf("--max %d is negative: give the records to handle, or 0 to run until stopped", *maxN)
	}
	if err := checkVisibility(*visibility); err != nil {
		return err
	}
	path, err := exec.LookPath(command[0])
	if err != nil {
		return fmt.Errorf("the command %q cannot be run: %v; nothing was received", command[0], err)
	}
	c, err := dial(brokerAddr)
	if err != nil {
		return err
	}
	defer c.Close()
	if *prefetch < 0 {
		*prefetch = *concurrency
	}
	// One receive fills the window, up to 1,000 (several in flight could
	// hand records out in another order than the broker gave them).
	k := c.NewShareConsumer(topic, *group, client.WithVisibility(*visibility), client.WithMaxRecords(*concurrency+*prefetch))

	runCtx, stop := context.WithCancel(ctx)
	defer stop()
	var started, acked, failed, settleErrs atomic.Int64
	var selfSettled sync.Map // receipts the handler nacked itself (stopping)
	var logMu sync.Mutex
	logf := func(format string, a ...any) {
		logMu.Lock()
		defer logMu.Unlock()
		fmt.Fprintf(errOut, "strata queue run: "+format+"\n", a...)
	}
	handler := func(hctx context.Context, m client.Message) error {
		if n := started.Add(1); *maxN > 0 && n >= *maxN {
			stop() // the last one: take no more
			if n > *maxN {
				return errors.New("past --max: released") // Run releases it: it is stopping
			}
		}
		err := runOne(runCtx, hctx, path, command, topic, *group, m)
		if err == nil {
			acked.Add(1)
			return nil // acked, also when stopping
		}
		failed.Add(1)
		logf("%s/%d@%d (delivery %d): %v", topic, m.Partition, m.Offset, m.DeliveryCount, err)
		var lost *leaseLost
		if runCtx.Err() != nil && !errors.As(err, &lost) {
			// Stopping: Run would release the record (no delivery
			// counted), but the command did fail on it: nack it here.
			// Run's release that follows is refused (the lease is
			// settled), or, if this nack failed, gives it back.
			sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 30*time.Second)
			defer cancel()
			if k.Nack(sctx, 0, err.Error(), m.Receipt) == nil {
				selfSettled.Store(m.Receipt, true)
			}
		}
		return err
	}
	onErr := func(m client.Message, err error) {
		if _, ok := selfSettled.Load(m.Receipt); ok && status.Code(err) == codes.FailedPrecondition {
			return // Run's release of a record nacked above
		}
		settleErrs.Add(1)
		logf("%s/%d@%d: could not settle (its lease runs out and the record is delivered again): %v", topic, m.Partition, m.Offset, rpcErr(err))
	}
	begin := time.Now()
	err = k.Run(runCtx, handler, client.WithWorkers(*concurrency), client.WithPrefetch(*prefetch), client.WithRunErrors(onErr))
	handled := min(started.Load(), acked.Load()+failed.Load())
	logf("handled %d records in %v: %d exited 0 (acked), %d failed; %d could not be settled",
		handled, time.Since(begin).Round(time.Millisecond), acked.Load(), failed.Load(), settleErrs.Load())
	if err != nil && !errors.Is(err, context.Canceled) {
		return fmt.Errorf("run share group %s on topic %s: %w", *group, topic, rpcErr(err))
	}
	return nil
}

// runOne runs the command for m and returns nil when it exited 0, else an
// error whose text is the nack's reason. runCtx ends when the worker
// stops taking records (the command is let finish); hctx also ends when
// the record's lease is lost, and then the command is killed.
func runOne(runCtx, hctx context.Context, path string, command []string, topic, group string, m client.Message) error {
	cmd := exec.Command(path, command[1:]...)
	cmd.Args[0] = command[0]
	cmd.Stdin = bytes.NewReader(m.Value)
	cmd.Stdout = os.Stdout
	tail := &tailBuffer{max: stderrTail}
	cmd.Stderr = &teeWriter{a: errOut, b: tail}
	cmd.Env = append(os.Environ(),
		"STRATA_TOPIC="+topic, "STRATA_GROUP="+group,
		"STRATA_PARTITION="+strconv.Itoa(int(m.Partition)), "STRATA_OFFSET="+strconv.FormatInt(m.Offset, 10),
		"STRATA_DELIVERY_COUNT="+strconv.Itoa(int(m.DeliveryCount)),
		"STRATA_TIMESTAMP="+rfc3339ms(time.UnixMilli(m.Timestamp)))
	if m.Key != nil && !bytes.ContainsRune(m.Key, 0) {
		cmd.Env = append(cmd.Env, "STRATA_KEY="+string(m.Key))
	}
	ownProcessGroup(cmd)
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("start %s: %v", command[0], err)
	}
	done := make(chan struct{})
	go func() {
		select {
		case <-hctx.Done():
			if runCtx.Err() == nil {
				cmd.Process.Kill() // the lease is lost: someone else may have the record
			}
		case <-done:
		}
	}()
	err := cmd.Wait()
	close(done)
	if err == nil {
		return nil
	}
	if hctx.Err() != nil && runCtx.Err() == nil {
		return &leaseLost{err}
	}
	reason := strings.TrimRight(tail.String(), " \t\r\n")
	if reason == "" {
		reason = err.Error() // "exit status 3"
	}
	return errors.New(reason)
}

// leaseLost is a command killed because its record's lease was lost.
type leaseLost struct{ err error }

func (e *leaseLost) Error() string {
	return fmt.Sprintf("killed: the record's lease was lost (%v)", e.err)
}

// tailBuffer keeps the last max bytes written to it.
type tailBuffer struct {
	mu  sync.Mutex
	max int
	b   []byte
}

func (t *tailBuffer) Write(p []byte) (int, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.b = append(t.b, p...)
	if len(t.b) > 2*t.max {
		t.b = append(t.b[:0], t.b[len(t.b)-t.max:]...)
	}
	return len(p), nil
}

// String is the kept tail, at most max bytes, starting at a UTF-8 rune.
func (t *tailBuffer) String() string {
	t.mu.Lock()
	defer t.mu.Unlock()
	b := t.b
	if len(b) > t.max {
		b = b[len(b)-t.max:]
	}
	for len(b) > 0 && !utf8.RuneStart(b[0]) {
		b = b[1:]
	}
	return string(b)
}

// teeWriter writes to a, then b; a's failure does not stop b.
type teeWriter struct {
	mu   sync.Mutex
	a, b interface{ Write([]byte) (int, error) }
}

func (w *teeWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.a.Write(p)
	return w.b.Write(p)
}

package executor

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"runtime"
	"sync"
	"time"
)

// batchHandler is the reserved handler name of a batch job: many inputs
// for one named handler in one job, so that tiny jobs cost one slot and
// one round trip per batch.
//
// Input:  u16 name length, name, u32 count, count x u32 lengths, the inputs.
// Output: u64 run time ns, u32 count, then per item: u8 0 ok / 1 error,
//
//	u32 length, bytes (the output, or an encoded handler error).
const batchHandler = "\x00batch"

func encodeBatch(handler string, items [][]byte) []byte {
	n := 2 + len(handler) + 4 + 4*len(items)
	for _, it := range items {
		n += len(it)
	}
	b := make([]byte, 0, n)
	b = binary.LittleEndian.AppendUint16(b, uint16(len(handler)))
	b = append(b, handler...)
	b = binary.LittleEndian.AppendUint32(b, uint32(len(items)))
	for _, it := range items {
		b = binary.LittleEndian.AppendUint32(b, uint32(len(it)))
	}
	for _, it := range items {
		b = append(b, it...)
	}
	return b
}

var errBadBatch = errors.New("malformed batch")

func decodeBatch(b []byte) (string, [][]byte, error) {
	if len(b) < 2 {
		return "", nil, errBadBatch
	}
	nl := int(binary.LittleEndian.Uint16(b))
	b = b[2:]
	if len(b) < nl+4 {
		return "", nil, errBadBatch
	}
	name := string(b[:nl])
	b = b[nl:]
	count := int(binary.LittleEndian.Uint32(b))
	b = b[4:]
	if count > len(b)/4 {
		return "", nil, errBadBatch
	}
	lens := b[:4*count]
	b = b[4*count:]
	items := make([][]byte, count)
	for i := range items {
		n := int(binary.LittleEndian.Uint32(lens[4*i:]))
		if n > len(b) {
			return "", nil, errBadBatch
		}
		items[i], b = b[:n:n], b[n:]
	}
	return name, items, nil
}

// runBatch runs a batch job in the worker.
func (w *worker) runBatch(ctx context.Context, in []byte) ([]byte, error) {
	name, items, err := decodeBatch(in)
	if err != nil {
		return nil, err
	}
	h, ok := w.cfg.Handlers[name]
	if !ok {
		return nil, &HandlerError{Type: "UnknownHandler", Message: fmt.Sprintf("no handler %q in this worker", name)}
	}
	start := time.Now()
	out := make([]byte, 12, 12+16*len(items))
	for _, it := range items {
		res, err := callHandler(ctx, h, it)
		if err != nil {
			var he *HandlerError
			if !errors.As(err, &he) {
				he = &HandlerError{Type: fmt.Sprintf("%T", err), Message: err.Error()}
			}
			res = []byte(encodeHandlerError(he.Type, he.Message, he.Traceback))
			out = append(out, 1)
		} else {
			out = append(out, 0)
		}
		out = binary.LittleEndian.AppendUint32(out, uint32(len(res)))
		out = append(out, res...)
	}
	binary.LittleEndian.PutUint64(out, uint64(time.Since(start)))
	binary.LittleEndian.PutUint32(out[8:], uint32(len(items)))
	return out, nil
}

func decodeBatchResult(b []byte, want int) (time.Duration, []Result, error) {
	if len(b) < 12 || int(binary.LittleEndian.Uint32(b[8:])) != want {
		return 0, nil, errBadBatch
	}
	d := time.Duration(binary.LittleEndian.Uint64(b))
	b = b[12:]
	res := make([]Result, want)
	for i := range res {
		if len(b) < 5 {
			return 0, nil, errBadBatch
		}
		failed, n := b[0], int(binary.LittleEndian.Uint32(b[1:]))
		b = b[5:]
		if n > len(b) {
			return 0, nil, errBadBatch
		}
		if failed != 0 {
			res[i].Err = decodeHandlerError(b[:n])
		} else {
			res[i].Output = append([]byte(nil), b[:n]...)
		}
		b = b[n:]
	}
	return d, res, nil
}

// Result is the outcome of one item of a Map.
type Result struct {
	Output []byte
	Err    error
}

// batchTarget is how long one batch should run in a worker: long enough
// to amortise a round trip, short enough to spread work over workers.
const batchTarget = 500 * time.Microsecond

// Map runs handler on every input and returns the results in order.
// Items are sent in batches whose size adapts to the measured run time:
// tiny jobs go hundreds to a job, long ones one at a time so that every
// worker gets some. A batch whose worker crashes fails each of its items
// with the crash (or is retried, per the pool's Retries). The error is
// non-nil only if submitting stopped (ctx ended, pool closed); results of
// items never submitted then carry that error.
func (c *Client) Map(ctx context.Context, handler string, inputs [][]byte) ([]Result, error) {
	results := make([]Result, len(inputs))
	workers := int(c.l.g.workers)
	maxInflight := 2 * workers
	if maxInflight > c.l.g.slots/2 {
		maxInflight = max(c.l.g.slots/2, 1)
	}
	type batch struct {
		start, n int
		batched  bool
		f        *Future
	}
	done := make(chan batch, maxInflight)
	var wg sync.WaitGroup
	size, next, inflight := 1, 0, 0
	var perItem time.Duration
	var submitErr error
	for next < len(inputs) || inflight > 0 {
		for submitErr == nil && next < len(inputs) && inflight < maxInflight {
			n := size
			// Leave enough batches for every worker.
			if spread := (len(inputs) - next + workers - 1) / workers; n > spread {
				n = max(spread, 1)
			}
			n = min(n, len(inputs)-next)
			var f *Future
			var err error
			batched := n > 1 || size > 1
			if batched {
				f, err = c.Submit(ctx, batchHandler, encodeBatch(handler, inputs[next:next+n]))
			} else {
				f, err = c.Submit(ctx, handler, inputs[next])
			}
			if err != nil {
				submitErr = err
				break
			}
			b := batch{start: next, n: n, batched: batched, f: f}
			next += n
			inflight++
			wg.Add(1)
			go func() {
				defer wg.Done()
				<-b.f.Done()
				done <- b
			}()
		}
		if inflight == 0 {
			break
		}
		b := <-done
		inflight--
		out, err := b.f.Wait(context.Background())
		switch {
		case err != nil:
			for i := 0; i < b.n; i++ {
				results[b.start+i].Err = err
			}
		case !b.batched:
			results[b.start].Output = out
		default:
			d, rs, derr := decodeBatchResult(out, b.n)
			if derr != nil {
				for i := 0; i < b.n; i++ {
					results[b.start+i].Err = fmt.Errorf("executor: map: %w", derr)
				}
				break
			}
			copy(results[b.start:], rs)
			perItem = d / time.Duration(b.n)
		}
		// Adapt: aim for batchTarget of work per batch.
		if perItem > 0 {
			size = int(batchTarget / perItem)
		} else if err == nil {
			size *= 2
		}
		size = min(max(size, 1), 4096)
		runtime.Gosched()
	}
	wg.Wait()
	if submitErr != nil {
		for i := next; i < len(inputs); i++ {
			results[i].Err = submitErr
		}
	}
	return results, submitErr
}

// MapStream is Map over a channel: it reads inputs until in is closed (or
// ctx ends) and sends one Result per input, in input order, on the
// returned channel, which it closes at the end. Inputs are gathered into
// windows of whatever is ready (up to 4096) and each window is run as a
// Map, so batching adapts as in Map.
func (c *Client) MapStream(ctx context.Context, handler string, in <-chan []byte) <-chan Result {
	out := make(chan Result, 256)
	go func() {
		defer close(out)
		for {
			var window [][]byte
			select {
			case item, ok := <-in:
				if !ok {
					return
				}
				window = append(window, item)
			case <-ctx.Done():
				return
			}
		gather:
			for len(window) < 4096 {
				select {
				case item, ok := <-in:
					if !ok {
						break gather
					}
					window = append(window, item)
				default:
					break gather
				}
			}
			res, _ := c.Map(ctx, handler, window)
			for _, r := range res {
				select {
				case out <- r:
				case <-ctx.Done():
					return
				}
			}
		}
	}()
	return out
}

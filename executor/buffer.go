package executor

import (
	"context"
	"fmt"
	"sync"
)

// Buffer is writable space in the segment for a zero-copy submit: fill
// Bytes, then SubmitBuffer hands the pages to the job without copying, and
// the worker's handler reads them in place.
type Buffer struct {
	c      *Client
	first  int
	npages int
	n      int
	owner  uint64
	b      []byte
	mu     sync.Mutex
	used   bool
}

// AllocBuffer returns a buffer of n bytes in the segment. Release it if it
// is not submitted. It fails with ErrTooLarge above MaxPayload.
func (c *Client) AllocBuffer(n int) (*Buffer, error) { return c.allocBuffer(n, true) }

// TryAllocBuffer is AllocBuffer that fails with ErrFull instead of
// waiting while other jobs' inputs and outputs fill the arena.
func (c *Client) TryAllocBuffer(n int) (*Buffer, error) { return c.allocBuffer(n, false) }

func (c *Client) allocBuffer(n int, wait bool) (*Buffer, error) {
	if !c.l.enter() {
		return nil, ErrPoolClosed
	}
	defer c.l.exit()
	if err := c.checkOpen(); err != nil {
		return nil, err
	}
	if n < 0 || uint64(n) > c.l.g.maxPayload {
		return nil, fmt.Errorf("%w: buffer of %d bytes, pool maximum %d", ErrTooLarge, n, c.l.g.maxPayload)
	}
	np := max(pagesFor(uint64(n)), 1)
	owner := pageOwner(pageParty, c.subParty.Owner())
	alloc := c.l.allocPagesNow
	if wait {
		alloc = c.l.allocPagesWait
	}
	first, err := alloc(np, owner)
	if err != nil {
		return nil, err
	}
	return &Buffer{c: c, first: first, npages: np, n: n, owner: owner, b: c.l.arenaBytes(first, uint64(n))}, nil
}

// Bytes returns the buffer's memory. Do not use it after SubmitBuffer or
// Release.
func (b *Buffer) Bytes() []byte { return b.b }

// Release frees a buffer that was not submitted. A second call, or a call
// after SubmitBuffer, does nothing.
func (b *Buffer) Release() {
	if b == nil {
		return
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	if !b.used && b.c.l.enter() {
		b.used = true
		b.c.l.freePages(b.first, b.npages, b.owner)
		b.c.l.exit()
	}
}

// SubmitBuffer queues a job whose input is buf, without copying it. The
// buffer belongs to the job from then on.
func (c *Client) SubmitBuffer(ctx context.Context, handler string, buf *Buffer, opts SubmitOptions) (*Future, error) {
	return c.submitBuffer(ctx, handler, buf, opts, true)
}

// TrySubmitBuffer is SubmitBuffer that fails with ErrFull instead of
// waiting for a free job slot; the buffer then stays the caller's, to
// submit again or release.
func (c *Client) TrySubmitBuffer(handler string, buf *Buffer, opts SubmitOptions) (*Future, error) {
	return c.submitBuffer(context.Background(), handler, buf, opts, false)
}

func (c *Client) submitBuffer(ctx context.Context, handler string, buf *Buffer, opts SubmitOptions, block bool) (*Future, error) {
	buf.mu.Lock()
	defer buf.mu.Unlock()
	if buf.used || buf.c != c {
		return nil, fmt.Errorf("executor: SubmitBuffer with a buffer that was used, released or is another client's")
	}
	return c.submit(ctx, handler, nil, buf, opts, block)
}

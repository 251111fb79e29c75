package ring

import "time"

// TryEnqueue adds v without blocking. It returns ErrFull if the ring has no
// free cell. Safe for concurrent use with distinct parties.
func (r *Ring) TryEnqueue(p *Party, v uint32) error {
	_, err := r.tryEnqueue(p, []uint32{v})
	return err
}

// Enqueue adds v, blocking while the ring is full, for at most timeout
// (timeout < 0: no limit; 0: do not wait). It returns ErrTimeout when the
// time ran out, or the error given to Interrupt.
func (r *Ring) Enqueue(p *Party, v uint32, timeout time.Duration) error {
	_, err := r.EnqueueBatch(p, []uint32{v}, timeout)
	return err
}

// TryEnqueueBatch adds as many values of vs as fit now, in order, and
// returns how many. It returns ErrFull if none fit.
func (r *Ring) TryEnqueueBatch(p *Party, vs []uint32) (int, error) {
	done := 0
	for done < len(vs) {
		n, err := r.tryEnqueue(p, vs[done:min(done+MaxBatch, len(vs))])
		if err != nil {
			if done > 0 && err == ErrFull {
				return done, nil
			}
			return done, err
		}
		done += n
	}
	return done, nil
}

// EnqueueBatch adds all of vs, in order, blocking while the ring is full,
// for at most timeout in all. It returns how many it added; fewer than
// len(vs) only with an error.
func (r *Ring) EnqueueBatch(p *Party, vs []uint32, timeout time.Duration) (int, error) {
	w := newWaiter(timeout, r.Spin)
	done := 0
	for done < len(vs) {
		n, err := r.tryEnqueue(p, vs[done:min(done+MaxBatch, len(vs))])
		if err == nil {
			done += n
			continue
		}
		if err != ErrFull {
			return done, err
		}
		if err := w.wait(r, &r.notFull, p, r.canEnqueue); err != nil {
			return done, err
		}
	}
	return done, nil
}

// TryDequeue takes one value without blocking, or returns ErrEmpty. The
// value stays in the party's custody (recovery reports it if the party
// dies) until the party's next operation or Release.
func (r *Ring) TryDequeue(p *Party) (uint32, error) {
	var buf [1]uint32
	_, err := r.tryDequeue(p, buf[:])
	return buf[0], err
}

// Dequeue takes one value, blocking while the ring is empty, for at most
// timeout (timeout < 0: no limit; 0: do not wait). Custody as TryDequeue.
func (r *Ring) Dequeue(p *Party, timeout time.Duration) (uint32, error) {
	var buf [1]uint32
	_, err := r.DequeueBatch(p, buf[:], timeout)
	return buf[0], err
}

// TryDequeueBatch takes up to min(len(buf), MaxBatch) values that are
// ready now, in ring order, and returns how many; ErrEmpty if none.
// One call is one operation, so all the values it returns stay in the
// party's custody until its next operation or Release.
func (r *Ring) TryDequeueBatch(p *Party, buf []uint32) (int, error) {
	if len(buf) > MaxBatch {
		buf = buf[:MaxBatch]
	}
	if len(buf) == 0 {
		return 0, nil
	}
	return r.tryDequeue(p, buf)
}

// DequeueBatch is TryDequeueBatch that first waits, for at most timeout,
// until at least one value is ready.
func (r *Ring) DequeueBatch(p *Party, buf []uint32, timeout time.Duration) (int, error) {
	if len(buf) > MaxBatch {
		buf = buf[:MaxBatch]
	}
	if len(buf) == 0 {
		return 0, nil
	}
	w := newWaiter(timeout, r.Spin)
	defer w.done(r, p)
	for {
		n, err := r.tryDequeue(p, buf)
		if err != ErrEmpty {
			return n, err
		}
		if err := w.wait(r, &r.notEmpty, p, r.canDequeue); err != nil {
			return 0, err
		}
	}
}

// WaitReady blocks until a value looks ready to dequeue (a hint: a
// dequeue may still find the ring empty), for at most timeout. It takes
// nothing. It returns ErrTimeout, or the error given to Interrupt.
func (r *Ring) WaitReady(p *Party, timeout time.Duration) error {
	return r.waitReady(p, timeout, r.Spin)
}

// SleepReady is WaitReady without the spin: it sleeps on the futex at
// once. It suits a background consumer whose wake-up latency matters less
// than the core a spin would take from the parties doing the work (a
// client's collector, while its callers poll for their own results).
func (r *Ring) SleepReady(p *Party, timeout time.Duration) error {
	return r.waitReady(p, timeout, 0)
}

func (r *Ring) waitReady(p *Party, timeout, spin time.Duration) error {
	w := newWaiter(timeout, spin)
	defer w.done(r, p)
	for !r.canDequeue() {
		if err := w.wait(r, &r.notEmpty, p, r.canDequeue); err != nil {
			return err
		}
	}
	return nil
}

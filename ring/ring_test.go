package ring

import (
	"errors"
	"fmt"
	"runtime"
	"sync"
	"testing"
	"time"
	"unsafe"

	"github.com/shmexec/shmexec/shm"
)

// heapView returns n zeroed bytes of ordinary memory as a View: the ring
// logic is tested on the heap, fast and deterministic, and across
// processes elsewhere.
func heapView(n int) shm.View {
	words := make([]uint64, (n+7)/8)
	return shm.ViewOf(unsafe.Slice((*byte)(unsafe.Pointer(&words[0])), n))
}

type fixture struct {
	r  *Ring
	pt *Parties
}

func newFixture(t testing.TB, capacity, parties int) fixture {
	t.Helper()
	r, err := Init(heapView(int(Size(capacity))), 7, capacity)
	if err != nil {
		t.Fatal(err)
	}
	pt, err := OpenParties(heapView(int(PartiesSize(parties))))
	if err != nil {
		t.Fatal(err)
	}
	return fixture{r: r, pt: pt}
}

func (f fixture) join(t testing.TB, idx int) *Party {
	t.Helper()
	gen, err := f.pt.Activate(idx)
	if err != nil {
		t.Fatal(err)
	}
	p, err := f.pt.Join(idx, gen)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// drain takes every value that is ready.
func (f fixture) drain(t testing.TB, p *Party) []uint32 {
	t.Helper()
	var out []uint32
	for {
		v, err := f.r.TryDequeue(p)
		if errors.Is(err, ErrEmpty) {
			return out
		}
		if err != nil {
			t.Fatalf("drain: %v", err)
		}
		out = append(out, v)
	}
}

func TestFIFOAcrossManyLaps(t *testing.T) {
	for _, capacity := range []int{2, 4, 64} {
		f := newFixture(t, capacity, 2)
		prod, cons := f.join(t, 0), f.join(t, 1)
		next := uint32(0)
		for i := uint32(0); i < 10000; i++ {
			if err := f.r.TryEnqueue(prod, i); err != nil {
				t.Fatalf("cap %d: enqueue %d: %v", capacity, i, err)
			}
			if f.r.Len() >= capacity || i%3 == 0 {
				for {
					v, err := f.r.TryDequeue(cons)
					if errors.Is(err, ErrEmpty) {
						break
					}
					if err != nil || v != next {
						t.Fatalf("cap %d: dequeue got %d, %v; want %d", capacity, v, err, next)
					}
					next++
				}
			}
		}
	}
}

func TestFullAndEmpty(t *testing.T) {
	f := newFixture(t, 4, 1)
	p := f.join(t, 0)
	if _, err := f.r.TryDequeue(p); !errors.Is(err, ErrEmpty) {
		t.Fatalf("dequeue on empty ring: %v, want ErrEmpty", err)
	}
	for i := 0; i < 4; i++ {
		if err := f.r.TryEnqueue(p, uint32(i)); err != nil {
			t.Fatal(err)
		}
	}
	if err := f.r.TryEnqueue(p, 9); !errors.Is(err, ErrFull) {
		t.Fatalf("enqueue on full ring: %v, want ErrFull", err)
	}
	if err := f.r.Enqueue(p, 9, 10*time.Millisecond); !errors.Is(err, ErrTimeout) {
		t.Fatalf("blocking enqueue on full ring: %v, want ErrTimeout", err)
	}
	if err := f.r.Enqueue(p, 9, 0); !errors.Is(err, ErrTimeout) {
		t.Fatalf("enqueue with timeout 0 on full ring: %v, want ErrTimeout", err)
	}
	if f.r.Len() != 4 {
		t.Fatalf("Len = %d, want 4", f.r.Len())
	}
}

func TestBatchEnqueueDequeueKeepsOrder(t *testing.T) {
	f := newFixture(t, 64, 2)
	prod, cons := f.join(t, 0), f.join(t, 1)
	in := make([]uint32, 50)
	for i := range in {
		in[i] = uint32(i + 1)
	}
	if n, err := f.r.EnqueueBatch(prod, in, time.Second); n != 50 || err != nil {
		t.Fatalf("EnqueueBatch = %d, %v", n, err)
	}
	n, err := f.r.TryEnqueueBatch(prod, in)
	if n != 14 || err != nil {
		t.Fatalf("TryEnqueueBatch into 14 free cells = %d, %v", n, err)
	}
	var got []uint32
	buf := make([]uint32, 100)
	for len(got) < 64 {
		n, err := f.r.DequeueBatch(cons, buf, time.Second)
		if err != nil {
			t.Fatal(err)
		}
		if n > MaxBatch {
			t.Fatalf("one dequeue returned %d values, more than MaxBatch", n)
		}
		got = append(got, buf[:n]...)
	}
	for i, v := range got {
		want := uint32(i + 1)
		if i >= 50 {
			want = uint32(i - 50 + 1)
		}
		if v != want {
			t.Fatalf("value %d = %d, want %d", i, v, want)
		}
	}
}

func TestBlockingWakesUp(t *testing.T) {
	f := newFixture(t, 2, 2)
	prod, cons := f.join(t, 0), f.join(t, 1)
	f.r.Spin = 0 // sleep on the futex at once
	got := make(chan uint32, 1)
	errc := make(chan error, 1)
	go func() {
		v, err := f.r.Dequeue(cons, 5*time.Second)
		errc <- err
		got <- v
	}()
	time.Sleep(20 * time.Millisecond) // let it sleep; the test holds without this too
	if err := f.r.Enqueue(prod, 42, time.Second); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-errc:
		if err != nil || <-got != 42 {
			t.Fatalf("dequeue: %v", err)
		}
	case <-time.After(3 * time.Second):
		t.Fatal("a sleeping consumer was not woken by an enqueue within 3s")
	}
}

func TestInterruptEndsABlockedDequeue(t *testing.T) {
	f := newFixture(t, 2, 1)
	p := f.join(t, 0)
	f.r.Spin = 0
	errc := make(chan error, 1)
	go func() {
		_, err := f.r.Dequeue(p, -1)
		errc <- err
	}()
	boom := errors.New("pool dead")
	time.Sleep(10 * time.Millisecond)
	f.r.Interrupt(boom)
	select {
	case err := <-errc:
		if !errors.Is(err, boom) {
			t.Fatalf("interrupted dequeue returned %v, want %v", err, boom)
		}
	case <-time.After(3 * time.Second):
		t.Fatal("Interrupt did not end a blocked dequeue within 3s")
	}
}

// TestConcurrentMPMC moves values between goroutines with the race
// detector watching; each value arrives once, in order per producer.
func TestConcurrentMPMC(t *testing.T) {
	const producers, consumers, per = 3, 3, 20000
	f := newFixture(t, 16, producers+consumers+1)
	f.r.Spin = 5 * time.Microsecond
	var wg sync.WaitGroup
	for p := 0; p < producers; p++ {
		party := f.join(t, p)
		wg.Add(1)
		go func(p int) {
			defer wg.Done()
			for i := 1; i <= per; i++ {
				if err := f.r.Enqueue(party, uint32(p)<<24|uint32(i), 10*time.Second); err != nil {
					t.Errorf("producer %d: %v", p, err)
					return
				}
			}
		}(p)
	}
	results := make([][]uint32, consumers)
	var cwg sync.WaitGroup
	for c := 0; c < consumers; c++ {
		party := f.join(t, producers+c)
		cwg.Add(1)
		go func(c int) {
			defer cwg.Done()
			buf := make([]uint32, 1+c*5) // mix single and batch dequeues
			for {
				n, err := f.r.DequeueBatch(party, buf, 10*time.Second)
				if err != nil {
					t.Errorf("consumer %d: %v", c, err)
					return
				}
				stops := 0
				for _, v := range buf[:n] {
					if v == 0xffffffff {
						stops++
					} else {
						results[c] = append(results[c], v)
					}
				}
				if stops > 0 {
					// Pass on the stop values meant for other consumers.
					for ; stops > 1; stops-- {
						if err := f.r.Enqueue(party, 0xffffffff, 10*time.Second); err != nil {
							t.Errorf("consumer %d: %v", c, err)
						}
					}
					return
				}
			}
		}(c)
	}
	wg.Wait()
	stopper := f.join(t, producers+consumers)
	for c := 0; c < consumers; c++ {
		// One stop value per consumer: a batch dequeue may take several,
		// so send them one at a time and let each consumer take its own.
		if err := f.r.Enqueue(stopper, 0xffffffff, 10*time.Second); err != nil {
			t.Fatal(err)
		}
	}
	cwg.Wait()
	checkExactlyOnce(t, results, producers, per)
}

func checkExactlyOnce(t *testing.T, results [][]uint32, producers, per int) {
	t.Helper()
	seen := make(map[uint32]bool)
	for c, vs := range results {
		last := make(map[uint32]uint32)
		for _, v := range vs {
			if seen[v] {
				t.Fatalf("value %#x received twice", v)
			}
			seen[v] = true
			p, i := v>>24, v&0xffffff
			if i <= last[p] {
				t.Fatalf("consumer %d got producer %d's value %d after %d", c, p, i, last[p])
			}
			last[p] = i
		}
	}
	if len(seen) != producers*per {
		t.Fatalf("received %d distinct values, want %d", len(seen), producers*per)
	}
}

func TestDecodeCell(t *testing.T) {
	for _, tc := range []struct {
		w  uint64
		ok bool
	}{
		{makeCell(StateEmpty, 5, 0), true},
		{makeCell(StateEmpty, 5, 1), false},
		{makeCell(StateFull, lapMask, 0xffffffff), true},
		{makeCell(StateSkip, 1, 0), true},
		{makeCell(StateSkip, 1, 3), false},
		{7 << stateBits, false},
	} {
		c, err := DecodeCell(tc.w)
		if (err == nil) != tc.ok {
			t.Errorf("DecodeCell(%#x) = %v, %v; want ok=%v", tc.w, c, err, tc.ok)
		}
	}
}

func FuzzDecodeCell(f *testing.F) {
	f.Add(makeCell(StateFull, 3, 42))
	f.Add(makeCell(StateTaken, 0, 0x10002))
	f.Add(uint64(0xffffffffffffffff))
	f.Fuzz(func(t *testing.T, w uint64) {
		c, err := DecodeCell(w)
		if err != nil {
			return
		}
		if back := makeCell(c.State, c.Lap, c.Payload); back != w {
			t.Fatalf("DecodeCell(%#x) = %v re-encodes to %#x", w, c, back)
		}
	})
}

// FuzzRingOps drives a ring with arbitrary cell corruption and checks that
// operations return errors rather than panicking or looping forever.
func FuzzRingOps(f *testing.F) {
	f.Add([]byte{0, 1, 2, 3}, uint64(0), uint8(0))
	f.Add([]byte{1, 1, 1}, uint64(7<<61), uint8(3))
	f.Fuzz(func(t *testing.T, ops []byte, garbage uint64, at uint8) {
		fx := newFixture(t, 4, 1)
		p := fx.join(t, 0)
		fx.r.cells[int(at)%4].Store(garbage)
		for _, op := range ops {
			switch op % 3 {
			case 0:
				fx.r.TryEnqueue(p, uint32(op))
			case 1:
				fx.r.TryDequeue(p)
			case 2:
				fx.r.Recover(fx.pt, 0, p.gen)
			}
		}
	})
}

// TestAShortSleepIsATurn: a sleep that its waker ends within shortTurn
// counts as a turn taken with another thread, as a spin's yield that let
// one run does (TookTurns): a caller and a worker that share a CPU, and
// whose spins cannot see each other's steps there, each sleep until the
// other has run one. A sleep woken later is no turn (TestASleepClearsAYield).
func TestAShortSleepIsATurn(t *testing.T) {
	f := newFixture(t, 4, 2)
	f.r.Spin = 0 // sleep at once
	consumer, producer := f.join(t, 0), f.join(t, 1)
	// The consumer may be registered but not yet asleep when the value
	// comes (then it does not sleep, or its futex wait returns at once:
	// no turn), so this tries until one wait was a sleep.
	for attempt := 1; !consumer.TookTurns(); attempt++ {
		if attempt > 100 {
			t.Fatal("100 sleeps woken as soon as they began, and none counted as a turn")
		}
		got := make(chan error, 1)
		go func() {
			v, err := f.r.Dequeue(consumer, 10*time.Second)
			if err == nil && v != 7 {
				err = fmt.Errorf("Dequeue = %d; want 7", v)
			}
			got <- err
		}()
		for deadline := time.Now().Add(10 * time.Second); !anySet(f.r.notEmpty.sleepers); {
			if time.Now().After(deadline) {
				t.Fatal("the consumer did not go to sleep within 10 s")
			}
			runtime.Gosched()
		}
		for start := time.Now(); time.Since(start) < 20*time.Microsecond; {
		}
		if err := f.r.Enqueue(producer, 7, time.Second); err != nil {
			t.Fatal(err)
		}
		select {
		case err := <-got:
			if err != nil {
				t.Fatal(err)
			}
		case <-time.After(10 * time.Second):
			t.Fatal("the consumer was not woken within 10 s")
		}
	}
	go func() {
		time.Sleep(shortTurn + 20*time.Millisecond)
		f.r.Enqueue(producer, 8, time.Second)
	}()
	if v, err := f.r.Dequeue(consumer, 10*time.Second); err != nil || v != 8 {
		t.Fatalf("Dequeue = %d, %v; want 8", v, err)
	}
	if consumer.TookTurns() {
		t.Fatalf("a sleep of more than %v counted as a turn", shortTurn)
	}
}

// TestASleepClearsAYield: TookTurns reports spins that gave the CPU
// to another thread (TestSpinnersOnOneCPUTakeTurns) only while the party
// has not slept since: a wait that slept was no spinner's turn.
func TestASleepClearsAYield(t *testing.T) {
	f := newFixture(t, 4, 2)
	f.r.Spin = 0 // sleep at once
	consumer, producer := f.join(t, 0), f.join(t, 1)
	consumer.tookTurns.Store(true) // as after a spin that gave the CPU away
	sent := make(chan error, 1)
	go func() {
		time.Sleep(20 * time.Millisecond)
		sent <- f.r.Enqueue(producer, 5, time.Second)
	}()
	if v, err := f.r.Dequeue(consumer, 10*time.Second); err != nil || v != 5 {
		t.Fatalf("Dequeue = %d, %v; want 5", v, err)
	}
	if err := <-sent; err != nil {
		t.Fatal(err)
	}
	if consumer.TookTurns() {
		t.Fatal("a yield is still reported after a Dequeue that slept 20 ms")
	}
	consumer.tookTurns.Store(true)
	if err := f.r.Enqueue(producer, 6, time.Second); err != nil {
		t.Fatal(err)
	}
	if v, err := f.r.Dequeue(consumer, time.Second); err != nil || v != 6 {
		t.Fatalf("Dequeue = %d, %v; want 6", v, err)
	}
	if !consumer.TookTurns() || consumer.TookTurns() {
		t.Fatal("a yield is not reported once after a Dequeue that did not wait")
	}
}

package ring

import (
	"errors"
	"fmt"
	"math/rand"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/shmexec/shmexec/internal/testutil"
	"github.com/shmexec/shmexec/shm"
)

// Cross-process tests: the test binary re-executed as producer and
// consumer children, all on one memfd segment passed as fd 3.

const (
	kindParties = 1
	kindRing    = 2
	kindLog     = 3 // one per consumer slot: count (uint64) at 0, values (uint32) from 64
	kindControl = 4 // chaos test: id counter at 0, producers' hands at 64 + 8*slot

	stopValue = 0xffffffff
)

type procFixture struct {
	fixture
	seg *shm.Segment
}

func newProcFixture(t testing.TB, capacity, parties, logs, logCap int) *procFixture {
	t.Helper()
	specs := []shm.RegionSpec{
		{Kind: kindParties, Size: PartiesSize(parties)},
		{Kind: kindRing, Size: Size(capacity)},
		{Kind: kindControl, Size: 4096},
	}
	for i := 0; i < logs; i++ {
		specs = append(specs, shm.RegionSpec{Kind: kindLog, Index: uint32(i), Size: 64 + 4*uint64(logCap)})
	}
	seg, err := shm.Create("ring-test", specs)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { seg.Close() })
	f, err := openProcFixture(seg)
	if err != nil {
		t.Fatal(err)
	}
	rv, _ := seg.Region(kindRing, 0)
	if f.r, err = Init(rv, 1, capacity); err != nil {
		t.Fatal(err)
	}
	return f
}

func openProcFixture(seg *shm.Segment) (*procFixture, error) {
	pv, err := seg.Region(kindParties, 0)
	if err != nil {
		return nil, err
	}
	pt, err := OpenParties(pv)
	if err != nil {
		return nil, err
	}
	f := &procFixture{seg: seg, fixture: fixture{pt: pt}}
	if rv, err := seg.Region(kindRing, 0); err == nil {
		f.r, _ = Open(rv) // nil before Init; the creator inits
	}
	return f, nil
}

func (f *procFixture) control() shm.View {
	v, _ := f.seg.Region(kindControl, 0)
	return v
}

// log returns the consumer log of slot i: what that slot's consumers
// recorded, in order.
func (f *procFixture) log(i int) []uint32 {
	v, err := f.seg.Region(kindLog, uint32(i))
	if err != nil {
		panic(err)
	}
	n := int(v.Uint64(0).Load())
	out := make([]uint32, n)
	for j := range out {
		out[j] = v.Uint32(64 + 4*j).Load()
	}
	return out
}

// spawn starts a child in role as party idx under a fresh generation.
func (f *procFixture) spawn(t testing.TB, role string, idx int, env ...string) (*exec.Cmd, uint16) {
	t.Helper()
	gen, err := f.pt.Activate(idx)
	if err != nil {
		t.Fatal(err)
	}
	env = append(env, fmt.Sprintf("SHMX_T_PARTY=%d:%d", idx, gen))
	cmd := testutil.Child(t, role, []*os.File{f.seg.File()}, env...)
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	f.pt.SetPID(idx, gen, cmd.Process.Pid)
	return cmd, gen
}

// --- children ---------------------------------------------------------

type childEnv struct {
	f     *procFixture
	party *Party
}

func attachChild() (*childEnv, error) {
	seg, err := shm.Attach(os.NewFile(3, "segment"))
	if err != nil {
		return nil, err
	}
	f, err := openProcFixture(seg)
	if err != nil {
		return nil, err
	}
	var idx, gen int
	if _, err := fmt.Sscanf(os.Getenv("SHMX_T_PARTY"), "%d:%d", &idx, &gen); err != nil {
		return nil, fmt.Errorf("SHMX_T_PARTY: %v", err)
	}
	p, err := f.pt.Join(idx, uint16(gen))
	if err != nil {
		return nil, err
	}
	if testutil.EnvInt("SHMX_T_SLEEP", 0) == 1 {
		f.r.Spin = 0
	}
	return &childEnv{f: f, party: p}, nil
}

func childFail(err error) int {
	fmt.Fprintln(os.Stderr, "child:", err)
	return 3
}

// childProducer enqueues tag<<24 | 1..N in batches of SHMX_T_BATCH.
func childProducer() int {
	c, err := attachChild()
	if err != nil {
		return childFail(err)
	}
	n, batch, tag := testutil.EnvInt("SHMX_T_N", 0), testutil.EnvInt("SHMX_T_BATCH", 1), uint32(testutil.EnvInt("SHMX_T_TAG", 0))
	buf := make([]uint32, 0, batch)
	for i := 1; i <= n; {
		buf = buf[:0]
		for j := 0; j < batch && i+j <= n; j++ {
			buf = append(buf, tag<<24|uint32(i+j))
		}
		k, err := c.f.r.EnqueueBatch(c.party, buf, 20*time.Second)
		if err != nil {
			return childFail(fmt.Errorf("enqueue: %w", err))
		}
		i += k
	}
	return 0
}

// childConsumer dequeues batches of up to SHMX_T_BATCH and appends them
// to log SHMX_T_LOG until it takes a stop value, then passes on any extra
// stop values it took and exits.
func childConsumer() int {
	c, err := attachChild()
	if err != nil {
		return childFail(err)
	}
	lv, err := c.f.seg.Region(kindLog, uint32(testutil.EnvInt("SHMX_T_LOG", 0)))
	if err != nil {
		return childFail(err)
	}
	count := lv.Uint64(0)
	buf := make([]uint32, testutil.EnvInt("SHMX_T_BATCH", 1))
	for {
		n, err := c.f.r.DequeueBatch(c.party, buf, 20*time.Second)
		if err != nil {
			return childFail(fmt.Errorf("dequeue: %w", err))
		}
		stops := 0
		for _, v := range buf[:n] {
			if v == stopValue {
				stops++
				continue
			}
			k := count.Load()
			if err := lv.Check(64+4*k, 4); err != nil {
				return childFail(fmt.Errorf("log full: %w", err))
			}
			lv.Uint32(64 + 4*int(k)).Store(v)
			count.Store(k + 1)
		}
		c.party.Release()
		if stops > 0 {
			for ; stops > 1; stops-- {
				if err := c.f.r.Enqueue(c.party, stopValue, 20*time.Second); err != nil {
					return childFail(err)
				}
			}
			return 0
		}
	}
}

// childChaosProducer takes ids from the shared counter, recording each in
// its slot's hand before taking it, and enqueues them until the counter
// passes SHMX_T_N.
func childChaosProducer() int {
	c, err := attachChild()
	if err != nil {
		return childFail(err)
	}
	ctl := c.f.control()
	counter, hand := ctl.Uint64(0), ctl.Uint64(64+8*testutil.EnvInt("SHMX_T_SLOT", 0))
	n := uint64(testutil.EnvInt("SHMX_T_N", 0))
	for {
		cur := counter.Load()
		if cur >= n {
			return 0
		}
		hand.Store(cur + 1) // before taking it, so no id is ever in nobody's hands
		if !counter.CompareAndSwap(cur, cur+1) {
			continue
		}
		if err := c.f.r.Enqueue(c.party, uint32(cur+1), 20*time.Second); err != nil {
			return childFail(err)
		}
	}
}

// --- tests ------------------------------------------------------------

// TestCrossProcessMillion moves 1,000,000 values from two producer
// processes to two consumer processes.
func TestCrossProcessMillion(t *testing.T) {
	const producers, consumers, per = 2, 2, 500000
	f := newProcFixture(t, 1024, producers+consumers+1, consumers, producers*per+16)
	var cmds []*exec.Cmd
	for c := 0; c < consumers; c++ {
		cmd, _ := f.spawn(t, "ring-consumer", producers+c, "SHMX_T_BATCH=16", fmt.Sprintf("SHMX_T_LOG=%d", c))
		cmds = append(cmds, cmd)
	}
	var prods []*exec.Cmd
	for p := 0; p < producers; p++ {
		cmd, _ := f.spawn(t, "ring-producer", p, fmt.Sprintf("SHMX_T_N=%d", per),
			"SHMX_T_BATCH=64", fmt.Sprintf("SHMX_T_TAG=%d", p+1))
		prods = append(prods, cmd)
	}
	for _, cmd := range prods {
		if err := testutil.WaitTimeout(t, cmd, 3*time.Minute); err != nil {
			t.Fatalf("producer: %v", err)
		}
	}
	sup := f.join(t, producers+consumers)
	for c := 0; c < consumers; c++ {
		if err := f.r.Enqueue(sup, stopValue, 10*time.Second); err != nil {
			t.Fatal(err)
		}
	}
	for _, cmd := range cmds {
		if err := testutil.WaitTimeout(t, cmd, time.Minute); err != nil {
			t.Fatalf("consumer: %v", err)
		}
	}
	results := make([][]uint32, consumers)
	for c := range results {
		results[c] = f.log(c)
	}
	// checkExactlyOnce numbers producers from 0; tags here start at 1.
	for _, vs := range results {
		for i := range vs {
			vs[i] -= 1 << 24
		}
	}
	checkExactlyOnce(t, results, producers, per)
}

func killedBySIGKILL(err error) bool {
	var ee *exec.ExitError
	if !errors.As(err, &ee) {
		return false
	}
	ws, ok := ee.Sys().(syscall.WaitStatus)
	return ok && ws.Signaled() && ws.Signal() == syscall.SIGKILL
}

// TestCrashPointsCrossProcess SIGKILLs a producer or consumer child right
// after each step that docs/PROTOCOL.md names, recovers it, and checks that
// nothing is lost and the ring flows again.
func TestCrashPointsCrossProcess(t *testing.T) {
	if !crashpointsEnabled() {
		t.Skip("crash points need -tags shmexec_crash (make test sets it)")
	}
	for _, point := range ringCrashPoints() {
		for _, batch := range []int{1, 5} {
			for _, nth := range []int{1, 2} {
				name := fmt.Sprintf("%s@%d/batch%d", point, nth, batch)
				t.Run(name, func(t *testing.T) {
					f := newProcFixture(t, 64, 2, 1, 128)
					helper := f.join(t, 1)
					for i := 0; i < 70; i++ { // wrap past lap 0
						f.r.TryEnqueue(helper, 99)
						f.r.TryDequeue(helper)
					}
					crash := fmt.Sprintf("SHMEXEC_CRASH=%s@%d", point, nth)
					if strings.HasPrefix(point, "ring.enq.") {
						const n = 40
						cmd, gen := f.spawn(t, "ring-producer", 0, crash, fmt.Sprintf("SHMX_T_N=%d", n), fmt.Sprintf("SHMX_T_BATCH=%d", batch))
						if err := testutil.WaitTimeout(t, cmd, 30*time.Second); !killedBySIGKILL(err) {
							t.Fatalf("producer did not die at the crash point: %v", err)
						}
						orphans, err := f.r.Recover(f.pt, 0, gen)
						if err != nil {
							t.Fatal(err)
						}
						f.pt.Free(0, gen)
						received := f.drain(t, helper)
						// The child had handed at most n values to the ring.
						if err := checkProducerDeath(received, orphans, 0, n); err != nil {
							t.Fatal(err)
						}
					} else {
						const total = 40
						for v := uint32(1); v <= total; v++ {
							f.r.TryEnqueue(helper, v)
						}
						cmd, gen := f.spawn(t, "ring-consumer", 0, crash, fmt.Sprintf("SHMX_T_BATCH=%d", batch))
						if err := testutil.WaitTimeout(t, cmd, 30*time.Second); !killedBySIGKILL(err) {
							t.Fatalf("consumer did not die at the crash point: %v", err)
						}
						orphans, err := f.r.Recover(f.pt, 0, gen)
						if err != nil {
							t.Fatal(err)
						}
						f.pt.Free(0, gen)
						if err := checkConsumerDeath(f.log(0), f.drain(t, helper), orphans, total); err != nil {
							t.Fatal(err)
						}
					}
					for i := uint32(0); i < 200; i++ {
						if err := f.r.Enqueue(helper, i, time.Second); err != nil {
							t.Fatalf("ring stuck after recovery: %v", err)
						}
						if v, err := f.r.Dequeue(helper, time.Second); err != nil || v != i {
							t.Fatalf("ring stuck after recovery: got %d, %v", v, err)
						}
					}
				})
			}
		}
	}
}

// TestRandomKills SIGKILLs producers and consumers at random while 100,000
// values flow. The supervisor (this test) recovers each dead party, puts
// back what recovery hands it, and respawns. In the end every id is
// received exactly once, except that an id still in a dead producer's
// hand may never have reached the ring, and a MaybeDelivered value may
// also be in the dead consumer's log.
func TestRandomKills(t *testing.T) {
	n := 100000
	if testing.Short() {
		n = 20000
	}
	const producers, consumers = 2, 2
	const sup = producers + consumers
	f := newProcFixture(t, 64, sup+1, consumers, 4*n)
	supParty := f.join(t, sup)
	seed := time.Now().UnixNano()
	rng := rand.New(rand.NewSource(seed))
	t.Logf("seed %d", seed)

	type child struct {
		cmd  *exec.Cmd
		gen  uint16
		born time.Time
	}
	type exit struct {
		slot int
		err  error
	}
	exits := make(chan exit, 16)
	kids := make([]*child, sup)
	start := func(slot int) {
		var cmd *exec.Cmd
		var gen uint16
		if slot < producers {
			cmd, gen = f.spawn(t, "ring-chaos-producer", slot, fmt.Sprintf("SHMX_T_N=%d", n), fmt.Sprintf("SHMX_T_SLOT=%d", slot))
		} else {
			cmd, gen = f.spawn(t, "ring-consumer", slot, "SHMX_T_BATCH=8", fmt.Sprintf("SHMX_T_LOG=%d", slot-producers))
		}
		kids[slot] = &child{cmd: cmd, gen: gen, born: time.Now()}
		go func() { exits <- exit{slot, cmd.Wait()} }()
	}
	for s := 0; s < sup; s++ {
		start(s)
	}
	t.Cleanup(func() {
		for _, k := range kids {
			if k != nil {
				k.cmd.Process.Kill() // only our own children, by pid
			}
		}
	})

	var backlog []uint32                // values to put back into the ring
	maybeDelivered := map[uint32]bool{} // flagged possible duplicates
	deadHands := map[uint32]bool{}
	kills, done, stopping := 0, 0, false
	deadline := time.After(3 * time.Minute)
	tick := time.NewTicker(3 * time.Millisecond)
	defer tick.Stop()
	ctl := f.control()
	for done < sup {
		select {
		case <-deadline:
			t.Fatalf("not finished after 3 minutes: %d of %d ids taken, %d kills, backlog %d",
				ctl.Uint64(0).Load(), n, kills, len(backlog))
		case e := <-exits:
			k := kids[e.slot]
			kids[e.slot] = nil
			if e.err == nil {
				done++
				if e.slot < producers && ctl.Uint64(0).Load() < uint64(n) {
					t.Fatalf("producer %d exited before all ids were taken", e.slot)
				}
				continue
			}
			if !killedBySIGKILL(e.err) {
				t.Fatalf("child in slot %d failed: %v", e.slot, e.err)
			}
			orphans, err := f.r.Recover(f.pt, e.slot, k.gen)
			if err != nil {
				t.Fatalf("recover slot %d: %v", e.slot, err)
			}
			f.pt.Free(e.slot, k.gen)
			var logged []uint32
			if e.slot >= producers {
				logged = f.log(e.slot - producers)
				if len(logged) > 32 {
					logged = logged[len(logged)-32:]
				}
			} else {
				deadHands[uint32(ctl.Uint64(64+8*e.slot).Load())] = true
			}
			for _, o := range orphans {
				switch {
				case o.Kind == Enqueued:
					// In the ring already.
				case o.Kind == MaybeDelivered && contains(logged, o.Value):
					maybeDelivered[o.Value] = true
				default:
					backlog = append(backlog, o.Value)
				}
			}
			start(e.slot)
		case <-tick.C:
			// Put back what recovery handed us, without blocking: the
			// consumers that would make room may be dead right now.
			for len(backlog) > 0 && f.r.TryEnqueue(supParty, backlog[0]) == nil {
				backlog = backlog[1:]
			}
			if ctl.Uint64(0).Load() >= uint64(n) {
				producersLeft := 0
				for s := 0; s < producers; s++ {
					if kids[s] != nil {
						producersLeft++
					}
				}
				if producersLeft == 0 && len(backlog) == 0 && !stopping {
					stopping = true
					for c := 0; c < consumers; c++ {
						backlog = append(backlog, stopValue)
					}
				}
				continue // stop killing once all ids are taken
			}
			if rng.Intn(3) == 0 {
				s := rng.Intn(sup)
				if k := kids[s]; k != nil && time.Since(k.born) > 5*time.Millisecond {
					k.cmd.Process.Signal(syscall.SIGKILL)
					kills++
				}
			}
		}
	}
	rest := f.drain(t, supParty)
	count := map[uint32]int{}
	for c := 0; c < consumers; c++ {
		for _, v := range f.log(c) {
			count[v]++
		}
	}
	for _, v := range rest {
		if v != stopValue {
			count[v]++
		}
	}
	var lost []uint32
	for id := uint32(1); id <= uint32(n); id++ {
		switch c := count[id]; {
		case c == 1:
		case c == 2 && maybeDelivered[id]:
		case c == 0 && deadHands[id]:
		case c == 0:
			lost = append(lost, id)
		default:
			t.Errorf("id %d received %d times", id, c)
		}
	}
	if len(lost) > 0 {
		t.Errorf("%d ids lost, first %v", len(lost), lost[:min(10, len(lost))])
	}
	t.Logf("%d ids, %d kills, %d flagged duplicates, %d ids in dead hands", n, kills, len(maybeDelivered), len(deadHands))
	if kills == 0 {
		t.Error("no child was killed: the test proved nothing")
	}
}

func contains(vs []uint32, v uint32) bool {
	for _, x := range vs {
		if x == v {
			return true
		}
	}
	return false
}

// Command ringdemo shows a robust ring across processes: two producer
// processes send 1,000,000 values to two consumer processes through one
// shared-memory ring; one consumer is SIGKILLed in the middle, the
// supervisor (this process) recovers what it held and starts a
// replacement, and in the end every value has arrived exactly once.
//
// Run it with `make demo` or `go run ./examples/go/ringdemo`.
package main

import (
	"fmt"
	"os"
	"os/exec"
	"syscall"
	"time"

	"github.com/shmexec/shmexec/ring"
	"github.com/shmexec/shmexec/shm"
)

const (
	kindParties = 1
	kindRing    = 2
	kindSeen    = 3 // one byte per value: how many times a consumer took it

	producers = 2
	consumers = 2
	perProd   = 500000
	total     = producers * perProd
	stop      = 0xffffffff
)

func main() {
	if role := os.Getenv("RINGDEMO_ROLE"); role != "" {
		os.Exit(child(role))
	}
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "ringdemo:", err)
		os.Exit(1)
	}
}

type handles struct {
	seg  *shm.Segment
	r    *ring.Ring
	pt   *ring.Parties
	seen shm.View
}

func open(seg *shm.Segment, create bool) (*handles, error) {
	h := &handles{seg: seg}
	pv, err := seg.Region(kindParties, 0)
	if err != nil {
		return nil, err
	}
	if h.pt, err = ring.OpenParties(pv); err != nil {
		return nil, err
	}
	rv, err := seg.Region(kindRing, 0)
	if err != nil {
		return nil, err
	}
	if create {
		h.r, err = ring.Init(rv, 1, 256)
	} else {
		h.r, err = ring.Open(rv)
	}
	if err != nil {
		return nil, err
	}
	h.seen, err = seg.Region(kindSeen, 0)
	return h, err
}

func run() error {
	seg, err := shm.Create("ringdemo", []shm.RegionSpec{
		{Kind: kindParties, Size: ring.PartiesSize(8)},
		{Kind: kindRing, Size: ring.Size(256)},
		{Kind: kindSeen, Size: total + 8},
	})
	if err != nil {
		return err
	}
	defer seg.Close()
	h, err := open(seg, true)
	if err != nil {
		return err
	}
	type proc struct {
		cmd  *exec.Cmd
		slot int
		gen  uint16
		done chan error
	}
	spawn := func(role string, slot int, arg int) (*proc, error) {
		gen, err := h.pt.Activate(slot)
		if err != nil {
			return nil, err
		}
		cmd := exec.Command(os.Args[0])
		cmd.Env = append(os.Environ(), "RINGDEMO_ROLE="+role,
			fmt.Sprintf("RINGDEMO_PARTY=%d:%d:%d", slot, gen, arg))
		cmd.ExtraFiles = []*os.File{seg.File()}
		cmd.Stderr = os.Stderr
		if err := cmd.Start(); err != nil {
			return nil, err
		}
		h.pt.SetPID(slot, gen, cmd.Process.Pid)
		p := &proc{cmd: cmd, slot: slot, gen: gen, done: make(chan error, 1)}
		go func() { p.done <- cmd.Wait() }()
		return p, nil
	}

	start := time.Now()
	var cons []*proc
	for c := 0; c < consumers; c++ {
		p, err := spawn("consumer", producers+c, 0)
		if err != nil {
			return err
		}
		cons = append(cons, p)
	}
	var prods []*proc
	for i := 0; i < producers; i++ {
		p, err := spawn("producer", i, i)
		if err != nil {
			return err
		}
		prods = append(prods, p)
	}

	// Kill the first consumer once it has done some work.
	time.Sleep(20 * time.Millisecond)
	victim := cons[0]
	fmt.Printf("supervisor: SIGKILL consumer pid %d (party %d, generation %d)\n", victim.cmd.Process.Pid, victim.slot, victim.gen)
	victim.cmd.Process.Signal(syscall.SIGKILL)
	<-victim.done
	orphans, err := ring.Recover(h.pt, victim.slot, victim.gen, []*ring.Ring{h.r})
	if err != nil {
		return fmt.Errorf("recover: %w", err)
	}
	h.pt.Free(victim.slot, victim.gen)
	sup, err := h.pt.Join(7, mustActivate(h.pt, 7))
	if err != nil {
		return err
	}
	for _, o := range orphans {
		// A MaybeDelivered value may already be marked seen by the dead
		// consumer; its own record (the seen table) says whether.
		if o.Kind == ring.Enqueued || o.Kind == ring.MaybeDelivered && o.Value != stop && seenCount(h, o.Value) > 0 {
			continue
		}
		if err := h.r.Enqueue(sup, o.Value, 10*time.Second); err != nil {
			return err
		}
	}
	fmt.Printf("supervisor: recovered %d value(s) the dead consumer held: %v\n", len(orphans), orphans)
	if cons[0], err = spawn("consumer", victim.slot, 0); err != nil {
		return err
	}

	for _, p := range prods {
		if err := <-p.done; err != nil {
			return fmt.Errorf("producer: %w", err)
		}
	}
	for range cons {
		if err := h.r.Enqueue(sup, stop, 10*time.Second); err != nil {
			return err
		}
	}
	for _, p := range cons {
		select {
		case err := <-p.done:
			if err != nil {
				return fmt.Errorf("consumer: %w", err)
			}
		case <-time.After(30 * time.Second):
			return fmt.Errorf("consumer did not finish within 30s")
		}
	}
	missing, twice := 0, 0
	for v := 1; v <= total; v++ {
		switch seenCount(h, uint32(v)) {
		case 0:
			missing++
		case 1:
		default:
			twice++
		}
	}
	fmt.Printf("moved %d values between %d producer and %d consumer processes in %v: %d missing, %d twice\n",
		total, producers, consumers, time.Since(start).Round(time.Millisecond), missing, twice)
	if missing+twice > 0 {
		return fmt.Errorf("values lost or duplicated")
	}
	return nil
}

func mustActivate(pt *ring.Parties, idx int) uint16 {
	gen, err := pt.Activate(idx)
	if err != nil {
		panic(err)
	}
	return gen
}

// seenCount reads v's byte in the seen table (values are at most total,
// which the table covers).
func seenCount(h *handles, v uint32) uint8 {
	return uint8(h.seen.Uint32(int(v)&^3).Load() >> (8 * (v & 3)))
}

func child(role string) int {
	seg, err := shm.Attach(os.NewFile(3, "segment"))
	if err != nil {
		fmt.Fprintln(os.Stderr, role+":", err)
		return 1
	}
	h, err := open(seg, false)
	if err != nil {
		fmt.Fprintln(os.Stderr, role+":", err)
		return 1
	}
	var slot, gen, arg int
	fmt.Sscanf(os.Getenv("RINGDEMO_PARTY"), "%d:%d:%d", &slot, &gen, &arg)
	p, err := h.pt.Join(slot, uint16(gen))
	if err != nil {
		fmt.Fprintln(os.Stderr, role+":", err)
		return 1
	}
	switch role {
	case "producer":
		buf := make([]uint32, 64)
		for i := 0; i < perProd; i += len(buf) {
			buf = buf[:min(64, perProd-i)]
			for j := range buf {
				buf[j] = uint32(arg*perProd + i + j + 1)
			}
			if _, err := h.r.EnqueueBatch(p, buf, 10*time.Second); err != nil {
				fmt.Fprintln(os.Stderr, "producer:", err)
				return 1
			}
		}
		return 0
	case "consumer":
		buf := make([]uint32, ring.MaxBatch)
		for {
			n, err := h.r.DequeueBatch(p, buf, 10*time.Second)
			if err != nil {
				fmt.Fprintln(os.Stderr, "consumer:", err)
				return 1
			}
			for _, v := range buf[:n] {
				if v == stop {
					continue
				}
				// Mark v seen: add 1 to its byte in the seen table.
				h.seen.Uint32(int(v) &^ 3).Add(1 << (8 * (v & 3)))
			}
			p.Release()
			stops := 0
			for _, v := range buf[:n] {
				if v == stop {
					stops++
				}
			}
			if stops > 0 {
				// Pass on stop values meant for the other consumers.
				for ; stops > 1; stops-- {
					h.r.Enqueue(p, stop, 10*time.Second)
				}
				return 0
			}
		}
	}
	fmt.Fprintln(os.Stderr, "unknown role", role, "- ringdemo runs its children itself")
	return 2
}

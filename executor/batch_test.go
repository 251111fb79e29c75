package executor

import (
	"bytes"
	"testing"

	"github.com/shmexec/shmexec/shm"
)

func FuzzDecodeBatch(f *testing.F) {
	f.Add(encodeBatch("echo", [][]byte{[]byte("a"), nil, []byte("ccc")}))
	f.Add([]byte{0xff, 0xff, 1, 2})
	f.Fuzz(func(t *testing.T, b []byte) {
		name, items, err := decodeBatch(b)
		if err != nil {
			return
		}
		// What decodes re-encodes to the same bytes, up to trailing
		// garbage.
		again := encodeBatch(name, items)
		if !bytes.HasPrefix(b, again) {
			t.Fatalf("decode/encode mismatch")
		}
	})
}

func FuzzDecodeBatchResult(f *testing.F) {
	f.Add([]byte{0, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0, 0, 2, 0, 0, 0, 'h', 'i'}, 1)
	f.Fuzz(func(t *testing.T, b []byte, n int) {
		if n < 0 || n > 1000 {
			return
		}
		decodeBatchResult(b, n)
	})
}

// smallLayout is a layout of one worker, one client, 4 slots and 4 pages
// in a fresh segment, closed when the test ends.
func smallLayout(tb testing.TB, name string) *layout {
	g := geometry{workers: 1, clients: 1, slots: 4, inline: 64, pages: 4, maxPayload: 1 << 20}
	seg, err := shm.Create(name, g.specs())
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { seg.Close() })
	l, err := openLayout(seg, true, g)
	if err != nil {
		tb.Fatal(err)
	}
	return l
}

// FuzzPayloadRefs feeds arbitrary refs and lengths, as a dead or buggy
// process could leave them in a slot, to the code that resolves them:
// it must return an error or bytes inside the segment, never panic.
func FuzzPayloadRefs(f *testing.F) {
	l := smallLayout(f, "fuzz")
	f.Add(uint8(0), uint64(0), uint64(10), false)
	f.Add(uint8(3), uint64(refArena|3), uint64(pageSize), true)
	f.Fuzz(func(t *testing.T, idx uint8, ref, n uint64, output bool) {
		b, err := l.payload(int(idx)%l.g.slots, ref, n, output)
		if err == nil && uint64(len(b)) != n {
			t.Fatalf("payload(%#x, %d) returned %d bytes", ref, n, len(b))
		}
		l.freePages(int(ref), int(n%64), ref)
		l.setOwner(int(ref), int(n%64), 0, ref)
	})
}

// FuzzParseTicket: a client parses the ticket a server sent; garbage must
// give an error or a ticket that prints back the same, never a panic.
func FuzzParseTicket(f *testing.F) {
	f.Add("1:2:3")
	f.Add("-1:65536:0")
	f.Add("")
	f.Add("9999999999999999999:1:1")
	f.Fuzz(func(t *testing.T, s string) {
		tk, err := ParseTicket(s)
		if err != nil {
			return
		}
		again, err := ParseTicket(tk.String())
		if err != nil || again != tk {
			t.Fatalf("%q parsed as %+v, which prints as %q and parses as %+v, %v", s, tk, tk.String(), again, err)
		}
	})
}

// A move of pages that meets a page of another owner changes nothing: a
// submitted buffer or an output kept in place is then handled as before,
// with every page still where recovery looks for it.
func TestSetOwnerAllOrNothing(t *testing.T) {
	l := smallLayout(t, "setowner")
	a, b, other := pageOwner(pageOutput, 7), pageOwner(pageParty, 1), pageOwner(pageInput, 9)
	for i, o := range []uint64{a, a, other, a} {
		l.pages[i].Store(o)
	}
	if err := l.setOwner(0, 4, a, b); err == nil {
		t.Fatal("a move over another owner's page succeeded")
	}
	for i, want := range []uint64{a, a, other, a} {
		if got := l.pages[i].Load(); got != want {
			t.Fatalf("page %d owned by %#x after a failed move, want %#x", i, got, want)
		}
	}
	if err := l.setOwner(0, 2, a, b); err != nil || l.pages[0].Load() != b || l.pages[1].Load() != b {
		t.Fatalf("a move of pages owned by a: %v", err)
	}
}

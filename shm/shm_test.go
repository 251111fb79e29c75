package shm

import (
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"testing"

	"github.com/shmexec/shmexec/internal/testutil"
)

func TestMain(m *testing.M) {
	testutil.Main(m, map[string]func() int{"shm-attach": childAttach})
}

var testSpecs = []RegionSpec{
	{Kind: 1, Size: 100},
	{Kind: 2, Index: 0, Size: 4096, Align: 4096},
	{Kind: 2, Index: 1, Size: 64},
}

func TestCreateAttach(t *testing.T) {
	seg, err := Create("test", testSpecs)
	if err != nil {
		t.Fatal(err)
	}
	defer seg.Close()
	v, err := seg.Region(2, 1)
	if err != nil {
		t.Fatal(err)
	}
	v.Uint64(8).Store(0xfeed)
	if _, err := seg.Region(3, 0); !errors.Is(err, ErrNoRegion) {
		t.Fatalf("missing region: %v", err)
	}
	// Attach a second mapping of the same file, as another process would.
	dup, err := dupFile(seg.File())
	if err != nil {
		t.Fatal(err)
	}
	seg2, err := Attach(dup)
	if err != nil {
		dup.Close()
		t.Fatal(err)
	}
	defer seg2.Close()
	v2, _ := seg2.Region(2, 1)
	if got := v2.Uint64(8).Load(); got != 0xfeed {
		t.Fatalf("second mapping reads %#x", got)
	}
	if seg.Close() != nil || seg.Close() != nil {
		t.Fatal("Close is not idempotent")
	}
}

func dupFile(f *os.File) (*os.File, error) {
	fd, err := dupFD(f.Fd())
	if err != nil {
		return nil, err
	}
	return os.NewFile(fd, f.Name()), nil
}

// TestAttachFromChild passes the segment to a child process as fd 3.
func TestAttachFromChild(t *testing.T) {
	seg, err := Create("test", testSpecs)
	if err != nil {
		t.Fatal(err)
	}
	defer seg.Close()
	cmd := testutil.Child(t, "shm-attach", []*os.File{seg.File()})
	if err := cmd.Run(); err != nil {
		t.Fatalf("child: %v", err)
	}
	v, _ := seg.Region(1, 0)
	if got := v.Uint64(0).Load(); got != 42 {
		t.Fatalf("child wrote %d, want 42", got)
	}
}

func childAttach() int {
	seg, err := Attach(os.NewFile(3, "segment"))
	if err != nil {
		println(err.Error())
		return 1
	}
	v, err := seg.Region(1, 0)
	if err != nil {
		return 1
	}
	v.Uint64(0).Store(42)
	return 0
}

func TestAttachRejectsUnsealed(t *testing.T) {
	f, err := os.CreateTemp(t.TempDir(), "seg")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	f.Truncate(8192)
	if _, err := Attach(f); err == nil {
		t.Fatal("Attach accepted a file that is not sealed against resizing")
	}
}

func validHeader(t *testing.T) []byte {
	t.Helper()
	h, err := Layout(testSpecs)
	if err != nil {
		t.Fatal(err)
	}
	b := make([]byte, h.TotalSize)
	writeHeader(b, h)
	return b
}

func TestParseHeader(t *testing.T) {
	le := binary.LittleEndian
	for _, tc := range []struct {
		name    string
		edit    func(b []byte) []byte
		wantErr error
	}{
		{"valid", func(b []byte) []byte { return b }, nil},
		{"bad magic", func(b []byte) []byte { b[0] = 'X'; return b }, ErrBadMagic},
		{"other ABI", func(b []byte) []byte { le.PutUint32(b[offABI:], 2); return b }, ErrABIVersion},
		{"truncated file", func(b []byte) []byte { return b[:len(b)-4096] }, ErrTruncated},
		{"tiny file", func(b []byte) []byte { return b[:10] }, ErrTruncated},
		{"longer than header says", func(b []byte) []byte { return append(b, make([]byte, 4096)...) }, ErrBadHeader},
		{"header size", func(b []byte) []byte { le.PutUint32(b[offHeaderSize:], 64); return b }, ErrBadHeader},
		{"too many regions", func(b []byte) []byte { le.PutUint32(b[offNRegions:], MaxRegions+1); return b }, ErrBadHeader},
		{"region out of bounds", func(b []byte) []byte { le.PutUint64(b[offRegions+16:], 1<<40); return b }, ErrBadRegion},
		{"region offset overflow", func(b []byte) []byte { le.PutUint64(b[offRegions+8:], ^uint64(63)); return b }, ErrBadRegion},
		{"region in header", func(b []byte) []byte { le.PutUint64(b[offRegions+8:], 64); return b }, ErrBadRegion},
		{"misaligned region", func(b []byte) []byte { le.PutUint64(b[offRegions+8:], 4096+8); return b }, ErrBadRegion},
		{"empty region", func(b []byte) []byte { le.PutUint64(b[offRegions+16:], 0); return b }, ErrBadRegion},
		{"overlap", func(b []byte) []byte {
			off := le.Uint64(b[offRegions+regionEntry+8:])
			le.PutUint64(b[offRegions+2*regionEntry+8:], off+64)
			return b
		}, ErrBadRegion},
		{"duplicate region", func(b []byte) []byte { le.PutUint32(b[offRegions+2*regionEntry+4:], 0); return b }, ErrBadRegion},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := ParseHeader(tc.edit(validHeader(t)))
			if tc.wantErr == nil && err != nil || tc.wantErr != nil && !errors.Is(err, tc.wantErr) {
				t.Fatalf("ParseHeader: %v, want %v", err, tc.wantErr)
			}
		})
	}
}

func FuzzParseHeader(f *testing.F) {
	h, _ := Layout(testSpecs)
	b := make([]byte, h.TotalSize)
	writeHeader(b, h)
	f.Add(b[:HeaderSize], uint32(h.TotalSize))
	f.Add([]byte(Magic), uint32(8192))
	f.Fuzz(func(t *testing.T, hdr []byte, size uint32) {
		size %= 1 << 20
		seg := make([]byte, max(int(size), len(hdr)))
		copy(seg, hdr)
		got, err := ParseHeader(seg)
		if err != nil {
			return
		}
		// Whatever was accepted must be safe to use.
		for _, r := range got.Regions {
			if r.Offset < HeaderSize || r.Offset+r.Size > uint64(len(seg)) || r.Offset+r.Size < r.Offset {
				t.Fatalf("accepted region %+v outside a %d-byte segment", r, len(seg))
			}
		}
	})
}

func TestViewChecks(t *testing.T) {
	v := ViewOf(make([]byte, 64))
	if _, err := v.Bytes(60, 8); err == nil {
		t.Error("Bytes past the end succeeded")
	}
	if _, err := v.Bytes(^uint64(0), 2); err == nil {
		t.Error("Bytes with an overflowing offset succeeded")
	}
	if b, err := v.Bytes(8, 56); err != nil || len(b) != 56 {
		t.Errorf("Bytes(8, 56) = %d bytes, %v", len(b), err)
	}
	if _, err := v.Bytes(60, 8); err == nil || err.Error() != "range [60, +8) outside the 64-byte region at segment offset 0" {
		t.Errorf("Bytes past the end: %v", err)
	}
	if v.Uint64(56) == nil || v.Uint32(60) == nil || v.Sub(32, 32).Len() != 32 {
		t.Error("an access inside the view failed")
	}
	mustPanic(t, "misaligned word", "shm: 8-byte word at offset 4 outside or misaligned in a 64-byte view", func() { v.Uint64(4) })
	mustPanic(t, "word past the end", "shm: 8-byte word at offset 64 outside or misaligned in a 64-byte view", func() { v.Uint64(64) })
	mustPanic(t, "word before the start", "shm: 8-byte word at offset -8 outside or misaligned in a 64-byte view", func() { v.Uint64(-8) })
	mustPanic(t, "misaligned 32-bit word", "shm: 4-byte word at offset 2 outside or misaligned in a 64-byte view", func() { v.Uint32(2) })
	mustPanic(t, "32-bit word past the end", "shm: 4-byte word at offset 64 outside or misaligned in a 64-byte view", func() { v.Uint32(64) })
	mustPanic(t, "word wider than the view", "shm: 8-byte word at offset 0 outside or misaligned in a 4-byte view",
		func() { ViewOf(make([]byte, 8)).Sub(0, 4).Uint64(0) })
	mustPanic(t, "sub-view past the end", "shm: sub-view [32, +64) outside a 64-byte view", func() { v.Sub(32, 64) })
	mustPanic(t, "sub-view of negative size", "shm: sub-view [8, +-1) outside a 64-byte view", func() { v.Sub(8, -1) })
}

// mustPanic checks that f panics with a value whose text is want.
func mustPanic(t *testing.T, what, want string, f func()) {
	t.Helper()
	defer func() {
		r := recover()
		if r == nil {
			t.Errorf("%s: no panic", what)
		} else if got := fmt.Sprint(r); got != want {
			t.Errorf("%s: panic %q, want %q", what, got, want)
		}
	}()
	f()
}

// BenchmarkViewWords: the accessors every ring and slot operation goes
// through several times a job (go test -bench View ./shm).
func BenchmarkViewWords(b *testing.B) {
	v := ViewOf(make([]byte, 4096))
	var sum uint64
	for i := 0; b.Loop(); i++ {
		off := (i * 8) & 4088
		sum += v.Uint64(off).Load() + uint64(v.Uint32(off+4).Load()) + uint64(v.Sub(off, 8).Len())
	}
	if sum == 1 {
		b.Log(sum)
	}
}

// TestFileOffset: the offset FileOffset gives for a slice of the mapping
// is where its bytes are in the file.
func TestFileOffset(t *testing.T) {
	seg, err := Create("test", testSpecs)
	if err != nil {
		t.Fatal(err)
	}
	defer seg.Close()
	v, err := seg.Region(2, 0)
	if err != nil {
		t.Fatal(err)
	}
	v.Uint64(24).Store(0x1122334455667788)
	off, ok := seg.FileOffset(v.b[24:32])
	if !ok {
		t.Fatal("a slice of the mapping: not found")
	}
	got := make([]byte, 8)
	if _, err := seg.File().ReadAt(got, off); err != nil {
		t.Fatal(err)
	}
	if x := binary.LittleEndian.Uint64(got); x != 0x1122334455667788 {
		t.Fatalf("the file at offset %d holds %#x", off, x)
	}
	if _, ok := seg.FileOffset(make([]byte, 8)); ok {
		t.Fatal("Go memory: found in the mapping")
	}
	if _, ok := seg.FileOffset(v.b[:0]); ok {
		t.Fatal("an empty slice: found in the mapping")
	}
	if _, ok := seg.FileOffset(seg.mem[len(seg.mem)-4 : len(seg.mem)]); !ok {
		t.Fatal("the mapping's last bytes: not found")
	}
}

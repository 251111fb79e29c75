package shm

import (
	"errors"
	"fmt"
	"os"
	"sync"
	"unsafe"

	"github.com/edsrzf/mmap-go"

	"github.com/shmexec/shmexec/internal/sysx"
)

// RegionSpec asks Create for one region.
type RegionSpec struct {
	Kind  uint32
	Index uint32
	Size  uint64
	Align uint32 // 0: RegionAlign
}

// Segment is a mapped shmexec segment.
type Segment struct {
	f        *os.File
	mem      mmap.MMap
	hdr      Header
	readOnly bool

	closeOnce sync.Once
	closeErr  error
}

// Create makes a new segment in an anonymous memfd named name (the name is
// only a label in /proc; nothing appears in /dev/shm), sized for specs and
// sealed against resizing, maps it and writes its header. The memory is
// zeroed. The file is close-on-exec; pass File() to children explicitly.
func Create(name string, specs []RegionSpec) (*Segment, error) {
	h, err := Layout(specs)
	if err != nil {
		return nil, err
	}
	f, err := sysx.MemfdCreate(name, int64(h.TotalSize))
	if err != nil {
		return nil, fmt.Errorf("create segment: %w", err)
	}
	mem, err := mmap.MapRegion(f, int(h.TotalSize), mmap.RDWR, 0, 0)
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("map segment: %w", err)
	}
	writeHeader(mem, h)
	return &Segment{f: f, mem: mem, hdr: h}, nil
}

// Attach maps the segment behind f (typically a descriptor inherited from
// the creator) and validates its header. On success the Segment owns f and
// Close closes it; on failure f is left open for the caller.
func Attach(f *os.File) (*Segment, error) { return attach(f, mmap.RDWR) }

// AttachReadOnly is Attach with a read-only mapping, for observers that
// must never disturb the pool.
func AttachReadOnly(f *os.File) (*Segment, error) { return attach(f, mmap.RDONLY) }

func attach(f *os.File, prot int) (*Segment, error) {
	fi, err := f.Stat()
	if err != nil {
		return nil, fmt.Errorf("attach segment: %w", err)
	}
	size := fi.Size()
	if size < HeaderSize {
		return nil, fmt.Errorf("attach segment: %w: file has %d bytes, smaller than the %d-byte header", ErrTruncated, size, HeaderSize)
	}
	// Without seals another process could shrink the file under us and turn
	// a read of the mapping into SIGBUS.
	if err := sysx.CheckSealed(f); err != nil {
		return nil, fmt.Errorf("attach segment: %w", err)
	}
	mem, err := mmap.MapRegion(f, int(size), prot, 0, 0)
	if err != nil {
		return nil, fmt.Errorf("attach segment: map: %w", err)
	}
	h, err := ParseHeader(mem)
	if err != nil {
		mem.Unmap()
		return nil, fmt.Errorf("attach segment: %w", err)
	}
	return &Segment{f: f, mem: mem, hdr: h, readOnly: prot == mmap.RDONLY}, nil
}

// File returns the segment's memfd, to pass to a child process. It stays
// owned by the Segment.
func (s *Segment) File() *os.File { return s.f }

// Header returns the validated header.
func (s *Segment) Header() Header { return s.hdr }

// Size returns the segment's size in bytes.
func (s *Segment) Size() int { return len(s.mem) }

// FileOffset returns where b, a slice of the mapping, starts in the
// segment's file (File), for a process that maps part of it again; ok is
// false for an empty b or one not wholly inside the mapping.
func (s *Segment) FileOffset(b []byte) (off int64, ok bool) {
	if len(b) == 0 || len(s.mem) == 0 {
		return 0, false
	}
	base, p := uintptr(unsafe.Pointer(&s.mem[0])), uintptr(unsafe.Pointer(&b[0]))
	if p < base || p-base > uintptr(len(s.mem)-len(b)) {
		return 0, false
	}
	return int64(p - base), true
}

// ReadOnly reports whether the mapping is read-only.
func (s *Segment) ReadOnly() bool { return s.readOnly }

// Region returns a view of the region of the given kind and index.
func (s *Segment) Region(kind, index uint32) (View, error) {
	for _, r := range s.hdr.Regions {
		if r.Kind == kind && r.Index == index {
			return View{b: s.mem[r.Offset:r.end():r.end()], base: r.Offset}, nil
		}
	}
	return View{}, fmt.Errorf("%w: kind %d index %d", ErrNoRegion, kind, index)
}

// Close unmaps the segment and closes its file. It is idempotent; views
// must not be used afterwards.
func (s *Segment) Close() error {
	s.closeOnce.Do(func() {
		var errs []error
		if err := s.mem.Unmap(); err != nil {
			errs = append(errs, fmt.Errorf("unmap segment: %w", err))
		}
		if err := s.f.Close(); err != nil {
			errs = append(errs, fmt.Errorf("close segment: %w", err))
		}
		s.closeErr = errors.Join(errs...)
	})
	return s.closeErr
}

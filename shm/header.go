package shm

import (
	"encoding/binary"
	"errors"
	"fmt"
	"sort"
)

// Header layout (native little-endian; the segment never leaves the machine):
//
//	offset  size  field
//	     0     8  magic "SHMEXEC\x00"
//	     8     4  segment ABI version (ABIVersion)
//	    12     4  header size in bytes (HeaderSize)
//	    16     8  total segment size in bytes
//	    24     4  number of regions in the table (<= MaxRegions)
//	    28     4  reserved, zero
//	    32    32  reserved for later fields, zero
//	    64  32*N  region table, N = MaxRegions entries of:
//	                 +0  kind    uint32
//	                 +4  index   uint32  (several regions of one kind)
//	                 +8  offset  uint64  (from the segment's start)
//	                +16  size    uint64
//	                +24  reserved uint64, zero
//	  1088  ...   reserved up to HeaderSize, zero
//
// Regions start at or after HeaderSize, are aligned to RegionAlign, lie
// inside the segment and do not overlap.
const (
	Magic       = "SHMEXEC\x00"
	ABIVersion  = 1
	HeaderSize  = 4096
	MaxRegions  = 32
	RegionAlign = 64

	offMagic      = 0
	offABI        = 8
	offHeaderSize = 12
	offTotalSize  = 16
	offNRegions   = 24
	offRegions    = 64
	regionEntry   = 32
)

// Errors that Attach and ParseHeader wrap with the detail of what is wrong.
var (
	ErrBadMagic   = errors.New("shm: not a shmexec segment (bad magic)")
	ErrABIVersion = errors.New("shm: segment ABI version not supported")
	ErrTruncated  = errors.New("shm: segment truncated")
	ErrBadHeader  = errors.New("shm: malformed segment header")
	ErrBadRegion  = errors.New("shm: bad region")
	ErrNoRegion   = errors.New("shm: no such region")
)

// Region is one entry of the region table.
type Region struct {
	Kind   uint32
	Index  uint32
	Offset uint64
	Size   uint64
}

func (r Region) end() uint64 { return r.Offset + r.Size }

// Header is the validated content of a segment's header.
type Header struct {
	ABI        uint32
	HeaderSize uint32
	TotalSize  uint64
	Regions    []Region
}

// ParseHeader validates the header at the start of b, where b is the whole
// mapped segment (len(b) is the real size of the file). It never reads past
// b and reports the first thing that is wrong.
func ParseHeader(b []byte) (Header, error) {
	var h Header
	if len(b) < offRegions {
		return h, fmt.Errorf("%w: %d bytes, smaller than the fixed header", ErrTruncated, len(b))
	}
	if string(b[offMagic:offMagic+8]) != Magic {
		return h, fmt.Errorf("%w: got %q", ErrBadMagic, b[offMagic:offMagic+8])
	}
	le := binary.LittleEndian
	h.ABI = le.Uint32(b[offABI:])
	if h.ABI != ABIVersion {
		return h, fmt.Errorf("%w: segment has version %d, this library speaks %d", ErrABIVersion, h.ABI, ABIVersion)
	}
	h.HeaderSize = le.Uint32(b[offHeaderSize:])
	if h.HeaderSize != HeaderSize {
		return h, fmt.Errorf("%w: header size %d, want %d", ErrBadHeader, h.HeaderSize, HeaderSize)
	}
	h.TotalSize = le.Uint64(b[offTotalSize:])
	if uint64(len(b)) < uint64(h.HeaderSize) {
		return h, fmt.Errorf("%w: %d bytes, smaller than the %d-byte header", ErrTruncated, len(b), h.HeaderSize)
	}
	if h.TotalSize != uint64(len(b)) {
		if h.TotalSize > uint64(len(b)) {
			return h, fmt.Errorf("%w: header says %d bytes, segment has %d", ErrTruncated, h.TotalSize, len(b))
		}
		return h, fmt.Errorf("%w: header says %d bytes, segment has %d", ErrBadHeader, h.TotalSize, len(b))
	}
	n := le.Uint32(b[offNRegions:])
	if n > MaxRegions {
		return h, fmt.Errorf("%w: %d regions, at most %d", ErrBadHeader, n, MaxRegions)
	}
	h.Regions = make([]Region, n)
	for i := range h.Regions {
		e := b[offRegions+i*regionEntry:]
		r := Region{
			Kind:   le.Uint32(e[0:]),
			Index:  le.Uint32(e[4:]),
			Offset: le.Uint64(e[8:]),
			Size:   le.Uint64(e[16:]),
		}
		switch {
		case r.Size == 0:
			return h, fmt.Errorf("%w: region %d (kind %d) is empty", ErrBadRegion, i, r.Kind)
		case r.Offset%RegionAlign != 0:
			return h, fmt.Errorf("%w: region %d (kind %d) at offset %d is not %d-byte aligned", ErrBadRegion, i, r.Kind, r.Offset, RegionAlign)
		case r.Offset < uint64(h.HeaderSize):
			return h, fmt.Errorf("%w: region %d (kind %d) at offset %d overlaps the header", ErrBadRegion, i, r.Kind, r.Offset)
		case r.Offset > h.TotalSize || r.Size > h.TotalSize-r.Offset:
			return h, fmt.Errorf("%w: region %d (kind %d) [%d, +%d) is out of bounds of the %d-byte segment", ErrBadRegion, i, r.Kind, r.Offset, r.Size, h.TotalSize)
		}
		for j := 0; j < i; j++ {
			if h.Regions[j].Kind == r.Kind && h.Regions[j].Index == r.Index {
				return h, fmt.Errorf("%w: region %d repeats kind %d index %d", ErrBadRegion, i, r.Kind, r.Index)
			}
		}
		h.Regions[i] = r
	}
	sorted := append([]Region(nil), h.Regions...)
	sort.Slice(sorted, func(i, j int) bool { return sorted[i].Offset < sorted[j].Offset })
	for i := 1; i < len(sorted); i++ {
		if sorted[i].Offset < sorted[i-1].end() {
			return h, fmt.Errorf("%w: region kind %d index %d overlaps kind %d index %d",
				ErrBadRegion, sorted[i].Kind, sorted[i].Index, sorted[i-1].Kind, sorted[i-1].Index)
		}
	}
	return h, nil
}

// writeHeader lays out h at the start of b. It is used by Create only.
func writeHeader(b []byte, h Header) {
	le := binary.LittleEndian
	copy(b[offMagic:], Magic)
	le.PutUint32(b[offABI:], h.ABI)
	le.PutUint32(b[offHeaderSize:], h.HeaderSize)
	le.PutUint64(b[offTotalSize:], h.TotalSize)
	le.PutUint32(b[offNRegions:], uint32(len(h.Regions)))
	for i, r := range h.Regions {
		e := b[offRegions+i*regionEntry:]
		le.PutUint32(e[0:], r.Kind)
		le.PutUint32(e[4:], r.Index)
		le.PutUint64(e[8:], r.Offset)
		le.PutUint64(e[16:], r.Size)
	}
}

// Layout computes the region table for the given specs: each region is
// placed after the header, aligned to align (at least RegionAlign), in the
// order given. It returns the header to write.
func Layout(specs []RegionSpec) (Header, error) {
	if len(specs) > MaxRegions {
		return Header{}, fmt.Errorf("shm: %d regions, at most %d", len(specs), MaxRegions)
	}
	h := Header{ABI: ABIVersion, HeaderSize: HeaderSize}
	off := uint64(HeaderSize)
	for i, s := range specs {
		if s.Size == 0 {
			return Header{}, fmt.Errorf("shm: region %d (kind %d) has size 0", i, s.Kind)
		}
		align := uint64(s.Align)
		if align < RegionAlign {
			align = RegionAlign
		}
		if align&(align-1) != 0 {
			return Header{}, fmt.Errorf("shm: region %d alignment %d is not a power of two", i, s.Align)
		}
		off = (off + align - 1) &^ (align - 1)
		h.Regions = append(h.Regions, Region{Kind: s.Kind, Index: s.Index, Offset: off, Size: s.Size})
		off += s.Size
		if off < s.Size {
			return Header{}, fmt.Errorf("shm: segment size overflows")
		}
	}
	h.TotalSize = (off + 4095) &^ 4095
	return h, nil
}

package executor

import (
	"fmt"
	"sync"
)

// Handler names are interned in the names region so that jobs carry a
// small id: maxNames entries of nameEntry bytes,
//
//	0 word: state (bits 0-7: 0 empty, 1 being written, 2 ready),
//	  length (8-15), writer's party owner (16-47)
//	8 name bytes (at most maxNameLen)
//
// An id is the entry index + 1. A client that dies while writing an entry
// leaves it "being written"; the supervisor empties such entries of dead
// parties. Two clients may intern the same name twice; both ids work.
const (
	nameEmpty   = 0
	nameWriting = 1
	nameReady   = 2
)

func nameWord(state uint8, n int, owner uint32) uint64 {
	return uint64(state) | uint64(n)<<8 | uint64(owner)<<16
}

// nameCache is a process-local map of interned names, both ways.
type nameCache struct {
	mu    sync.Mutex
	byID  map[uint16]string
	byStr map[string]uint16
}

func (l *layout) nameAt(id uint16) (string, bool) {
	if id == 0 || int(id) > maxNames {
		return "", false
	}
	e := l.names.Sub(int(id-1)*nameEntry, nameEntry)
	w := e.Uint64(0).Load() // pairs with the ready store in intern
	n := int(uint8(w >> 8))
	if uint8(w) != nameReady || n > maxNameLen {
		return "", false
	}
	b, _ := e.Bytes(8, uint64(n))
	return string(b), true
}

// intern returns the id of name, adding it to the table if needed.
func (l *layout) intern(c *nameCache, name string, owner uint32) (uint16, error) {
	if len(name) == 0 || len(name) > maxNameLen {
		return 0, fmt.Errorf("shmexec: handler name %q must be 1 to %d bytes", name, maxNameLen)
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.byStr == nil {
		c.byStr, c.byID = map[string]uint16{}, map[uint16]string{}
	}
	if id, ok := c.byStr[name]; ok {
		return id, nil
	}
	for i := 0; i < maxNames; i++ {
		id := uint16(i + 1)
		if s, ok := l.nameAt(id); ok && s == name {
			c.byStr[name], c.byID[id] = id, name
			return id, nil
		}
	}
	for i := 0; i < maxNames; i++ {
		e := l.names.Sub(i*nameEntry, nameEntry)
		if !e.Uint64(0).CompareAndSwap(0, nameWord(nameWriting, 0, owner)) {
			continue
		}
		b, _ := e.Bytes(8, uint64(len(name)))
		copy(b, name)
		e.Uint64(0).Store(nameWord(nameReady, len(name), owner)) // pairs with the load in nameAt
		id := uint16(i + 1)
		c.byStr[name], c.byID[id] = id, name
		return id, nil
	}
	return 0, fmt.Errorf("shmexec: more than %d handler names", maxNames)
}

// recoverNames empties the entries a dead party was writing.
func (l *layout) recoverNames(owner uint32) {
	for i := 0; i < maxNames; i++ {
		e := l.names.Sub(i*nameEntry, nameEntry).Uint64(0)
		w := e.Load()
		if uint8(w) == nameWriting && uint32(w>>16) == owner {
			e.CompareAndSwap(w, 0)
		}
	}
}

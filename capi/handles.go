package main

/*
#include <stdlib.h>
#include "shim.h"
*/
import "C"
import "sync"

// handles maps the numbers C holds to Go objects.
type handles[T any] struct {
	mu   sync.Mutex
	next uint64
	m    map[uint64]T
}

func (h *handles[T]) add(v T) uint64 {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.m == nil {
		h.m = map[uint64]T{}
	}
	h.next++
	h.m[h.next] = v
	return h.next
}

func (h *handles[T]) get(id uint64) (T, bool) {
	h.mu.Lock()
	defer h.mu.Unlock()
	v, ok := h.m[id]
	return v, ok
}

func (h *handles[T]) del(id uint64) {
	h.mu.Lock()
	delete(h.m, id)
	h.mu.Unlock()
}

// take removes id and returns what it named: of two threads that take
// the same id (a handle closed twice at once, one buffer submitted by
// two), one gets it.
func (h *handles[T]) take(id uint64) (T, bool) {
	h.mu.Lock()
	defer h.mu.Unlock()
	v, ok := h.m[id]
	delete(h.m, id)
	return v, ok
}

// put makes id name v (an id that add gave out).
func (h *handles[T]) put(id uint64, v T) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.m == nil {
		h.m = map[uint64]T{}
	}
	h.m[id] = v
}

var pools handles[*pool]

func lookup(cp *C.shmx_pool) (*pool, bool) { return pools.get(uint64(cp.id)) }

package crashpoint

// Names lists every crash point, in protocol order. docs/PROTOCOL.md
// describes each one, and a test checks that the two lists and the calls to
// Hit agree.
var Names = []string{
	// ring: enqueue (producer)
	"ring.enq.intent",  // pending record written (phase CLAIMING)
	"ring.enq.claim",   // cell CAS EMPTY -> CLAIMED(owner)
	"ring.enq.claimed", // pending phase CLAIMED
	"ring.enq.publish", // cell store FULL(value)
	"ring.enq.done",    // pending cleared
	// ring: dequeue (consumer)
	"ring.deq.intent",  // pending record written (phase CLAIMING)
	"ring.deq.claim",   // cell CAS FULL -> TAKEN(owner)
	"ring.deq.hold",    // pending phase HOLD
	"ring.deq.release", // cell store EMPTY(next lap)
	"ring.deq.done",    // pending phase DELIVERED
}

// Known reports whether name is a listed crash point.
func Known(name string) bool {
	for _, n := range Names {
		if n == name {
			return true
		}
	}
	return false
}

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
	// executor: the job lifecycle
	"job.fill",    // client: slot CAS Free -> Filling(client)
	"job.queued",  // client: slot CAS Filling -> Queued, not yet in the inqueue
	"job.lease",   // worker: slot CAS Queued -> Running(worker)
	"job.run",     // worker: inside the handler call
	"job.result",  // worker: result and output written, slot still Running
	"job.done",    // worker: slot CAS Running -> Done, not yet published
	"job.collect", // client: slot CAS Done -> Collecting(client)
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

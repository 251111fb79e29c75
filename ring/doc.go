// Package ring implements robust lock-free multi-producer multi-consumer
// rings of 32-bit values inside a shared-memory segment.
//
// "Robust" means that a party (a producer or consumer process) may die at
// any instruction inside an operation and the ring still flows once the
// supervisor has called Recover for it: a cell claimed by a dead producer
// becomes a skip cell that consumers step over, a cell claimed by a dead
// consumer is released and its value returned to the supervisor, and
// nothing is lost silently. The mechanism follows the kernel's robust
// futexes: every claimed cell names its owner (party index and generation),
// and every party announces each operation in its own record in the segment
// (the "pending" record, like the robust list's list_op_pending) before it
// claims anything. docs/PROTOCOL.md gives each step and what recovery does
// after a death at that step.
//
// Concurrency contract: a Ring may be used by any number of producer and
// consumer parties at once, in any processes. A Party is one actor and must
// be used by one goroutine at a time. Recover must run in exactly one place
// (the supervisor) and only once the party is certainly dead.
//
// Waiting is a bounded spin, then a FUTEX_WAIT on a shared word; a waker
// issues FUTEX_WAKE only if some party has registered as a sleeper, so the
// fast path makes no system call.
package ring

// Package executor is shmexec's process pool: a supervisor that owns a
// shared-memory segment and starts worker processes with exec, clients
// that submit jobs (a handler name and bytes) and collect exactly one
// terminal result per job, and the recovery that keeps those promises
// when any worker or client dies.
//
// The pool owner creates the pool with New; it is the supervisor and has
// an in-process Client. Worker processes call ServeIfWorker at the top of
// main (it returns at once in a process that is not a worker). Another
// process can attach as a client of its own with an outqueue of its own
// (see Pool.AddClient and Connect).
//
// Concurrency: Pool and Client methods are safe for concurrent use. A
// Future may be waited on from many goroutines. Close and Terminate are
// idempotent.
//
// The segment layout and every state transition of a job slot are in
// docs/PROTOCOL.md.
package executor

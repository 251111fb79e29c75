// Package sysx is the one place where shmexec makes raw system calls: futex
// wait and wake on shared memory, memfd creation and sealing, pidfd open and
// wait-for-exit, and the parent-death signal.
//
// It is Linux only. On other systems every function returns an error that
// wraps ErrNotSupported.
//
// Futexes here are always process-shared: FUTEX_PRIVATE_FLAG is never used,
// because the words live in memory mapped by several processes.
package sysx

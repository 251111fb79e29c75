// Package crashpoint lets tests kill a process right after a named step of
// a protocol, to prove that recovery repairs whatever that step left.
//
// Crash points exist only in builds with the tag shmexec_crash (make test
// sets it). In other builds Hit is an empty function that the compiler
// inlines away, and Enabled is false.
//
// In a crash build, a process arms one point through its environment:
// SHMEXEC_CRASH=name[@n] kills the process with SIGKILL the n-th time (1 by
// default) it passes the point called name. Every name passed to Hit must
// be listed in Names; docs/PROTOCOL.md names the same steps.
package crashpoint

// EnvVar is the environment variable that arms a crash point in a child.
const EnvVar = "SHMEXEC_CRASH"

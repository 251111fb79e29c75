// Package shm is the shared-memory segment that every shmexec process maps:
// an anonymous memfd, sealed against resizing once sized, with a header at
// offset 0 that names the segment's regions (rings, party records, arenas).
//
// The creator calls Create; other processes inherit the file descriptor and
// call Attach, which validates the whole header before anything is read
// from a region. Regions are reached through View, whose accessors check
// bounds and alignment.
//
// Concurrency: a Segment may be used from many goroutines; Close must be
// called once all users are done (it unmaps the memory, and any later access
// through a View faults). The header is written once by Create before the
// segment is shared and is read-only afterwards. Everything else in the
// segment is shared with other processes and is untrusted: packages that
// read it check what they read.
package shm

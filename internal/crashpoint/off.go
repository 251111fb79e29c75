//go:build !shmexec_crash

package crashpoint

// Enabled reports whether this build has crash points.
const Enabled = false

// Hit marks a crash point. Without the shmexec_crash tag it does nothing.
func Hit(name string) {}

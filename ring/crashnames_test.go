package ring

import (
	"strings"

	"github.com/shmexec/shmexec/internal/crashpoint"
)

func crashpointsEnabled() bool { return crashpoint.Enabled }

func ringCrashPoints() []string {
	var out []string
	for _, n := range crashpoint.Names {
		if strings.HasPrefix(n, "ring.") {
			out = append(out, n)
		}
	}
	return out
}

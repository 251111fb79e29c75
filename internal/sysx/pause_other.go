//go:build !amd64 && !arm64

package sysx

// Pause does nothing here (see pause.go).
func Pause() {}

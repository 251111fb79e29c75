module example.com/squares

go 1.26.0

require github.com/shmexec/shmexec v0.0.0

require (
	github.com/edsrzf/mmap-go v1.2.0 // indirect
	golang.org/x/sys v0.49.0 // indirect
)

// A program of your own writes `go get github.com/shmexec/shmexec` instead.
replace github.com/shmexec/shmexec => ../..

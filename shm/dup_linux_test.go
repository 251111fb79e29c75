package shm

import "golang.org/x/sys/unix"

func dupFD(fd uintptr) (uintptr, error) {
	n, err := unix.FcntlInt(fd, unix.F_DUPFD_CLOEXEC, 0)
	return uintptr(n), err
}

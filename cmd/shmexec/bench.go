package main

import (
	"errors"
	"io"
)

func bench(args []string, out io.Writer) error {
	return errors.New("not built yet: use `make bench` (issue 7)")
}

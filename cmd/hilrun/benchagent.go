package main

import (
	"context"
	"errors"
	"io"
)

func runAgentBench(ctx context.Context, out, progress io.Writer, n int, image string, asJSON bool) error {
	return errors.New("not yet")
}

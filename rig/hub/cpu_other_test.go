//go:build !unix

package hub

func processCPU() int64 { return 0 }

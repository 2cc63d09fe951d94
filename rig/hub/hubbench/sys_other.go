//go:build !unix

package hubbench

func raiseOpenFiles() {}

func openFilesLimit() uint64 { return 0 }

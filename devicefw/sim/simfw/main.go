// Command simfw is the Go reference firmware alone, as a virtual board
// image (`hilrun run --image simfw`): the same code as `hilrun
// sim-firmware`, without the rest of hilrun. `hilrun selftest --mutate`
// builds it once per mutant of devicefw/sim (a small link, a small copy
// onto each virtual board).
package main

import (
	"os"

	"github.com/hilrun/hilrun/devicefw/sim"
)

func main() { os.Exit(sim.Main(os.Args[1:])) }

package mutate

import (
	"fmt"
	"os"

	"go.yaml.in/yaml/v3"
)

// EquivalentFile is the reviewed list of equivalent mutants, next to the
// code it is about (relative to the repository root).
const EquivalentFile = "devicefw/sim/MUTANTS-EQUIVALENT.yaml"

// Equivalent is one reviewed entry: a mutant that behaves like the
// original (no spec can tell them apart), keyed like Mutant.Key.
type Equivalent struct {
	File     string `yaml:"file"`
	Func     string `yaml:"func"`
	Operator string `yaml:"operator"`
	Original string `yaml:"original"`
	Mutated  string `yaml:"mutated"`
	Ordinal  int    `yaml:"ordinal"`
	Reason   string `yaml:"reason"`
}

// Key matches Mutant.Key.
func (e Equivalent) Key() string {
	return Mutant{File: e.File, Func: e.Func, Operator: e.Operator, Original: e.Original, Mutated: e.Mutated, Ordinal: e.Ordinal}.Key()
}

// LoadEquivalent reads the list; a missing file is an empty list. Every
// entry needs a reason.
func LoadEquivalent(path string) (map[string]Equivalent, error) {
	b, err := os.ReadFile(path)
	if os.IsNotExist(err) {
		return map[string]Equivalent{}, nil
	}
	if err != nil {
		return nil, err
	}
	var doc struct {
		Equivalent []Equivalent `yaml:"equivalent"`
	}
	if err := yaml.Unmarshal(b, &doc); err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	out := map[string]Equivalent{}
	for i, e := range doc.Equivalent {
		if e.Reason == "" {
			return nil, fmt.Errorf("%s: entry %d (%s %s %s) has no reason", path, i+1, e.File, e.Func, e.Operator)
		}
		out[e.Key()] = e
	}
	return out, nil
}

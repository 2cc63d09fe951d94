package sim

// Defect switches added for the C2D and METH conformance specs. Each needs a row
// in DEFECTS.md (section "C2D and METH specs") and an implementation at the point
// in the client where the rule is kept.

// c2dMethodDefects lists them; see Defects.
var c2dMethodDefects = []Defect{}

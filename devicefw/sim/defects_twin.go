package sim

// Defect switches added for the TWIN conformance specs. Each needs a row
// in DEFECTS.md (section "TWIN specs") and an implementation at the point
// in the client where the rule is kept.

// twinDefects lists them; see Defects.
var twinDefects = []Defect{}

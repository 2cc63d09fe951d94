package sim

// Defect switches added for the RECON session specs. Each needs a row in
// DEFECTS.md (section "RECON session specs") and an implementation at the point
// in the client where the rule is kept.

// reconSessionDefects lists them; see Defects.
var reconSessionDefects = []Defect{}

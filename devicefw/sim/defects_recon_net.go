package sim

// Defect switches added for the RECON network-fault specs. Each needs a row in
// DEFECTS.md (section "RECON network-fault specs") and an implementation at the point
// in the client where the rule is kept.

// reconNetDefects lists them; see Defects.
var reconNetDefects = []Defect{}

package sim

// Defect switches added for the CONN and TEL conformance specs. Each needs a row
// in DEFECTS.md (section "CONN and TEL specs") and an implementation at the point
// in the client where the rule is kept.

// connTelDefects lists them; see Defects.
var connTelDefects = []Defect{}

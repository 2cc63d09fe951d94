// Package twin models IoT Hub device-twin documents as they travel over the
// device-facing MQTT interface.
//
// It covers four concerns:
//
//   - parsing request and response bodies into [Section] values while keeping
//     number literals exact (TWIN-006);
//   - validating patches against the documented twin limits: key syntax
//     (TWIN-011, TWIN-016), value types and integer range (TWIN-012), object
//     nesting (TWIN-013), string length (TWIN-014) and section size (TWIN-015);
//   - JSON merge-patch semantics, where null removes a member (TWIN-007,
//     TWIN-009);
//   - the device-side view of the twin: the body the hub returns to a GET
//     (TWIN-004) and the body of a desired-property notification (TWIN-009).
//
// The reference hub uses the package to validate and store twins; device
// firmware uses it to apply desired patches. Only the standard library is
// used, and all encodings are deterministic (object members are written in
// sorted key order).
package twin

// Package iothub holds the device-facing wire conventions of Azure IoT Hub's
// MQTT endpoint that hilrun's reference hub and its device firmware have in
// common.
//
// It covers device and module identities (ClientId rules), the CONNECT
// Username layout, the topic names a device publishes to and subscribes to
// together with a parser for them, the percent-encoded property bags carried
// in telemetry and cloud-to-device topics, the message-size arithmetic that the
// hub applies, shared access signature (SAS) tokens, device connection
// strings, and the numeric limits the service enforces.
//
// Keeping these rules in one package means the hub and the firmware read and
// write the same formats and cannot silently diverge. That also means a bug in
// here would be shared by both sides, so conformance specs never rely on this
// package alone: they still inspect the raw bytes recorded on the wire.
//
// Rules carry the ID of the requirement they implement (for example CONN-006
// or TEL-002) from spec/requirements.md, both in comments and in the messages
// of the errors returned by the checking functions.
//
// Nothing in this package performs I/O or keeps state; every function is safe
// for concurrent use.
package iothub

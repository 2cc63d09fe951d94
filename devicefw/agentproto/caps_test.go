package agentproto

import "testing"

func TestHasCapFormerNames(t *testing.T) {
	old := []string{"sas", "clean-session"} // a hello from before the rename
	if !HasCap(old, CapPersistentSession) || !HasCap(old, CapCleanSession) {
		t.Error("clean-session must read as persistent-session")
	}
	if HasCap(old, CapCleanSession1) {
		t.Error("clean-session never meant CleanSession 1")
	}
	if !HasCap([]string{CapPersistentSession}, CapCleanSession) {
		t.Error("a catalog or spec naming the former name matches the current one")
	}
	if HasCap(nil, CapSAS) || !HasCap([]string{CapSAS}, CapSAS) {
		t.Error("plain capability")
	}
}

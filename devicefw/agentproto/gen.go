package agentproto

// Generate returns size bytes derived from seed (xorshift32, mapped to
// printable ASCII so the payload is also valid JSON string content). Host
// and firmware compute the same bytes, so a spec can check a large message
// at the hub without sending it over the UART.
func Generate(size int, seed uint32) []byte {
	if size <= 0 {
		return nil
	}
	x := seed
	if x == 0 {
		x = 0x9e3779b9
	}
	const alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
	out := make([]byte, size)
	for i := range out {
		x ^= x << 13
		x ^= x >> 17
		x ^= x << 5
		out[i] = alphabet[x&63]
	}
	return out
}

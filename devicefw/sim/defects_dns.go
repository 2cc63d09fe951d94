package sim

// Defect switches for the name-resolution spec (RECON-012). Each needs a
// row in DEFECTS.md (section "Added for the RECON-012 spec").
const (
	DefDNSCacheForever = "dns-cache-forever"
)

// dnsDefects lists them; see Defects.
var dnsDefects = []Defect{
	{DefDNSCacheForever, "RECON-012", "the hub host is resolved once after boot and that address is dialled on every later connection, whatever the answer's TTL"},
}

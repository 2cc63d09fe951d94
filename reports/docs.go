package reports

import (
	"regexp"
	"strings"
)

// The catalog's documentation references ("002 L13724-13727, L10887") name
// a source document by its seed number and lines in the text captured of
// it. DocSources maps the seed numbers to the public document, so that a
// report can link the requirement to its documentation.
var DocSources = map[string]DocSource{
	"000": {"nanoFramework Azure.Devices client README", "https://github.com/nanoframework/nanoFramework.Azure.Devices"},
	"001": {"nanoFramework AWS IoT Core client README", "https://github.com/nanoframework/nanoFramework.Aws.IoTCore.Devices"},
	"002": {"Azure IoT Hub documentation", "https://learn.microsoft.com/azure/iot-hub/"},
	"003": {"IoT Hub module identity and module twin", "https://learn.microsoft.com/azure/iot-hub/module-twins-dotnet"},
	"004": {"nanoFramework Azure Edge OTA example", "https://docs.nanoframework.net/"},
}

// DocSource is one source document of the catalog.
type DocSource struct {
	Title string
	URL   string
}

// DocRef is one documentation reference of a requirement, resolved.
type DocRef struct {
	Ref   string // as the catalog writes it, e.g. "002 L13724-13727, L10887-10891"
	Title string // the document's title ("" when the seed is not known)
	URL   string // the public document ("" when not known)
	Lines string // "L13724-13727, L10887-10891"
}

var docRefRe = regexp.MustCompile(`^(\d{3})\s+(.*)$`)

// ResolveRefs resolves a requirement's documentation references.
func ResolveRefs(refs []string) []DocRef {
	var out []DocRef
	for _, ref := range refs {
		d := DocRef{Ref: ref}
		if m := docRefRe.FindStringSubmatch(strings.TrimSpace(ref)); m != nil {
			if src, ok := DocSources[m[1]]; ok {
				d.Title, d.URL, d.Lines = src.Title, src.URL, m[2]
			}
		}
		out = append(out, d)
	}
	return out
}

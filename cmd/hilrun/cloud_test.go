package main

import (
	"strings"
	"testing"
)

func TestCloudFlagChecks(t *testing.T) {
	t.Parallel()
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"run", "--cloud", "gcp"}, "want azure or aws"},
		{[]string{"run", "--defect", "aws-delta-as-shadow"}, "add --cloud aws"},
		{[]string{"run", "--cloud", "aws", "--board", "sdk:azure-iot-node"}, "IoT Hub clients"},
		{[]string{"hub", "--cloud", "gcp"}, "want azure or aws"},
	} {
		out, code := hilrun(t, append(c.args, "--out", t.TempDir())...)
		if c.args[0] == "hub" {
			out, code = hilrun(t, c.args...)
		}
		if code != 2 || !strings.Contains(out, c.want) {
			t.Errorf("%v: exit %d, want 2 saying %q:\n%s", c.args, code, c.want, out)
		}
	}
}

package actions

import (
	"os"
	"regexp"
	"testing"
)

// TestPolkitRuleAllowsExactlyTheHelperUnits reads the unit pattern of the
// shipped polkit rule (a JavaScript regular expression in the subset Go's
// regexp reads alike) and tries the names a compromised agent would: only
// the helper units' own instances may match, so the rule never lets the
// agent start another unit.
func TestPolkitRuleAllowsExactlyTheHelperUnits(t *testing.T) {
	b, err := os.ReadFile("../../packaging/polkit/49-pbx-agent.rules")
	if err != nil {
		t.Fatal(err)
	}
	m := regexp.MustCompile(`var allowedUnit = /(.*)/;`).FindSubmatch(b)
	if m == nil {
		t.Fatal("no allowedUnit pattern in the rule")
	}
	allowed := regexp.MustCompile(string(m[1]))
	for _, unit := range []string{
		"pbx-agent-sshd@1.service", "pbx-agent-sshd@99999.service",
		"pbx-agent-sshd-tunnel@1.service", "pbx-agent-sshd-tunnel@600.service", "pbx-agent-sshd-tunnel@99999.service",
		"pbx-agent-wms-upgrade@7.2.20250609.3.service", "pbx-licence-active.target", "pbx-licence-stopped.target",
	} {
		if !allowed.MatchString(unit) {
			t.Errorf("the rule refuses %s, a helper unit", unit)
		}
	}
	for _, unit := range []string{
		"pbx-agent-sshd-tunnel@0.service", "pbx-agent-sshd-tunnel@100000.service", "pbx-agent-sshd-tunnel@.service",
		"pbx-agent-sshd-tunnelx@5.service", "pbx-agent-sshd-tunnel-x@5.service", "pbx-agent-sshd-tunnel@5.service.d",
		"pbx-agent-sshd-tunnel@5.socket", "xpbx-agent-sshd-tunnel@5.service", "pbx-agent-sshd-tunnel@5.service\nssh.service",
		"ssh.service", "pbx-agent.service", "pbx-agent-sshd@0.service",
	} {
		if allowed.MatchString(unit) {
			t.Errorf("the rule allows %q", unit)
		}
	}
}

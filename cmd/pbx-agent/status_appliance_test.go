package main

import (
	"fmt"
	"strings"
	"testing"

	"github.com/pbx-agent/pbx-agent/pkg/apitype"
)

func TestPrintAppliance(t *testing.T) {
	for _, tt := range []struct {
		name string
		st   apitype.Status
		want []string
	}{
		{"behind, serial from DMI", apitype.Status{
			WMS:       apitype.WMSStatus{Version: "7.02.20250609.3", Latest: "7.03.20250901.2", Behind: true},
			Appliance: apitype.ApplianceStatus{Serial: "SN-1", SerialSource: "dmi"}},
			[]string{"WMS: 7.02.20250609.3", "Latest stable WMS: 7.03.20250901.2: this PBX is behind", "Serial number: SN-1 (from dmi)"}},
		{"up to date", apitype.Status{WMS: apitype.WMSStatus{Version: "7.03.20250901.2", Latest: "7.03.20250901.2"}},
			[]string{"Latest stable WMS: 7.03.20250901.2 (up to date)"}},
		{"unknown, saying why", apitype.Status{
			WMS:       apitype.WMSStatus{VersionUnknown: "the package wms, which upgrade.package names, is not installed", LatestUnknown: "no WMS repository configured: set upgrade.repo_url"},
			Appliance: apitype.ApplianceStatus{SerialSource: "unknown (/sys/class/dmi/id/product_serial is readable by root only; set identity.serial)"}},
			[]string{"WMS: unknown (the package wms, which upgrade.package names, is not installed)",
				"Latest stable WMS: unknown (no WMS repository configured: set upgrade.repo_url)",
				"Serial number: unknown (/sys/class/dmi/id/product_serial is readable by root only; set identity.serial)"}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			var b strings.Builder
			printAppliance(func(label, format string, args ...any) {
				fmt.Fprintf(&b, "%s: %s\n", label, fmt.Sprintf(format, args...))
			}, tt.st)
			for _, w := range tt.want {
				if !strings.Contains(b.String(), w+"\n") {
					t.Errorf("missing %q in:\n%s", w, b.String())
				}
			}
		})
	}
}

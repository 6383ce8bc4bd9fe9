package main

import (
	"time"

	"github.com/pbx-agent/pbx-agent/pkg/apitype"
	"github.com/pbx-agent/pbx-agent/pkg/license"
)

// printOffline shows an air-gapped PBX's file exchange: until when the
// licence file holds, when the next one is due, and what to carry now.
func printOffline(line statusLine, st apitype.Status, now time.Time) {
	o := st.Offline
	if o == nil {
		return
	}
	if st.Mode == apitype.ModeAirGapped && o.Horizon != nil {
		due := ""
		if o.NextDue != nil {
			due = "; next file due " + o.NextDue.UTC().Format(time.RFC3339) + " (" + license.Relative(*o.NextDue, now) + ")"
		}
		line("Air-gapped", "licence file valid until %s%s", o.Horizon.UTC().Format(time.RFC3339), due)
	}
	for i, l := range wrap(o.Carry, statusWidth-labelWidth) {
		label := ""
		if i == 0 {
			label = "Carry to the portal"
		}
		line(label, "%s", l)
	}
}

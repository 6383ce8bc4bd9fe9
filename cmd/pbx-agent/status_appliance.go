package main

import (
	"github.com/pbx-agent/pbx-agent/pkg/apitype"
)

// printAppliance prints the WMS and the appliance's serial: versions known
// or why not, and whether the PBX is behind the repository's latest stable.
func printAppliance(line func(label, format string, args ...any), st apitype.Status) {
	w := st.WMS
	installed := w.Version
	if installed == "" {
		installed = "unknown"
		if w.VersionUnknown != "" {
			installed += " (" + w.VersionUnknown + ")"
		}
	}
	if w.Upgrade != "" {
		installed += ", upgrade: " + w.Upgrade
	}
	line("WMS", "%s", installed)
	switch {
	case w.Latest == "":
		latest := "unknown"
		if w.LatestUnknown != "" {
			latest += " (" + w.LatestUnknown + ")"
		}
		line("Latest stable WMS", "%s", latest)
	case w.Behind:
		line("Latest stable WMS", "%s: this PBX is behind", w.Latest)
	case w.Version != "":
		line("Latest stable WMS", "%s (up to date)", w.Latest)
	default:
		line("Latest stable WMS", "%s", w.Latest)
	}
	a := st.Appliance
	switch {
	case a.Serial != "":
		line("Serial number", "%s (from %s)", a.Serial, a.SerialSource)
	case a.SerialSource != "":
		line("Serial number", "%s", a.SerialSource)
	}
}

// Package buildinfo says which build of pbx-agent is running.
package buildinfo

import (
	"runtime"
	"runtime/debug"
)

// Version is set at link time (-ldflags "-X .../buildinfo.Version=1.2.3");
// otherwise the module version or "devel" is reported.
var Version = ""

// Info describes the running binary.
type Info struct {
	Version   string
	Revision  string // VCS commit, "unknown" when not built from a checkout
	GoVersion string
}

// Read returns the build information of the running binary.
func Read() Info {
	info := Info{Version: Version, Revision: "unknown", GoVersion: runtime.Version()}
	bi, ok := debug.ReadBuildInfo()
	if !ok {
		if info.Version == "" {
			info.Version = "devel"
		}
		return info
	}
	if info.Version == "" {
		info.Version = bi.Main.Version
	}
	if info.Version == "" || info.Version == "(devel)" {
		info.Version = "devel"
	}
	for _, s := range bi.Settings {
		if s.Key == "vcs.revision" && s.Value != "" {
			info.Revision = s.Value
		}
	}
	return info
}

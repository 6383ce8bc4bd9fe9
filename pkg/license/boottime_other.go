//go:build !linux

package license

import "time"

// processStart stands in for the boot on systems the agent does not run
// on: the package still builds there (tools, the portal simulator), and
// the elapsed time is monotonic, but a restart does not count the time down.
var processStart = time.Now()

func bootTime() time.Duration { return time.Since(processStart) }

package portalsim

import (
	"errors"
	"fmt"
	"time"

	"github.com/pbx-agent/pbx-agent/pkg/protocol"
	"github.com/pbx-agent/pbx-agent/pkg/wms"
)

// checkAgentRules refuses, before it is signed, a command the agent would
// refuse on its own rules, with the agent's own validators: the command
// format (protocol.Command.Validate, which bounds the SSH TTL, port and
// keys), then the WMS version and repository formats and a maintenance
// window already over on the portal's clock. What the portal cannot know
// is left to the agent: the appliance's SSH port, its installed WMS
// version (a lifetime licence may not move to a newer major), and its
// licence clock when the command arrives.
func checkAgentRules(c *protocol.Command, now time.Time) error {
	if err := c.Validate(); err != nil {
		var ce *protocol.CommandError
		if errors.As(err, &ce) {
			return fmt.Errorf("%s: %s", c.Type, ce.Detail)
		}
		return err
	}
	w := c.WMS
	if w == nil {
		return nil
	}
	if _, err := wms.ParseVersion(w.Version); err != nil {
		return fmt.Errorf("wms.upgrade: %w", err)
	}
	if _, err := wms.ParseRepository(w.Repository); err != nil {
		return fmt.Errorf("wms.upgrade: %w", err)
	}
	if pos, _ := (wms.Window{Start: w.WindowStart, End: w.WindowEnd}).At(now); pos == wms.After {
		return fmt.Errorf("wms.upgrade: its maintenance window ended at %s, and the portal's clock is at %s: give a window that ends later",
			w.WindowEnd.UTC().Format(time.RFC3339), now.UTC().Format(time.RFC3339))
	}
	return nil
}

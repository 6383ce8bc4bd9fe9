package agent

import (
	"slices"
	"strings"
	"time"

	"github.com/pbx-agent/pbx-agent/pkg/identity"
	"github.com/pbx-agent/pbx-agent/pkg/license"
)

// setup is what the agent needs, beyond a valid configuration, to reach
// its portal: a usable portal.url, the portal keys it trusts and the
// appliance's model. A fresh install lacks some; the daemon runs anyway
// and reports them.
type setup struct {
	keyring     *license.Keyring // nil when the keyring could not be loaded
	model       license.Model    // "" when unknown
	modelSource string
	problems    []*ConfigError // every one found
}

// checkSetup looks at everything setup needs and reports every problem
// at once, so that a fresh install learns all it must configure from one
// look. root prefixes the machine files read to detect the model; now
// judges the keyring's key announcements.
func checkSetup(cfg Config, root string, now time.Time) setup {
	var s setup
	if err := checkPortalURL(cfg.Portal.URL); err != nil { // portal.go
		s.problems = append(s.problems, &ConfigError{Key: "portal.url", Err: err})
	}
	kr, err := license.LoadPortalKeyring(cfg.Portal.Keyring, now)
	if err != nil {
		s.problems = append(s.problems, badKey("portal.keyring", "%v", err))
	}
	s.keyring = kr
	model, source, err := identity.ResolveModel(cfg.Identity.Model, root)
	if err != nil {
		s.problems = append(s.problems, badKey("identity.model", "%v", err)) // says to set identity.model
	}
	s.model, s.modelSource = model, source
	return s
}

// has reports whether key has a problem.
func (s setup) has(key string) bool {
	return slices.ContainsFunc(s.problems, func(p *ConfigError) bool { return p.Key == key })
}

// err is the problems as one error, for the log and the status; nil when
// there are none.
func (s setup) err() error {
	if len(s.problems) == 0 {
		return nil
	}
	p := make(problems, len(s.problems))
	for i, e := range s.problems {
		p[i] = e
	}
	return p
}

// problems are several configuration problems as one error on one line.
type problems []error

func (p problems) Error() string {
	msgs := make([]string, len(p))
	for i, err := range p {
		msgs[i] = err.Error()
	}
	return strings.Join(msgs, "; ")
}

func (p problems) Unwrap() []error { return p }

// SetupProblems lists what keeps an agent with this configuration from
// its portal: portal.url, the portal keyring, the appliance's model. The
// daemon starts despite them and reports the same list in its status;
// `pbx-agent config check` prints it.
func SetupProblems(cfg Config, root string, now time.Time) []*ConfigError {
	return checkSetup(cfg, root, now).problems
}

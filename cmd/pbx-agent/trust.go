package main

import (
	"fmt"
	"strings"

	"github.com/pbx-agent/pbx-agent/pkg/apitype"
)

// trustLine says where the portal keys the daemon trusts come from: loudly
// for a development build, whose roots are configuration.
func trustLine(t *apitype.TrustStatus) string {
	var keys []string
	for _, k := range t.Keys {
		s := k.KeyID
		switch {
		case k.Revoked:
			s += " (revoked)"
		case k.Role == "announced" && k.AnnouncedBy != "":
			s += " (announced by " + k.AnnouncedBy + ")"
		case k.Role == "root":
			s += " (root)"
		}
		keys = append(keys, s)
	}
	list := strings.Join(keys, ", ")
	if list == "" {
		list = "none"
	}
	var out string
	if t.Roots == "embedded" {
		out = "roots embedded in this build; trusted: " + list
	} else {
		out = "DEVELOPMENT BUILD: roots from portal.keyring (a release build embeds them); trusted: " + list
	}
	switch n := len(t.Ignored); n {
	case 0:
	case 1:
		out += "; 1 keyring entry not trusted (status --json: trust.ignored)"
	default:
		out += fmt.Sprintf("; %d keyring entries not trusted (status --json: trust.ignored)", n)
	}
	return out
}

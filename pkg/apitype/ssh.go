package apitype

import (
	"fmt"
	"strings"
)

// Summary says in one line how the tunnel stands, for `pbx-agent status`
// and the status page: "connected · 1 session open, 3 in all · 47.1 KiB
// in, 1.8 MiB out".
func (t *SSHTunnelStatus) Summary() string {
	if t == nil || !t.Open {
		return "closed"
	}
	var parts []string
	if t.Connected {
		parts = append(parts, "connected")
	} else {
		down := "not connected: dialling the portal again"
		if t.LastError != "" {
			down += " (" + t.LastError + ")"
		}
		parts = append(parts, down)
	}
	sessions := fmt.Sprintf("%d session%s open, %d in all", t.Sessions, plural(t.Sessions), t.SessionsTotal)
	if t.Refused > 0 {
		sessions += fmt.Sprintf(", %d refused", t.Refused)
	}
	parts = append(parts, sessions, byteSize(t.BytesIn)+" in, "+byteSize(t.BytesOut)+" out")
	return strings.Join(parts, " · ")
}

func plural(n int) string {
	if n == 1 {
		return ""
	}
	return "s"
}

// byteSize is n in B, KiB, MiB or GiB, one decimal from KiB up.
func byteSize(n int64) string {
	const unit = 1024
	if n < unit {
		return fmt.Sprintf("%d B", n)
	}
	v, suffix := float64(n)/unit, "KiB"
	for _, s := range []string{"MiB", "GiB"} {
		if v < unit {
			break
		}
		v, suffix = v/unit, s
	}
	return fmt.Sprintf("%.1f %s", v, suffix)
}

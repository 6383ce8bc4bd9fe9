package apitype

import "testing"

func TestTunnelSummary(t *testing.T) {
	for _, c := range []struct {
		in   *SSHTunnelStatus
		want string
	}{
		{nil, "closed"},
		{&SSHTunnelStatus{}, "closed"},
		{&SSHTunnelStatus{Open: true, Connected: true, Sessions: 1, SessionsTotal: 3, BytesIn: 48_213, BytesOut: 1_873_402},
			"connected · 1 session open, 3 in all · 47.1 KiB in, 1.8 MiB out"},
		{&SSHTunnelStatus{Open: true, LastError: "the portal refused the tunnel (HTTP 403)", Refused: 2, BytesIn: 1023, BytesOut: 3 << 30},
			"not connected: dialling the portal again (the portal refused the tunnel (HTTP 403)) · 0 sessions open, 0 in all, 2 refused · 1023 B in, 3.0 GiB out"},
	} {
		if got := c.in.Summary(); got != c.want {
			t.Errorf("Summary(%+v) =\n %q, want\n %q", c.in, got, c.want)
		}
	}
}

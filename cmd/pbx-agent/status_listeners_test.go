package main

import (
	"bytes"
	"strings"
	"testing"

	"github.com/pbx-agent/pbx-agent/pkg/apitype"
)

// TestStatusShowsAHeldPort: while another process holds listen.http's
// port, the summary says so; once bound, nothing is said.
func TestStatusShowsAHeldPort(t *testing.T) {
	st := activeStatus()
	st.Listeners = &apitype.ListenersStatus{
		Socket: &apitype.ListenerStatus{Address: "/run/pbx-agent/agent.sock", Systemd: true},
		HTTP: &apitype.ListenerStatus{Address: "127.0.0.1:9731",
			Error: "not listening: listen tcp 127.0.0.1:9731: bind: address already in use; retrying (attempt 3)"},
	}
	var b bytes.Buffer
	printStatus(&b, st, false)
	if want := "HTTP listener       127.0.0.1:9731 not listening: listen tcp 127.0.0.1:9731: bind: address already in use; retrying (attempt 3)\n"; !strings.Contains(b.String(), want) {
		t.Errorf("status lacks %q:\n%s", want, b.String())
	}
	st.Listeners.HTTP.Error = ""
	b.Reset()
	printStatus(&b, st, false)
	if strings.Contains(b.String(), "HTTP listener") {
		t.Errorf("a bound listener is reported:\n%s", b.String())
	}
}

package main

import (
	"bytes"
	"encoding/json"
	"reflect"
	"strings"
	"testing"

	"github.com/pbx-agent/pbx-agent/pkg/apitype"
)

func TestStatus(t *testing.T) {
	fb, sock := daemon(t)
	t.Run("human", func(t *testing.T) {
		r := run(t, "", "--socket", sock, "status")
		if r.code != 0 || r.stderr != "" {
			t.Fatalf("status = %+v", r)
		}
		for _, want := range []string{
			"State               active: licensed by the portal\n                    Licensed and in touch with the portal.\n",
			"PBX                 acme.example (pbx-42), WPBX-VM\n",
			"Term                monthly, ends 2026-06-01T00:00:00Z (in 12 days)\n",
			"Licence revision    7\n",
			"  Profile      Licensed    Used  Reserved  Over-use\n",
			"  PBX-BASIC           3       2         0\n",
			"  UC-Premium         10       8         1\n",
			"  UC-Business         0       0         0         2\n",
			"  uc-future           1       0         0\n",
			"Last heartbeat      2026-05-20T09:57:00Z (3 minutes ago)\n",
			"Next heartbeat      2026-05-20T10:01:00Z (in 60 seconds), a retry: 3 failed in a row\n",
			"Last error          portal timed out\n",
			"Offline grace ends  2026-06-19T10:00:00Z (in 30 days)\n",
			"Licence clock       2026-05-20T10:00:00Z (the local clock is 3 hours behind: ignored)\n",
			"Support SSH         open on port 2222 until 2026-05-20T13:00:00Z (in 3 hours)\n",
			"WMS                 7.02.20250609.3\n",
			// Times on the licence clock; a finish on the day it came shows the hour only.
			"Command             cmd-2 wms.upgrade: waiting, received 2026-05-20 09:00 UTC\n",
			"Command             cmd-1 ssh.open: done (opened), received 2026-05-19 08:00 UTC, finished 08:01 UTC\n",
			"Command             cmd-0 ssh.close: done, received 2026-05-18 08:00 UTC, finished 2026-05-19 10:00 UTC\n",
		} {
			if !strings.Contains(r.stdout, want) {
				t.Errorf("status lacks %q:\n%s", want, r.stdout)
			}
		}
		order := []string{"PBX-BASIC", "UC-Business", "UC-Premium", "uc-future"}
		for i := 1; i < len(order); i++ {
			if strings.Index(r.stdout, order[i-1]) > strings.Index(r.stdout, order[i]) {
				t.Errorf("%s listed after %s: profiles must follow the catalogue", order[i-1], order[i])
			}
		}
		if strings.Contains(r.stdout, "\x1b[") {
			t.Error("colour written to a non-terminal")
		}
	})
	t.Run("json", func(t *testing.T) {
		r := run(t, "", "--socket", sock, "status", "--json")
		if r.code != 0 || r.stderr != "" {
			t.Fatalf("status --json = %+v", r)
		}
		if !strings.HasPrefix(r.stdout, "{\n  \"state\": \"active\",\n") {
			t.Errorf("not indented JSON:\n%s", r.stdout)
		}
		var got apitype.Status
		if err := json.Unmarshal([]byte(r.stdout), &got); err != nil {
			t.Fatal(err)
		}
		if got.Listeners == nil || got.Listeners.Socket == nil || got.Listeners.Socket.Address != sock {
			t.Errorf("status --json listeners %+v, want the socket %s", got.Listeners, sock)
		}
		got.Listeners = nil // added by the server to the backend's
		if want := activeStatus(); !reflect.DeepEqual(got, want) {
			t.Errorf("status --json:\n got %+v\nwant %+v", got, want)
		}
	})
	t.Run("unactivated", func(t *testing.T) {
		fb.SetStatus(apitype.Status{State: "unactivated", Next: "no PBX key activated yet (pbx-agent activate)",
			Summary: "No key yet: run pbx-agent activate.", Commands: []apitype.CommandStatus{}})
		defer fb.SetStatus(activeStatus())
		r := run(t, "", "--socket", sock, "status")
		for _, want := range []string{"State               unactivated: no PBX key activated yet (pbx-agent activate)\n                    No key yet", "Licence             none", "Last heartbeat      never"} {
			if r.code != 10 || !strings.Contains(r.stdout, want) {
				t.Errorf("status lacks %q (exit %d):\n%s", want, r.code, r.stdout)
			}
		}
	})
	t.Run("colour", func(t *testing.T) {
		var b bytes.Buffer
		printStatus(&b, activeStatus(), true)
		if !strings.HasPrefix(b.String(), "State               \x1b[1;32mactive\x1b[0m: licensed by the portal\n") {
			t.Errorf("coloured state: %q", strings.SplitN(b.String(), "\n", 2)[0])
		}
	})
	t.Run("after a reload", func(t *testing.T) {
		st := activeStatus()
		st.Config = &apitype.ConfigStatus{RestartNeeded: []string{"listen.http", "state_dir"}, Error: "yaml: line 3: did not find expected key"}
		var b bytes.Buffer
		printStatus(&b, st, false)
		for _, want := range []string{"Config not reloaded yaml: line 3: did not find expected key\n",
			"Restart to apply    listen.http, state_dir (changed in the file since the start)\n"} {
			if !strings.Contains(b.String(), want) {
				t.Errorf("status lacks %q:\n%s", want, b.String())
			}
		}
	})
	t.Run("daemon not running", func(t *testing.T) {
		r := run(t, "", "--socket", "/nonexistent/agent.sock", "status")
		if r.code != 2 || !strings.Contains(r.stderr, "is the daemon running?") || r.stdout != "" {
			t.Errorf("status without a daemon = %+v", r)
		}
		oneLine(t, r)
	})
}

// TestStatusExitCodes checks the documented code of each state, with and
// without --json, and that the code is all a script gets: the status on
// stdout, nothing on stderr.
func TestStatusExitCodes(t *testing.T) {
	fb, sock := daemon(t)
	for _, tc := range []struct {
		state string
		code  int
	}{
		{"active", 0},
		{"offline", 0},
		{"unactivated", 10},
		{"lapsed", 11},
		{"stopping", 12},
		{"stopped", 13},
		{"deleted", 14},
		{"hibernating", 19}, // a newer daemon's state: not known to be licensed
	} {
		t.Run(tc.state, func(t *testing.T) {
			st := activeStatus()
			st.State = tc.state
			fb.SetStatus(st)
			for _, args := range [][]string{{"status"}, {"status", "--json"}} {
				r := run(t, "", append([]string{"--socket", sock}, args...)...)
				if r.code != tc.code || r.stderr != "" {
					t.Errorf("%s in state %s: exit %d, stderr %q; want exit %d and no stderr", strings.Join(args, " "), tc.state, r.code, r.stderr, tc.code)
				}
				if !strings.Contains(r.stdout, tc.state) {
					t.Errorf("%s in state %s: the state is not printed:\n%s", strings.Join(args, " "), tc.state, r.stdout)
				}
			}
		})
	}
	t.Run("help", func(t *testing.T) {
		r := run(t, "", "status", "--help")
		for _, want := range []string{"     0  active ", "     0  offline ", "    10  unactivated ", "    11  lapsed ", "    12  stopping ",
			"    13  stopped ", "    14  deleted ", "    19  (other) ", "     2               the daemon could not be asked"} {
			if !strings.Contains(r.stdout, want) {
				t.Errorf("status --help lacks %q:\n%s", want, r.stdout)
			}
		}
	})
}

package main

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/pbx-agent/pbx-agent/pkg/apitype"
	"github.com/pbx-agent/pbx-agent/pkg/license"
)

func TestActivate(t *testing.T) {
	f := newFixture(t)
	fb, sock := daemon(t)
	valid := f.key(t, nil)
	wrapped := filepath.Join(t.TempDir(), "key.txt")
	if err := os.WriteFile(wrapped, []byte("\""+valid[:40]+"\n"+valid[40:]+"\"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	expired := f.key(t, func(k *license.Key) { k.ExpiresAt = time.Now().Add(-48 * time.Hour) })
	serverInvalid := &license.Error{Doc: "PBX key", Kind: license.ErrInvalid, Detail: "already bound to another appliance"}

	tests := []struct {
		name       string
		stdin      string
		args       []string
		backendErr error
		socket     string // default: the test daemon's
		wantCode   int
		wantStdout string
		wantStderr string
		wantCalls  int
	}{
		{name: "valid key from stdin", stdin: valid + "\n", wantStdout: "Activated PBX acme.example (pbx-42): active\n", wantCalls: 1},
		{name: "wrapped key from a file", args: []string{"--key-file", wrapped}, wantStdout: "Activated PBX", wantCalls: 1},
		{name: "expired key checked locally", stdin: expired, wantCode: 2, wantStderr: "pbx-agent: refused by this appliance: PBX key expired"},
		{name: "not a key checked locally", stdin: "hello", wantCode: 2, wantStderr: "pbx-agent: refused by this appliance: input not a PBX key"},
		{name: "truncated key checked locally", stdin: valid[:len(valid)/2], wantCode: 2, wantStderr: "PBX key truncated"},
		{name: "invalid for the daemon", stdin: valid, backendErr: serverInvalid, wantCode: 2, wantStderr: "pbx-agent: refused by this appliance: " + serverInvalid.Error(), wantCalls: 1},
		{name: "key expired at the portal", stdin: valid, backendErr: fmt.Errorf("%w (%w): PBX key expired", apitype.ErrRefused, apitype.ErrInvalidKey),
			wantCode: 2, wantStderr: "pbx-agent: refused by the portal (invalid PBX key): PBX key expired", wantCalls: 1},
		{name: "another PBX held", stdin: valid, backendErr: fmt.Errorf("%w: this appliance already holds PBX pbx-1", apitype.ErrRefusedLocally),
			wantCode: 3, wantStderr: "pbx-agent: refused by this appliance: this appliance already holds", wantCalls: 1},
		{name: "refused by the portal", stdin: valid, backendErr: fmt.Errorf("%w: PBX pbx-42 is bound to another appliance", apitype.ErrRefused),
			wantCode: 3, wantStderr: "bound to another appliance", wantCalls: 1},
		{name: "portal unreachable", stdin: valid, backendErr: fmt.Errorf("%w: dial tcp 127.0.0.1:1: connection refused", apitype.ErrUnreachable),
			wantCode: 4, wantStderr: "portal unreachable: dial tcp", wantCalls: 1},
		{name: "other daemon error", stdin: valid, backendErr: errors.New("disk full"), wantCode: 2, wantStderr: "disk full", wantCalls: 1},
		{name: "daemon not running", stdin: valid, socket: "/nonexistent/agent.sock", wantCode: 2,
			wantStderr: "pbx-agent: cannot reach pbx-agent on /nonexistent/agent.sock: is the daemon running? (systemctl status pbx-agent)\n"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			fb.SetActivateErr(tt.backendErr)
			fb.ClearCalls()
			socket := sock
			if tt.socket != "" {
				socket = tt.socket
			}
			r := run(t, tt.stdin, append([]string{"--socket", socket, "activate"}, tt.args...)...)
			wantResult(t, r, tt.wantCode, tt.wantStdout, tt.wantStderr)
			keys := fb.Activations()
			if len(keys) != tt.wantCalls {
				t.Fatalf("the daemon saw %d activations, want %d", len(keys), tt.wantCalls)
			}
			if len(keys) > 0 && keys[0] != valid {
				t.Errorf("the daemon got key %q, want the normalised key", keys[0])
			}
			if sig := strings.Split(valid, ".")[2][:16]; strings.Contains(r.stdout+r.stderr, sig) {
				t.Error("output leaks the key")
			}
		})
	}
}

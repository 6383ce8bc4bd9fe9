package integration

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"encoding/base64"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/pbx-agent/pbx-agent/pkg/license"
	"github.com/pbx-agent/pbx-agent/pkg/protocol"
	"github.com/pbx-agent/pbx-agent/pkg/state"
)

// editPayload returns compact with its payload changed by edit and its
// header and signature kept: a document someone edited by hand.
func editPayload(t *testing.T, compact string, edit func(map[string]any)) string {
	t.Helper()
	parts := strings.Split(compact, ".")
	b, err := base64.RawURLEncoding.DecodeString(parts[1])
	if err != nil {
		t.Fatal(err)
	}
	var m map[string]any
	if err := json.Unmarshal(b, &m); err != nil {
		t.Fatal(err)
	}
	edit(m)
	if b, err = json.Marshal(m); err != nil {
		t.Fatal(err)
	}
	parts[1] = base64.RawURLEncoding.EncodeToString(b)
	return strings.Join(parts, ".")
}

// forge signs the payload of compact again with a new key under the id of
// the portal's own key: what a forger without the portal's key can do.
func forge(t *testing.T, compact, typ string, p *portal) string {
	t.Helper()
	kr, err := license.LoadKeyring(filepath.Join(p.data, "keyring"))
	if err != nil {
		t.Fatal(err)
	}
	_, priv, _ := ed25519.GenerateKey(nil)
	s, err := license.NewSigner(kr.KeyIDs()[0], priv)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := base64.RawURLEncoding.DecodeString(strings.Split(compact, ".")[1])
	var claims map[string]any
	json.Unmarshal(b, &claims)
	claims["profiles"] = map[string]any{"uc-business": 500}
	out, err := s.Sign(typ, claims)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// TestTamperedKeys: a key signed by someone else under the portal's key
// id, and a real key with a count edited, are refused locally, before any
// request: exit 2, the agent stays unactivated, the PBX stays unbound.
func TestTamperedKeys(t *testing.T) {
	p := startPortal(t, t.TempDir(), freeAddr(t))
	key := p.admin("pbx", "create", "--name", "tamper.example", "--users", "uc-business=5")
	a := newAppliance(t, "tampered", p, "1h")
	a.startQuick()
	for _, tt := range []struct{ name, key, want string }{
		{"forged", forge(t, key, license.TypeKey, p), "signature"},
		{"count edited", editPayload(t, key, func(m map[string]any) { m["profiles"] = map[string]any{"uc-business": 500} }), "signature"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			r := a.cli(tt.key, "activate")
			if r.code != 2 || !strings.Contains(r.stderr, tt.want) {
				t.Errorf("activate: exit %d, %q; want exit 2 naming the %s", r.code, r.stderr, tt.want)
			}
			if r := a.cli(tt.key, "key", "inspect"); r.code != 2 {
				t.Errorf("key inspect: exit %d, want 2", r.code)
			}
			if s := a.status(); s.State != "unactivated" || s.License != nil {
				t.Errorf("after the attempt: %s %+v", s.State, s.License)
			}
		})
	}
	pbx, err := p.client().PBX(context.Background(), "tamper.example")
	if err != nil {
		t.Fatal(err)
	}
	if pbx.Device != nil {
		t.Errorf("the portal bound the PBX after tampered keys: %+v", pbx.Device)
	}
}

// TestLicenceEditedInTheStateFolder: root raises a count in the saved
// licence, keeping the state file's own checksum right. The agent verifies
// the licence at start, refuses it and starts unactivated, saying why;
// activating the same key again restores the real licence.
func TestLicenceEditedInTheStateFolder(t *testing.T) {
	p := startPortal(t, t.TempDir(), freeAddr(t))
	key := p.admin("pbx", "create", "--name", "edited.example", "--users", "uc-business=5")
	a := newAppliance(t, "edited", p, "1h")
	a.startQuick()
	if r := a.cli(key, "activate"); r.code != 0 {
		t.Fatalf("activate: %s", r.stderr)
	}
	a.proc.stop(t)

	dir := filepath.Join(filepath.Dir(a.config), "state")
	f, err := state.Open[map[string]any](state.Options{Dir: dir, Name: "state.json", Version: 1})
	if err != nil {
		t.Fatal(err)
	}
	st, _, err := f.Load()
	if err != nil {
		t.Fatal(err)
	}
	st["license"] = editPayload(t, st["license"].(string), func(m map[string]any) {
		m["profiles"] = map[string]any{"uc-business": 500}
	})
	if err := f.Save(st); err != nil {
		t.Fatal(err)
	}

	a.startQuick()
	s := a.status()
	if s.State != "unactivated" || s.License != nil || !strings.Contains(s.Heartbeat.LastError, "no longer verifies") {
		t.Errorf("edited licence: state %s, licence %+v, error %q", s.State, s.License, s.Heartbeat.LastError)
	}
	if r := a.cli("", "check", "uc-business"); r.code != 1 {
		t.Errorf("admission with an edited licence: exit %d, want 1 (denied)", r.code)
	}
	if r := a.cli(key, "activate"); r.code != 0 {
		t.Fatalf("activating again: %s", r.stderr)
	}
	if s := a.status(); s.State != "active" || s.License.Profiles["uc-business"].Licensed != 5 {
		t.Errorf("after activating again: %s %+v", s.State, s.License)
	}
}

// TestStateFolderCopiedToAnotherAppliance copies an activated appliance's
// state folder (device key included) to a second appliance with another
// serial. The agent keeps the fingerprint it activated with and, finding
// another machine's at start, sets the licence and device key aside: the
// copy is unactivated, and activating it makes a new device key, which the
// portal refuses while the PBX is bound to the original.
func TestStateFolderCopiedToAnotherAppliance(t *testing.T) {
	p := startPortal(t, t.TempDir(), freeAddr(t))
	key := p.admin("pbx", "create", "--name", "copied.example", "--users", "uc-business=5")
	orig := newAppliance(t, "original", p, "1h")
	setSerial(t, orig, "SN-ORIGINAL")
	orig.startQuick()
	if r := orig.cli(key, "activate"); r.code != 0 {
		t.Fatalf("activate: %s", r.stderr)
	}
	orig.proc.stop(t)

	clone := newAppliance(t, "clone", p, "1h")
	setSerial(t, clone, "SN-CLONE")
	from, to := filepath.Join(filepath.Dir(orig.config), "state"), filepath.Join(filepath.Dir(clone.config), "state")
	if out, err := exec.Command("cp", "-a", from, to).CombinedOutput(); err != nil {
		t.Fatalf("copying the state folder: %v: %s", err, out)
	}
	clone.startQuick()
	refresh := clone.cli("", "refresh")
	s := clone.status()
	t.Logf("the copy: refresh exit %d (%s), state %s, holds a licence %v, last error %q",
		refresh.code, strings.TrimSpace(refresh.stderr), s.State, s.License != nil, s.Heartbeat.LastError)
	if refresh.code == 0 || s.State != "unactivated" || s.License != nil || !strings.Contains(s.Heartbeat.LastError, "another machine") {
		t.Fatalf("the copy was not refused: refresh exit %d, state %s, licence %v, error %q",
			refresh.code, s.State, s.License != nil, s.Heartbeat.LastError)
	}
	// Activating the copy with the PBX's key makes a device key of its
	// own, which the portal refuses: the PBX is bound to the original.
	if r := clone.cli(key, "activate"); r.code != 3 {
		t.Fatalf("activating the copy: exit %d (%s), want 3 (bound elsewhere)", r.code, strings.TrimSpace(r.stderr))
	}
}

// setSerial sets identity.serial in an appliance's configuration.
func setSerial(t *testing.T, a *appliance, serial string) {
	t.Helper()
	b, err := os.ReadFile(a.config)
	if err != nil {
		t.Fatal(err)
	}
	b = bytes.Replace(b, []byte("identity:\n"), []byte("identity:\n  serial: "+serial+"\n"), 1)
	if err := os.WriteFile(a.config, b, 0o600); err != nil {
		t.Fatal(err)
	}
}

// recorder stands between the agent and the portal: it keeps every
// heartbeat request and answer, and can answer with an old one instead.
type recorder struct {
	mu        sync.Mutex
	requests  []string
	answers   []string
	replayOld bool
}

func (rec *recorder) handler(t *testing.T, portalURL string) http.Handler {
	u, err := url.Parse(portalURL)
	if err != nil {
		t.Fatal(err)
	}
	proxy := httputil.NewSingleHostReverseProxy(u)
	proxy.ModifyResponse = func(resp *http.Response) error {
		if resp.Request.URL.Path != protocol.PathHeartbeat {
			return nil
		}
		b, err := io.ReadAll(resp.Body)
		if err != nil {
			return err
		}
		rec.mu.Lock()
		rec.answers = append(rec.answers, string(b))
		rec.mu.Unlock()
		resp.Body = io.NopCloser(bytes.NewReader(b))
		return nil
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		r.Body = io.NopCloser(bytes.NewReader(b))
		rec.mu.Lock()
		replay := rec.replayOld && r.URL.Path == protocol.PathHeartbeat && len(rec.answers) > 0
		var old string
		if replay {
			old = rec.answers[0]
		} else if r.URL.Path == protocol.PathHeartbeat {
			rec.requests = append(rec.requests, string(b))
		}
		rec.mu.Unlock()
		if replay {
			w.Header().Set("Content-Type", protocol.ContentType)
			io.WriteString(w, old)
			return
		}
		proxy.ServeHTTP(w, r)
	})
}

// TestReplays: a heartbeat captured on the wire and sent again is refused
// by the portal (its nonce was seen); an old portal answer sent again to
// the agent is refused by the agent (it answers another request) and
// changes nothing.
func TestReplays(t *testing.T) {
	p := startPortal(t, t.TempDir(), freeAddr(t))
	key := p.admin("pbx", "create", "--name", "replay.example", "--users", "uc-business=5")
	rec := &recorder{}
	mitm := httptest.NewServer(rec.handler(t, p.url()))
	t.Cleanup(mitm.Close) // after the agent stops: its long-poll holds a connection
	a := newAppliance(t, "replayed", &portal{t: t, addr: strings.TrimPrefix(mitm.URL, "http://"), data: p.data}, "1h")
	a.startQuick()
	if r := a.cli(key, "activate"); r.code != 0 {
		t.Fatalf("activate: %s", r.stderr)
	}
	if r := a.cli("", "refresh"); r.code != 0 {
		t.Fatalf("refresh: %s", r.stderr)
	}

	t.Run("heartbeat replayed at the portal", func(t *testing.T) {
		rec.mu.Lock()
		captured := rec.requests[0]
		rec.mu.Unlock()
		resp, err := http.Post(p.url()+protocol.PathHeartbeat, protocol.ContentType, strings.NewReader(captured))
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var e protocol.Error
		json.NewDecoder(resp.Body).Decode(&e)
		if resp.StatusCode != http.StatusConflict || e.Code != protocol.CodeReplay {
			t.Errorf("replayed heartbeat: %d %+v; want 409 %s", resp.StatusCode, e, protocol.CodeReplay)
		}
	})

	t.Run("answer replayed at the agent", func(t *testing.T) {
		// The wire replays before the change: the long-poll wakes the
		// agent for it at once, and that heartbeat must meet the replay too.
		before := a.status()
		rec.mu.Lock()
		rec.replayOld = true
		rec.mu.Unlock()
		p.admin("pbx", "licenses", "replay.example", "uc-business=6")
		r := a.cli("", "refresh")
		after := a.status()
		if r.code == 0 || !strings.Contains(after.Heartbeat.LastError, "answers another request") {
			t.Errorf("old answer: refresh exit %d, last error %q", r.code, after.Heartbeat.LastError)
		}
		if after.License.Revision != before.License.Revision || !after.Heartbeat.LastSuccess.Equal(*before.Heartbeat.LastSuccess) {
			t.Errorf("an old answer changed the agent: revision %d → %d, last success %v → %v", before.License.Revision,
				after.License.Revision, before.Heartbeat.LastSuccess, after.Heartbeat.LastSuccess)
		}
		rec.mu.Lock()
		rec.replayOld = false
		rec.mu.Unlock()
		if r := a.cli("", "refresh"); r.code != 0 || a.status().License.Revision != 2 {
			t.Errorf("with the wire clean again: exit %d, want revision 2", r.code)
		}
	})
}

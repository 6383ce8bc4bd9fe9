package agent

import (
	"context"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/pbx-agent/pbx-agent/internal/ownerproxy"
	"github.com/pbx-agent/pbx-agent/pkg/apitype"
	"github.com/pbx-agent/pbx-agent/pkg/license"
	"github.com/pbx-agent/pbx-agent/pkg/protocol"
	"github.com/pbx-agent/pbx-agent/pkg/state"
)

// The attacks of an appliance's owner: root on the box, the binary as
// shipped, the device key in hand, the state folder theirs to edit, the
// network between the agent and the portal theirs to proxy. Each test
// shows the attack refused on the appliance or seen by the portal.

// TestProxyClaimingAnotherRevision: the owner's proxy re-signs every
// heartbeat and wait claiming revision 999999, or (the strongest proxy)
// the very revision and digest the portal states as current, with any
// request to fetch the licence struck out. After a decrease, a suspension
// and 40 days on the portal's clock, the agent is not active on its old
// revision: it takes the current licence, or, kept from it, counts no
// answer as a success and lapses with the offline grace.
func TestProxyClaimingAnotherRevision(t *testing.T) {
	for _, tt := range []struct {
		name    string
		learn   bool // the owner asks the portal first, to know what to claim
		rewrite func(current *atomic.Value) func(string, map[string]any)
	}{
		{"revision 999999", false, func(*atomic.Value) func(string, map[string]any) {
			return func(_ string, c map[string]any) { c["revision"] = 999999 }
		}},
		{"the current revision and digest, no fetch", true, func(current *atomic.Value) func(string, map[string]any) {
			return func(_ string, c map[string]any) {
				if cur, ok := current.Load().(protocol.Held); ok {
					c["revision"], c["digest"] = cur.Revision, cur.Digest
				}
				delete(c, "fetch")
			}
		}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			r := newRig(t)
			var current atomic.Value // what the portal's answers state, as the proxy reads them
			key := r.createPBX(t, "acme.example", license.Counts{license.UCPremium: 13})
			a := r.newAgent(t)
			if err := a.Activate(context.Background(), key); err != nil {
				t.Fatal(err)
			}
			proxy := ownerproxy.Start(t, ownerproxy.Options{
				Portal:    r.server.URL,
				DeviceKey: func() string { return filepath.Join(r.cfg.StateDir, deviceKeyFile) },
				Rewrite:   tt.rewrite(&current),
				// The strongest proxy reads what every answer states as current.
				Answer: func(ans protocol.Answer) {
					if ans.Digest != "" {
						current.Store(protocol.Held{Revision: ans.Revision, Digest: ans.Digest})
					}
				},
			})
			a.lic.portal.http.SetBaseURL(proxy.URL)
			if err := a.heartbeat(context.Background()); err != nil {
				t.Fatalf("heartbeat through the proxy, nothing changed yet: %v", err)
			}

			r.licences(t, license.Counts{license.UCPremium: 2})
			if _, err := r.admin.Suspend(context.Background(), "acme.example"); err != nil {
				t.Fatal(err)
			}
			r.advancePortal(t, 40*24*time.Hour)
			if tt.learn {
				ownerHeartbeat(t, a, proxy.URL, r.portal.Now())
			}

			for range 3 {
				a.heartbeat(context.Background())
			}
			s := a.Status()
			if s.State == "active" || s.State == "offline" {
				t.Errorf("after a decrease, a suspension and 40 days: %s on revision %d; want lapsed or stopped", s.State, s.License.Revision)
			}
			if tt.learn && (s.License.Revision != 1 || s.Heartbeat.LastError == "") {
				t.Errorf("a proxy claiming exactly what the portal states: revision %d, last error %q; want revision 1 kept from the agent and the answers not counted",
					s.License.Revision, s.Heartbeat.LastError)
			}
			if d := a.Admit(context.Background(), apitype.Admission{Profile: license.UCPremium, Count: 7}); d.Allowed {
				t.Errorf("7 more users admitted through the proxy: %+v", d)
			}
			t.Logf("%s: state %s, revision %d, last error %q", tt.name, s.State, s.License.Revision, s.Heartbeat.LastError)
		})
	}
}

// ownerHeartbeat is a heartbeat the owner makes with the device key, to
// read what the portal states as current (the proxy keeps it).
func ownerHeartbeat(t *testing.T, a *Agent, proxyURL string, now time.Time) {
	t.Helper()
	a.lic.mu.Lock()
	req := protocol.HeartbeatRequest{PBXID: a.lic.doc.PBX.ID, Revision: a.lic.doc.Revision, Link: a.lic.st.Chain.Digest, Seq: a.lic.st.Chain.Seq, State: "active",
		Request: protocol.Request{Time: now, Nonce: newNonce()}}
	dev := a.lic.device
	a.lic.mu.Unlock()
	body, err := dev.Sign(protocol.TypeHeartbeat, req)
	if err != nil {
		t.Fatal(err)
	}
	resp, err := http.Post(proxyURL+protocol.PathHeartbeat, protocol.ContentType, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
}

// TestRevokedKeyIsRefusedEverywhere: after the portal rotates its key and
// revokes the old one in a new licence revision, the holder of the old
// key gets nothing accepted: not a licence, not an answer, not a command,
// and not by rolling the state file back to before the revocation.
func TestRevokedKeyIsRefusedEverywhere(t *testing.T) {
	r := newRig(t)
	a := r.activated(t, nil) // acme.example, 10 UC-Premium users
	before := readFile(t, filepath.Join(r.cfg.StateDir, stateFileName))
	old, err := license.LoadSigner(filepath.Join(filepath.Dir(r.portal.KeyringDir()), "signing-key.pem")) // the leaked key
	if err != nil {
		t.Fatal(err)
	}
	rot, err := r.admin.RotateKey(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	a = r.newAgent(t) // the appliance now trusts the new key too
	if err := a.heartbeat(context.Background()); err != nil {
		t.Fatalf("heartbeat after the rotation: %v", err)
	}
	if got := a.lic.trust.Revoked(); !slices.Contains(got, rot.Retired) {
		t.Fatalf("revoked keys %v; want %s", got, rot.Retired)
	}
	pbxID := a.Status().PBX.ID

	t.Run("licence", func(t *testing.T) {
		doc := *a.lic.doc
		doc.Revision, doc.Counts, doc.RevokedKeyIDs = doc.Revision+1, license.Counts{license.UCPremium: 5000}, nil
		forged, err := old.Sign(license.TypeLicense, doc)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := a.lic.acceptLicense(forged, pbxID, false); err == nil || !strings.Contains(err.Error(), "revoked") {
			t.Errorf("a licence of 5,000 users signed by the revoked key: %v; want refused as revoked", err)
		}
	})
	t.Run("answer", func(t *testing.T) {
		ans, err := old.Sign(protocol.TypeAnswer, protocol.Answer{Status: protocol.StatusOK, Time: time.Now(), Nonce: "n", PBXID: pbxID})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := protocol.VerifyAnswer(ans, a.lic.trust.Keyring(), "n", pbxID); err == nil {
			t.Error("an answer signed by the revoked key was accepted")
		}
	})
	t.Run("command", func(t *testing.T) {
		now := a.lic.clock.Now()
		cmd, err := old.Sign(protocol.TypeCommand, protocol.Command{ID: "cmd-revoked", PBXID: pbxID, Type: protocol.CommandSSHClose,
			IssuedAt: now, ExpiresAt: now.Add(time.Hour)})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := protocol.VerifyCommand(cmd, a.lic.trust.Keyring(), pbxID, now); err == nil {
			t.Error("a command signed by the revoked key was accepted")
		}
	})
	t.Run("state rolled back to before the revocation", func(t *testing.T) {
		if err := os.WriteFile(filepath.Join(r.cfg.StateDir, stateFileName), before, 0o600); err != nil {
			t.Fatal(err)
		}
		rolled := r.newAgent(t)
		if s := rolled.Status(); s.State != "unactivated" || !strings.Contains(s.Heartbeat.LastError, "revoked") {
			t.Errorf("a state holding a licence signed by the revoked key: %s, %q; want unactivated, revoked", s.State, s.Heartbeat.LastError)
		}
	})
}

func readFile(t *testing.T, path string) []byte {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// editState loads the agent's state file as plain JSON, lets edit change
// it and saves it with a valid checksum: what root can do with any editor.
func editState(t *testing.T, dir string, edit func(map[string]any)) {
	t.Helper()
	f, err := state.Open[map[string]any](state.Options{Dir: dir, Name: stateFileName, Version: stateSchema})
	if err != nil {
		t.Fatal(err)
	}
	st, _, err := f.Load()
	if err != nil {
		t.Fatal(err)
	}
	edit(st)
	if err := f.Save(st); err != nil {
		t.Fatal(err)
	}
}

// TestEditedStateGrantsNothing: the unsigned parts of the state are the
// owner's to edit; none of the edits keeps the PBX licensed longer or
// lets it use another PBX's licence.
func TestEditedStateGrantsNothing(t *testing.T) {
	setup := func(t *testing.T) (*rig, *Agent) {
		r := newRig(t)
		a := r.activated(t, nil)
		return r, a
	}

	t.Run("last success set to 2099, portal blocked for 31 days", func(t *testing.T) {
		r, _ := setup(t)
		editState(t, r.cfg.StateDir, func(st map[string]any) {
			st["last_success"] = "2099-01-01T00:00:00Z"
			delete(st, "answer")
		})
		r.server.Close()
		r.time.run(31 * 24 * time.Hour)
		a := r.newAgent(t)
		if got := a.State(); got != license.Lapsed {
			t.Errorf("31 days offline with last_success edited to 2099: %s; want lapsed", got)
		}
	})

	t.Run("the kept answer swapped for another PBX's", func(t *testing.T) {
		r, _ := setup(t)
		other := otherPBXActivated(t, r)
		r.time.run(20 * 24 * time.Hour)
		if err := other.heartbeat(context.Background()); err != nil {
			t.Fatal(err)
		}
		other.lic.mu.Lock()
		fresh := other.lic.st.Answer
		other.lic.mu.Unlock()
		editState(t, r.cfg.StateDir, func(st map[string]any) { st["answer"] = fresh })
		r.server.Close()
		r.time.run(11 * 24 * time.Hour)
		if got := r.newAgent(t).State(); got != license.Lapsed {
			t.Errorf("31 days offline, with another PBX's fresh answer kept: %s; want lapsed", got)
		}
	})

	t.Run("another PBX's licence pasted in", func(t *testing.T) {
		r, _ := setup(t)
		other := otherPBXActivated(t, r)
		other.lic.mu.Lock()
		lic, pbx := other.lic.st.License, *other.lic.st.PBX
		other.lic.mu.Unlock()
		for _, withPBX := range []bool{false, true} {
			editState(t, r.cfg.StateDir, func(st map[string]any) {
				st["license"] = lic
				if withPBX {
					st["pbx"] = map[string]any{"id": pbx.ID, "name": pbx.Name, "model": string(pbx.Model)}
				}
			})
			s := r.newAgent(t).Status()
			if s.State != "unactivated" || !strings.Contains(s.Heartbeat.LastError, "foreign") {
				t.Errorf("another PBX's licence (its PBX record too: %v): %s, %q; want unactivated, foreign", withPBX, s.State, s.Heartbeat.LastError)
			}
		}
	})

	t.Run("fingerprint deleted", func(t *testing.T) {
		r, _ := setup(t)
		editState(t, r.cfg.StateDir, func(st map[string]any) { delete(st, "fingerprint") })
		a := r.newAgent(t)
		s := a.Status()
		if s.State != "unactivated" || !strings.Contains(s.Heartbeat.LastError, "no fingerprint") {
			t.Errorf("state without a fingerprint: %s, %q; want unactivated, set aside", s.State, s.Heartbeat.LastError)
		}
		st, _, err := a.lic.store.Load()
		if err != nil || st.License == "" || st.Fingerprint != "" {
			t.Errorf("the foreign state was changed on disk: fingerprint %q, licence kept %v, %v", st.Fingerprint, st.License != "", err)
		}
	})

	t.Run("a snapshot from before a decrease restored", func(t *testing.T) {
		r, a := setup(t)
		snapshot := readFile(t, filepath.Join(r.cfg.StateDir, stateFileName))
		r.licences(t, license.Counts{license.UCPremium: 2})
		if err := a.heartbeat(context.Background()); err != nil || a.Status().License.Revision != 2 {
			t.Fatalf("taking the decrease: %v", err)
		}
		// One more: a state one answer behind is what a lost answer looks
		// like, and is accepted as such (it still gets revision 2).
		if err := a.heartbeat(context.Background()); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(r.cfg.StateDir, stateFileName), snapshot, 0o600); err != nil {
			t.Fatal(err)
		}
		restored := r.newAgent(t)
		if err := restored.heartbeat(context.Background()); err != nil {
			t.Fatalf("first heartbeat of the restored state: %v", err)
		}
		if s := restored.Status(); s.License.Revision != 2 || s.License.Profiles["uc-premium"].Licensed != 2 {
			t.Errorf("the restored state after its first heartbeat: revision %d, %+v; want revision 2 (2 users)", s.License.Revision, s.License.Profiles)
		}
		pbx, err := r.admin.PBX(context.Background(), "acme.example")
		if err != nil {
			t.Fatal(err)
		}
		if pbx.ChainForks != 1 || pbx.LastFork == nil {
			t.Errorf("the portal did not see the restored state: forks %d", pbx.ChainForks)
		}
		if !slices.Contains(kinds(t, r.cfg.StateDir), auditChainReanchored) {
			t.Errorf("no %s in the audit log: %v", auditChainReanchored, kinds(t, r.cfg.StateDir))
		}
	})
}

// otherPBXActivated is another PBX of the same portal, of 500 users,
// activated on another appliance: what the owner may copy from.
func otherPBXActivated(t *testing.T, r *rig) *Agent {
	t.Helper()
	key := r.createPBX(t, "other.example", license.Counts{license.UCPremium: 500})
	other := r.otherAppliance(t)
	if err := other.Activate(context.Background(), key); err != nil {
		t.Fatal(err)
	}
	return other
}

// TestUnwritableStateRefusesTheNewRevision: a new revision that cannot be
// saved is not applied (nothing is granted that a restart would forget)
// and is not counted as a success; the error says why.
func TestUnwritableStateRefusesTheNewRevision(t *testing.T) {
	r := newRig(t)
	a := r.activated(t, nil) // acme.example, 10 UC-Premium users
	r.licences(t, license.Counts{license.UCPremium: 20})
	a.lic.store = brokenStore(t, a)
	err := a.heartbeat(context.Background())
	s := a.Status()
	if err == nil || s.License.Revision != 1 || !strings.Contains(s.Heartbeat.LastError, "not applied") {
		t.Errorf("unsavable revision 2: err %v, holding revision %d, last error %q; want an error, revision 1, \"not applied\"",
			err, s.License.Revision, s.Heartbeat.LastError)
	}
}

// brokenStore is a state file whose folder is gone, a file in its place:
// every save fails, as on a read-only or failed disk (root writes through
// mode bits, so a chmod would not do).
func brokenStore(t *testing.T, a *Agent) *state.File[persisted] {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "state")
	f, err := state.Open[persisted](state.Options{Dir: dir, Name: stateFileName, Version: stateSchema})
	if err != nil {
		t.Fatal(err)
	}
	if err := os.RemoveAll(dir); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(dir, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	return f
}

// TestClonedApplianceLapses: the whole state folder copied to a clone of
// the machine (a cloned VM: same machine id, same serial) runs as the
// original, as nothing on the box can tell them apart. Once both
// heartbeat, the portal refuses them with a signed answer and the PBX
// lapses on both; after the partner removes the copy and resyncs, the
// one left is active again.
func TestClonedApplianceLapses(t *testing.T) {
	r := newRig(t)
	orig := r.activated(t, nil) // acme.example, 10 UC-Premium users
	cloneDir := filepath.Join(t.TempDir(), "state")
	copyDir(t, r.cfg.StateDir, cloneDir)
	clone := r.agentIn(t, cloneDir)

	for range 3 {
		orig.heartbeat(context.Background())
		clone.heartbeat(context.Background())
	}
	for name, a := range map[string]*Agent{"original": orig, "clone": clone} {
		if got := a.State(); got != license.Lapsed {
			t.Errorf("%s, with both heartbeating: %s; want lapsed", name, got)
		}
		if d := a.Admit(context.Background(), apitype.Admission{Profile: license.UCPremium, Count: 1}); d.Allowed {
			t.Errorf("%s admits a user while refused as a copy", name)
		}
	}
	if !slices.Contains(kinds(t, cloneDir), auditChainRefused) {
		t.Errorf("no %s in the clone's audit log", auditChainRefused)
	}
	// A restart keeps the refusal: it is kept signed in the state.
	if got := r.newAgent(t).State(); got != license.Lapsed {
		t.Errorf("the original restarted: %s; want lapsed", got)
	}

	if _, err := r.admin.Resync(context.Background(), "acme.example"); err != nil {
		t.Fatal(err)
	}
	if err := orig.heartbeat(context.Background()); err != nil {
		t.Fatalf("heartbeat after the resync: %v", err)
	}
	if got := orig.State(); got != license.Active {
		t.Errorf("the copy left after the resync: %s; want active", got)
	}
}

func copyDir(t *testing.T, from, to string) {
	t.Helper()
	if err := os.CopyFS(to, os.DirFS(from)); err != nil {
		t.Fatal(err)
	}
}

// TestWaitAnswerStatesTheCurrentLicence: a proxy that claims revision
// 999999 in every wait keeps the portal from ending waits early for a new
// licence, but the wait's signed answer states the current one: the agent
// heartbeats for it without waiting for its interval.
func TestWaitAnswerStatesTheCurrentLicence(t *testing.T) {
	r := newRig(t)
	key := r.createPBX(t, "acme.example", license.Counts{license.UCPremium: 13})
	a := r.newAgent(t)
	if err := a.Activate(context.Background(), key); err != nil {
		t.Fatal(err)
	}
	proxy := ownerproxy.Start(t, ownerproxy.Options{
		Portal:    r.server.URL,
		DeviceKey: func() string { return filepath.Join(r.cfg.StateDir, deviceKeyFile) },
		Rewrite: func(path string, c map[string]any) {
			if path == protocol.PathWait {
				c["revision"], c["wait_seconds"] = 999999, 1
			}
		},
	})
	a.lic.portal.http.SetBaseURL(proxy.URL)
	r.licences(t, license.Counts{license.UCPremium: 2})
	var run waitRun
	if _, ok := a.waitOnce(context.Background(), &run); !ok || run.failures != 0 {
		t.Fatalf("wait through the proxy: ok %v, failures %d", ok, run.failures)
	}
	select {
	case <-a.hb.wake:
	default:
		t.Error("a wait whose answer states revision 2, holding 1, did not wake the heartbeat")
	}
}

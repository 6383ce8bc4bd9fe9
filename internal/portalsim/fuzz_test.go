package portalsim

import (
	"context"
	"crypto/ed25519"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"flag"
	"fmt"
	"log/slog"
	mrand "math/rand/v2"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/pbx-agent/pbx-agent/pkg/license"
	"github.com/pbx-agent/pbx-agent/pkg/protocol"
)

var updateSeeds = flag.Bool("update", false, "rewrite the committed fuzz seeds under testdata/fuzz")

// fuzzDevice is a device key derived from a fixed seed, so committed seeds
// carry requests it signed.
func fuzzDevice(t testing.TB) *license.Signer {
	seed := sha256.Sum256([]byte("fuzz device"))
	priv := ed25519.NewKeyFromSeed(seed[:])
	s, err := license.NewSigner(protocol.DeviceKeyID(priv.Public().(ed25519.PublicKey)), priv)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func fuzzSign(t testing.TB, s *license.Signer, typ string, v any) string {
	out, err := s.Sign(typ, v)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// FuzzAgentAPI posts arbitrary bodies to the portal's agent endpoints, as
// any client on the network may: the portal answers a signed 200 to the
// request's own nonce, or a JSON refusal with a 4xx status; never a 5xx.
func FuzzAgentAPI(f *testing.F) {
	clock := &fakeClock{t: base}
	p, err := New(Config{DataDir: f.TempDir(), Logger: slog.New(slog.DiscardHandler), Now: clock.Now, Rand: mrand.New(mrand.NewPCG(1, 2))})
	if err != nil {
		f.Fatal(err)
	}
	f.Cleanup(func() { p.Close() })
	h := p.Handler()
	srv := httptest.NewServer(h)
	f.Cleanup(srv.Close)
	out, err := NewClient(srv.URL).CreatePBX(context.Background(), CreatePBXRequest{
		Name: "fuzz.example", Model: "WPBX-VM", Term: "monthly", Profiles: license.Counts{license.UCPremium: 5}})
	if err != nil {
		f.Fatal(err)
	}
	kr, err := license.LoadKeyring(p.KeyringDir())
	if err != nil {
		f.Fatal(err)
	}
	// A valid activation and heartbeat by this run's portal: the seeds that
	// reach the handlers' far ends.
	dev := fuzzDevice(f)
	act := protocol.ActivateRequest{Request: protocol.Request{Time: base, Nonce: "seed-act"}, Key: out.Key,
		DeviceKey: dev.Public(), Fingerprint: "fp", Model: license.ModelVM, AgentVersion: "fuzz"}
	f.Add(uint8(0), fuzzSign(f, dev, protocol.TypeActivate, act))
	hb := protocol.HeartbeatRequest{Request: protocol.Request{Time: base, Nonce: "seed-hb"}, PBXID: out.PBX.ID, Revision: 1, State: "active"}
	f.Add(uint8(1), fuzzSign(f, dev, protocol.TypeHeartbeat, hb))

	paths := []string{protocol.PathActivate, protocol.PathHeartbeat}
	f.Fuzz(func(t *testing.T, which uint8, body string) {
		req := httptest.NewRequest(http.MethodPost, paths[int(which)%len(paths)], strings.NewReader(body))
		req.Header.Set("Content-Type", protocol.ContentType)
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)
		if rec.Code == http.StatusOK {
			v, err := kr.Verify(rec.Body.String(), protocol.TypeAnswer, "portal answer")
			if err != nil {
				t.Fatalf("a 200 that does not verify: %v", err)
			}
			var a protocol.Answer
			if err := json.Unmarshal(v.Payload, &a); err != nil {
				t.Fatal(err)
			}
			if want := unverifiedNonce(body); a.Nonce != want {
				t.Fatalf("answered nonce %q to a request with nonce %q", a.Nonce, want)
			}
			return
		}
		allowed := []int{http.StatusBadRequest, http.StatusUnauthorized, http.StatusConflict,
			http.StatusRequestEntityTooLarge, http.StatusUnsupportedMediaType}
		if !slices.Contains(allowed, rec.Code) {
			t.Fatalf("status %d for body %q: %s", rec.Code, body, rec.Body)
		}
		var e protocol.Error
		if err := json.Unmarshal(rec.Body.Bytes(), &e); err != nil || e.Code == "" || e.Message == "" {
			t.Fatalf("refusal %d without a JSON error (%v): %s", rec.Code, err, rec.Body)
		}
	})
}

// unverifiedNonce reads the nonce a compact JWS claims, without checking it.
func unverifiedNonce(compact string) string {
	parts := strings.Split(compact, ".")
	if len(parts) != 3 {
		return ""
	}
	b, err := base64.RawURLEncoding.DecodeString(parts[1])
	if err != nil {
		return ""
	}
	var r protocol.Request
	json.Unmarshal(b, &r)
	return r.Nonce
}

// TestWriteFuzzSeeds regenerates the committed seeds with -update: requests
// signed by the fixed device key, valid in form but naming keys and PBXs no
// portal issued, and broken variants.
func TestWriteFuzzSeeds(t *testing.T) {
	if !*updateSeeds {
		t.Skip("run with -update to rewrite testdata/fuzz")
	}
	dev := fuzzDevice(t)
	act := protocol.ActivateRequest{Request: protocol.Request{Time: base, Nonce: "n1"}, Key: "eyJhbGciOiJFZERTQSJ9.e30.c2ln",
		DeviceKey: dev.Public(), Fingerprint: "fp", Model: license.ModelVM, AgentVersion: "fuzz"}
	actSigned := fuzzSign(t, dev, protocol.TypeActivate, act)
	hb := protocol.HeartbeatRequest{Request: protocol.Request{Time: base, Nonce: "n2"}, PBXID: "pbx-x", Revision: 1, State: "active",
		Usage: license.Counts{license.UCPremium: 2}}
	noKey := act
	noKey.DeviceKey = nil
	seeds := map[string]struct {
		which uint8
		body  string
	}{
		"activate":             {0, actSigned},
		"activate-no-device":   {0, fuzzSign(t, dev, protocol.TypeActivate, noKey)},
		"activate-as-hb":       {1, actSigned},
		"activate-truncated":   {0, actSigned[:len(actSigned)-9]},
		"heartbeat":            {1, fuzzSign(t, dev, protocol.TypeHeartbeat, hb)},
		"heartbeat-wrong-type": {1, fuzzSign(t, dev, protocol.TypeAnswer, hb)},
		"not-jws":              {0, "a.b"},
		"empty":                {1, ""},
	}
	dir := filepath.Join("testdata", "fuzz", "FuzzAgentAPI")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	for name, s := range seeds {
		body := fmt.Sprintf("go test fuzz v1\nbyte(%q)\nstring(%q)\n", s.which, s.body)
		if err := os.WriteFile(filepath.Join(dir, name), []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

package portalsim

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"io"
	"log/slog"
	mrand "math/rand/v2"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/pbx-agent/pbx-agent/pkg/license"
	"github.com/pbx-agent/pbx-agent/pkg/protocol"
)

// base is the real clock's time in every test.
var base = time.Date(2026, 11, 27, 12, 0, 0, 0, time.UTC)

// fakeClock is the injected real clock; tests move it by hand.
type fakeClock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *fakeClock) Add(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

// fixture is a portal in a temp folder behind an httptest server.
type fixture struct {
	t      *testing.T
	config func(*Config) // adjusts the config before each start; may be nil
	dir    string
	clock  *fakeClock
	portal *Portal
	srv    *httptest.Server
	admin  *Client
}

func newFixture(t *testing.T) *fixture { return newFixtureWith(t, nil) }

func newFixtureWith(t *testing.T, config func(*Config)) *fixture {
	t.Helper()
	f := &fixture{t: t, config: config, dir: filepath.Join(t.TempDir(), "data"), clock: &fakeClock{t: base}}
	f.start()
	t.Cleanup(f.stop)
	return f
}

func (f *fixture) start() {
	f.t.Helper()
	cfg := Config{
		DataDir: f.dir,
		Logger:  slog.New(slog.NewTextHandler(io.Discard, nil)),
		Now:     f.clock.Now,
		Rand:    mrand.New(mrand.NewPCG(1, 2)),
	}
	if f.config != nil {
		f.config(&cfg)
	}
	p, err := New(cfg)
	if err != nil {
		f.t.Fatalf("New: %v", err)
	}
	f.portal = p
	f.srv = httptest.NewServer(p.Handler())
	f.admin = NewClient(f.srv.URL)
}

func (f *fixture) stop() {
	if f.portal == nil {
		return
	}
	f.srv.Close()
	if err := f.portal.Close(); err != nil {
		f.t.Errorf("Close: %v", err)
	}
	f.portal = nil
}

// restart closes the portal and opens a new one on the same folder.
func (f *fixture) restart() {
	f.t.Helper()
	f.stop()
	f.start()
}

// keyring is what an agent trusts: the exported keyring folder.
func (f *fixture) keyring() *license.Keyring {
	f.t.Helper()
	kr, err := license.LoadKeyring(filepath.Join(f.dir, "keyring"))
	if err != nil {
		f.t.Fatal(err)
	}
	return kr
}

// createPBX makes a PBX through the admin API and returns it with its key.
func (f *fixture) createPBX(name string, model license.Model, term license.Term, counts license.Counts) (PBX, string) {
	f.t.Helper()
	out, err := f.admin.CreatePBX(context.Background(), CreatePBXRequest{Name: name, Model: string(model), Term: string(term), Profiles: counts})
	if err != nil {
		f.t.Fatalf("creating PBX %s: %v", name, err)
	}
	return out.PBX, out.Key
}

func (f *fixture) show(ref string) *PBX {
	f.t.Helper()
	v, err := f.admin.PBX(context.Background(), ref)
	if err != nil {
		f.t.Fatalf("showing PBX %s: %v", ref, err)
	}
	return v
}

// testAgent is an appliance: an Ed25519 device key signing requests.
type testAgent struct {
	f      *fixture
	pub    ed25519.PublicKey
	priv   ed25519.PrivateKey
	signer *license.Signer
	model  license.Model
	pbxID  string
	// held are the licences it was sent, by revision; link is its end of
	// the heartbeat chain.
	held map[int64]string
	link protocol.Link
}

func newTestAgent(f *fixture, model license.Model) *testAgent {
	f.t.Helper()
	pub, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		f.t.Fatal(err)
	}
	s, err := license.NewSigner(protocol.DeviceKeyID(pub), priv)
	if err != nil {
		f.t.Fatal(err)
	}
	return &testAgent{f: f, pub: pub, priv: priv, signer: s, model: model}
}

func (a *testAgent) kid() string { return protocol.DeviceKeyID(a.pub) }

func (a *testAgent) sign(typ string, v any) string {
	a.f.t.Helper()
	s, err := a.signer.Sign(typ, v)
	if err != nil {
		a.f.t.Fatal(err)
	}
	return s
}

func newNonce() string {
	b := make([]byte, 16)
	rand.Read(b)
	return base64.RawURLEncoding.EncodeToString(b)
}

func (a *testAgent) activateReq(key string, ts time.Time) protocol.ActivateRequest {
	return protocol.ActivateRequest{
		Request:      protocol.Request{Time: ts, Nonce: newNonce()},
		Key:          key,
		DeviceKey:    a.pub,
		Fingerprint:  "fp-" + a.kid(),
		Model:        a.model,
		AgentVersion: "test",
	}
}

func (a *testAgent) heartbeatReq(ts time.Time, revision int64) protocol.HeartbeatRequest {
	return protocol.HeartbeatRequest{
		Request:      protocol.Request{Time: ts, Nonce: newNonce()},
		PBXID:        a.pbxID,
		Revision:     revision,
		Digest:       digestOrEmpty(a.held[revision]),
		Link:         a.link.Digest,
		Seq:          a.link.Seq,
		State:        "active",
		Usage:        license.Counts{license.UCPremium: 3},
		AgentVersion: "test",
	}
}

// response is what the portal answered.
type response struct {
	status int
	header http.Header
	body   string
}

// refusal decodes a JSON refusal.
func (r response) refusal(t *testing.T) protocol.Error {
	t.Helper()
	var e protocol.Error
	if err := json.Unmarshal([]byte(r.body), &e); err != nil {
		t.Fatalf("refusal %d is not JSON: %q", r.status, r.body)
	}
	return e
}

func (a *testAgent) post(path, body string) response {
	a.f.t.Helper()
	resp, err := http.Post(a.f.srv.URL+path, protocol.ContentType, strings.NewReader(body))
	if err != nil {
		a.f.t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		a.f.t.Fatal(err)
	}
	return response{status: resp.StatusCode, header: resp.Header, body: string(b)}
}

// answer verifies a signed answer as the agent would.
func (a *testAgent) answer(r response, nonce string) *protocol.Answer {
	a.f.t.Helper()
	if r.status != http.StatusOK || r.header.Get("Content-Type") != protocol.ContentType {
		a.f.t.Fatalf("want a signed 200 answer, got %d %s: %s", r.status, r.header.Get("Content-Type"), r.body)
	}
	ans, err := protocol.VerifyAnswer(r.body, a.f.keyring(), nonce, a.pbxID)
	if err != nil {
		a.f.t.Fatalf("answer does not verify: %v", err)
	}
	return ans
}

// activate activates with key at portal time and expects an ok answer.
func (a *testAgent) activate(key string) *protocol.Answer {
	a.f.t.Helper()
	req := a.activateReq(key, a.f.portal.Now())
	ans := a.answer(a.post(protocol.PathActivate, a.sign(protocol.TypeActivate, req)), req.Nonce)
	if ans.Status != protocol.StatusOK {
		a.f.t.Fatalf("activation answered %q", ans.Status)
	}
	a.pbxID = ans.PBXID
	a.link = protocol.Link{}.Next(ans.Compact)
	a.keep(ans)
	return ans
}

// keep records the licence an answer carries, as an appliance would.
func (a *testAgent) keep(ans *protocol.Answer) {
	if ans.License == "" {
		return
	}
	d, err := license.ParseDocument(ans.License, a.f.keyring(), license.DocumentCheck{})
	if err != nil {
		a.f.t.Fatalf("licence does not verify: %v", err)
	}
	if a.held == nil {
		a.held = map[int64]string{}
	}
	a.held[d.Revision] = ans.License
}

func digestOrEmpty(compact string) string {
	if compact == "" {
		return ""
	}
	return protocol.Digest(compact)
}

// heartbeat sends a heartbeat holding revision at portal time.
func (a *testAgent) heartbeat(revision int64) (*protocol.Answer, response) {
	a.f.t.Helper()
	req := a.heartbeatReq(a.f.portal.Now(), revision)
	r := a.post(protocol.PathHeartbeat, a.sign(protocol.TypeHeartbeat, req))
	ans := a.answer(r, req.Nonce)
	if ans.Status == protocol.StatusOK || ans.Status == protocol.StatusRefused {
		a.link = a.link.Next(ans.Compact)
	}
	a.keep(ans)
	return ans, r
}

// licence verifies the licence an answer carries.
func (a *testAgent) licence(ans *protocol.Answer) *license.Document {
	a.f.t.Helper()
	d, err := license.ParseDocument(ans.License, a.f.keyring(), license.DocumentCheck{PBXID: a.pbxID})
	if err != nil {
		a.f.t.Fatalf("licence does not verify: %v", err)
	}
	return d
}

package agent

import (
	"context"
	"crypto/ed25519"
	"crypto/sha256"
	"errors"
	"flag"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/pbx-agent/pbx-agent/pkg/license"
	"github.com/pbx-agent/pbx-agent/pkg/protocol"
)

var updateSeeds = flag.Bool("update", false, "rewrite the committed fuzz seeds under testdata/fuzz")

var fuzzNow = time.Date(2026, 11, 27, 12, 0, 0, 0, time.UTC)

func fuzzPortal(t testing.TB) *license.Signer {
	seed := sha256.Sum256([]byte("fuzz portal"))
	s, err := license.NewSigner("portal-fuzz", ed25519.NewKeyFromSeed(seed[:]))
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// fuzzAnswer is what the fake portal of FuzzPortalExchange answers next.
type fuzzAnswer struct {
	mu         sync.Mutex
	status     int
	retryAfter string
	body       string
}

// FuzzPortalExchange feeds the agent's whole reading of a portal answer
// over HTTP (status, Retry-After, body) to the same request, nonce "n1":
// the outcome is an answer to that request, or an error of a kind the
// heartbeat loop knows how to retry, never a panic or a negative wait.
func FuzzPortalExchange(f *testing.F) {
	portal := fuzzPortal(f)
	kr, err := license.NewKeyring(map[string]ed25519.PublicKey{portal.KeyID(): portal.Public()})
	if err != nil {
		f.Fatal(err)
	}
	next := &fuzzAnswer{}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		next.mu.Lock()
		defer next.mu.Unlock()
		if next.retryAfter != "" {
			w.Header().Set("Retry-After", next.retryAfter)
		}
		w.WriteHeader(next.status)
		w.Write([]byte(next.body))
	}))
	f.Cleanup(srv.Close)
	pc, err := newPortalClient(PortalConfig{URL: srv.URL}, func() *license.Keyring { return kr }, "fuzz")
	if err != nil {
		f.Fatal(err)
	}
	ok, err := portal.Sign(protocol.TypeAnswer, protocol.Answer{Status: protocol.StatusOK, Time: fuzzNow, Nonce: "n1", PBXID: "pbx-1"})
	if err != nil {
		f.Fatal(err)
	}
	f.Add(200, "", ok)
	f.Fuzz(func(t *testing.T, status int, retryAfter, body string) {
		if status < 200 || status > 599 {
			status = 200 + (status%400+400)%400 // net/http writes only three-digit codes
		}
		next.mu.Lock()
		next.status, next.retryAfter, next.body = status, retryAfter, body
		next.mu.Unlock()
		ans, err := pc.exchange(context.Background(), protocol.PathHeartbeat, outgoing{body: "body", nonce: "n1", pbxID: "pbx-1"})
		var re *refusedError
		var le *license.Error
		switch {
		case err == nil:
			if status != http.StatusOK || ans.Nonce != "n1" {
				t.Fatalf("accepted an answer to %q with status %d", ans.Nonce, status)
			}
		case errors.As(err, &re):
			if re.status == http.StatusOK || re.retryAfter < 0 {
				t.Fatalf("refusal with status %d, wait %v", re.status, re.retryAfter)
			}
		case errors.As(err, &le):
			if status != http.StatusOK {
				t.Fatalf("status %d read as a bad answer: %v", status, err)
			}
		default:
			var ue *unreachableError
			if !errors.As(err, &ue) {
				t.Fatalf("error of unknown kind %T: %v", err, err)
			}
		}
	})
}

// TestWriteFuzzSeeds regenerates the committed seeds with -update.
func TestWriteFuzzSeeds(t *testing.T) {
	if !*updateSeeds {
		t.Skip("run with -update to rewrite testdata/fuzz")
	}
	portal := fuzzPortal(t)
	sign := func(a protocol.Answer) string {
		s, err := portal.Sign(protocol.TypeAnswer, a)
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
	ok := protocol.Answer{Status: protocol.StatusOK, Time: fuzzNow, Nonce: "n1", PBXID: "pbx-1", Interval: 60}
	gone := ok
	gone.Status, gone.Reason = protocol.StatusGone, protocol.GoneRebound
	seeds := map[string]struct {
		status          int
		retryAfter, bod string
	}{
		"ok":           {200, "", sign(ok)},
		"gone":         {200, "", sign(gone)},
		"truncated":    {200, "", sign(ok)[:40]},
		"rate-limited": {429, "30", `{"error": "injected fault: too many requests", "code": "rate_limited"}`},
		"retry-date":   {503, "Fri, 27 Nov 2026 12:05:00 GMT", `{"error": "down", "code": "unavailable"}`},
		"html-500":     {500, "", "<html>oops</html>"},
		"replay":       {409, "", `{"error": "this request was seen before", "code": "replay"}`},
		"empty-200":    {200, "", ""},
	}
	dir := filepath.Join("testdata", "fuzz", "FuzzPortalExchange")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	for name, s := range seeds {
		body := fmt.Sprintf("go test fuzz v1\nint(%s)\nstring(%q)\nstring(%q)\n", strconv.Itoa(s.status), s.retryAfter, s.bod)
		if err := os.WriteFile(filepath.Join(dir, name), []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

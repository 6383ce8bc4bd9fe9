// Package ownerproxy is, for tests, what an appliance's owner can put
// between pbx-agent and its portal: a proxy that holds the device key
// (root's file on the appliance), rewrites every request the agent signs
// and signs it again, and reads every answer. What it cannot do is sign an
// answer: the portal's key is not on the box.
package ownerproxy

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"strings"
	"testing"

	"github.com/pbx-agent/pbx-agent/pkg/license"
	"github.com/pbx-agent/pbx-agent/pkg/protocol"
)

// Options say what the proxy does.
type Options struct {
	Portal string // the portal's URL
	// DeviceKey returns the path of the appliance's device key, read at
	// each request (the agent makes it at activation).
	DeviceKey func() string
	// Rewrite changes the claims of a signed request to path, which is
	// then signed again with the device key. Activations pass untouched.
	Rewrite func(path string, claims map[string]any)
	// Answer, if set, sees the payload of every answer, unverified.
	Answer func(protocol.Answer)
}

// Start runs the proxy until the test ends (after the agent, whose
// long-poll holds a connection, when started before it).
func Start(t testing.TB, o Options) *httptest.Server {
	t.Helper()
	u, err := url.Parse(o.Portal)
	if err != nil {
		t.Fatal(err)
	}
	proxy := httputil.NewSingleHostReverseProxy(u)
	proxy.ModifyResponse = func(resp *http.Response) error {
		if o.Answer == nil {
			return nil
		}
		b, err := io.ReadAll(resp.Body)
		if err != nil {
			return err
		}
		resp.Body = io.NopCloser(bytes.NewReader(b))
		var ans protocol.Answer
		if payload, ok := payloadOf(string(b)); ok && json.Unmarshal(payload, &ans) == nil {
			o.Answer(ans)
		}
		return nil
	}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		if r.URL.Path != protocol.PathActivate {
			body = resign(body, o, r.URL.Path)
		}
		r.Body, r.ContentLength = io.NopCloser(bytes.NewReader(body)), int64(len(body))
		proxy.ServeHTTP(w, r)
	}))
	t.Cleanup(srv.Close)
	return srv
}

// resign rewrites and signs again a request; one it cannot read or sign
// passes as it came.
func resign(body []byte, o Options, path string) []byte {
	dev, err := license.LoadSigner(o.DeviceKey())
	if err != nil {
		return body
	}
	_, typ, err := license.PeekHeader(string(body))
	if err != nil {
		return body
	}
	payload, ok := payloadOf(string(body))
	if ok && typ == protocol.TypeCompactHeartbeat {
		return resignCompact(body, payload, dev, o, path)
	}
	var claims map[string]any
	if !ok || json.Unmarshal(payload, &claims) != nil {
		return body
	}
	if o.Rewrite != nil {
		o.Rewrite(path, claims)
	}
	signed, err := dev.Sign(typ, claims)
	if err != nil {
		return body
	}
	return []byte(signed)
}

func payloadOf(compact string) ([]byte, bool) {
	parts := strings.Split(compact, ".")
	if len(parts) != 3 {
		return nil, false
	}
	b, err := base64.RawURLEncoding.DecodeString(parts[1])
	return b, err == nil
}

// resignCompact rewrites a compact heartbeat through the claims of a full
// one (revision, digest, fetch) and signs it again.
func resignCompact(body, payload []byte, dev *license.Signer, o Options, path string) []byte {
	h, err := protocol.ParseCompactHeartbeat(payload)
	if err != nil {
		return body
	}
	claims := map[string]any{"revision": h.Held.Revision, "digest": h.Held.Digest}
	if h.Report.Fetch {
		claims["fetch"] = true
	}
	if o.Rewrite != nil {
		o.Rewrite(path, claims)
	}
	switch rev := claims["revision"].(type) {
	case int:
		h.Held.Revision = int64(rev)
	case int64:
		h.Held.Revision = rev
	}
	h.Held.Digest, _ = claims["digest"].(string)
	h.Report.Fetch, _ = claims["fetch"].(bool)
	b, err := h.MarshalBinary()
	if err != nil {
		return body
	}
	signed, err := dev.SignRaw(protocol.TypeCompactHeartbeat, b)
	if err != nil {
		return body
	}
	return []byte(signed)
}

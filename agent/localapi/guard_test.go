package localapi_test

import (
	"bufio"
	"fmt"
	"maps"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	. "github.com/pbx-agent/pbx-agent/agent/localapi"
	"github.com/pbx-agent/pbx-agent/pkg/apitype"
)

// TestGuardedRoutes goes through the route table: every route that writes
// or reserves refuses a request from a web page (Origin), one addressed to
// a foreign Host, and any over TCP; every POST route refuses a 10 MB body
// unread. The backend never hears of them. A route added later is checked
// too.
func TestGuardedRoutes(t *testing.T) {
	h := newHarness(t, nil)
	perms := RoutePerms()
	for _, key := range slices.Sorted(maps.Keys(perms)) {
		method, path, _ := strings.Cut(key, " ")
		guarded := perms[key] == PermWrite || perms[key] == PermAdmit
		body := ""
		if method == "POST" {
			body = `{}`
		}
		if guarded {
			for _, tt := range []struct {
				name string
				req  request
				msg  string
			}{
				{"origin", request{method: method, path: path, body: body, origin: "http://127.0.0.1:9731"}, "Origin"},
				{"origin null", request{method: method, path: path, body: body, origin: "null"}, "Origin"},
				{"foreign host", request{method: method, path: path, body: body, host: "pbx.example.com"}, "Host"},
				{"over tcp", request{via: "tcp", method: method, path: path, body: body}, "unix socket"},
			} {
				t.Run(key+"/"+tt.name, func(t *testing.T) {
					a := h.do(t, tt.req)
					if eb := a.errorBody(t); a.status != 403 || eb.Code != apitype.CodeForbidden || !strings.Contains(eb.Error, tt.msg) {
						t.Errorf("answer %d %+v, want 403 forbidden naming %s", a.status, eb, tt.msg)
					}
				})
			}
		}
		if method == "POST" {
			t.Run(key+"/10 MB body", func(t *testing.T) {
				c := h.dial(t, "unix")
				c.SetDeadline(time.Now().Add(10 * time.Second))
				// The headers alone: the answer must come without the body.
				fmt.Fprintf(c, "POST %s HTTP/1.1\r\nHost: local\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n", path, 10<<20)
				resp, err := http.ReadResponse(bufio.NewReader(c), nil)
				if err != nil {
					t.Fatal(err)
				}
				resp.Body.Close()
				if resp.StatusCode != 413 {
					t.Errorf("answer %d, want 413", resp.StatusCode)
				}
			})
		}
	}
	keys, refreshes, admissions := h.backend.Activations(), h.backend.Refreshes(), h.backend.Admissions()
	if len(keys)+refreshes+len(admissions) != 0 {
		t.Errorf("the backend saw refused requests: %d activations, %d refreshes, %d admissions",
			len(keys), refreshes, len(admissions))
	}
}

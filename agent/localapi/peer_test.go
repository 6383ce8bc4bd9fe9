package localapi_test

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"io"
	"maps"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"

	. "github.com/pbx-agent/pbx-agent/agent/localapi"
	"github.com/pbx-agent/pbx-agent/agent/localapi/localapitest"
	"github.com/pbx-agent/pbx-agent/pkg/apitype"
)

// helperEnv names the socket a TestHelperPeer child talks to.
const helperEnv = "PBX_LOCALAPI_TEST_PEER_SOCKET"

// peerResult is one request made by the child, printed on its stdout.
type peerResult struct {
	Req    string `json:"req"`
	Status int    `json:"status"`
	Code   string `json:"code,omitempty"`
	Error  string `json:"error,omitempty"`
}

// TestHelperPeer is not a test: it is the child process of
// TestPeerPermissions, running under another uid, that connects to the
// socket (credentials are taken at connect time) and reports its answers.
func TestHelperPeer(t *testing.T) {
	sock := os.Getenv(helperEnv)
	if sock == "" {
		t.Skip("helper process for TestPeerPermissions")
	}
	c := unixClient(sock)
	// Every route: a route added later is checked too.
	for _, rq := range slices.Sorted(maps.Keys(RoutePerms())) {
		method, path, _ := strings.Cut(rq, " ")
		var body io.Reader
		switch {
		case path == "/v1/admission":
			body = strings.NewReader(`{"profile": "uc-premium"}`)
		case path == "/v1/activate":
			body = strings.NewReader(`{"key": "k"}`)
		case method == "POST":
			body = strings.NewReader(`{}`)
		}
		req, _ := newJSONRequest(method, "http://local"+path, body)
		res := peerResult{Req: rq}
		resp, err := c.Do(req)
		if err != nil {
			res.Error = err.Error()
		} else {
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			res.Status = resp.StatusCode
			var eb apitype.ErrorBody
			if json.Unmarshal(b, &eb) == nil {
				res.Code, res.Error = eb.Code, eb.Error
			}
		}
		line, _ := json.Marshal(res)
		os.Stdout.Write(append([]byte("PEER "), append(line, '\n')...))
	}
}

// TestPeerPermissions connects as uid 65534 (nobody), which is neither root
// nor the daemon's user, with several group memberships, and checks what
// the server lets it do.
func TestPeerPermissions(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root: the client runs as another uid (nobody) to be a peer that is neither root nor the daemon's user")
	}
	users, err := user.LookupGroup("users")
	if err != nil {
		t.Skip("needs the group users for a supplementary group")
	}
	usersGID, _ := strconv.ParseUint(users.Gid, 10, 32)

	// nobody must reach the socket and run the test binary: a folder it can
	// traverse, holding both.
	dir := t.TempDir()
	for _, d := range []string{filepath.Dir(dir), dir} {
		if err := os.Chmod(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	bin := filepath.Join(dir, "localapi.test")
	copyFile(t, self, bin)

	const missing = "pbx-agent-test-missing"
	tests := []struct {
		name   string
		cfg    Config
		groups []uint32 // the child's supplementary groups
		// refused says, per permission, whether every route asking it
		// refuses the child.
		refused map[Perm]bool
		want    map[string]int
		msg     map[string]string // part of the error message, per request
	}{
		{name: "in no group", cfg: Config{ReadGroup: missing}, refused: map[Perm]bool{PermRead: true, PermWrite: true, PermAdmit: true, PermReadSocket: true},
			want: map[string]int{"GET /healthz": 200, "GET /v1/status": 403, "POST /v1/activate": 403, "POST /v1/refresh": 403, "POST /v1/admission": 403},
			msg: map[string]string{"GET /v1/status": "reads need root or group " + missing, "POST /v1/activate": "writes need root",
				"POST /v1/admission": "may not ask for admission: join the group " + missing}},
		{name: "read group as primary group", cfg: Config{ReadGroup: "nogroup"}, refused: map[Perm]bool{PermWrite: true},
			want: map[string]int{"GET /healthz": 200, "GET /v1/status": 200, "POST /v1/activate": 403, "POST /v1/refresh": 403, "POST /v1/admission": 200}},
		{name: "read group as supplementary group", cfg: Config{ReadGroup: "users", WriteGroups: []string{"root"}}, groups: []uint32{uint32(usersGID)},
			refused: map[Perm]bool{PermWrite: true},
			want:    map[string]int{"GET /healthz": 200, "GET /v1/status": 200, "POST /v1/activate": 403, "POST /v1/refresh": 403, "POST /v1/admission": 200},
			msg:     map[string]string{"POST /v1/activate": "membership in group root"}},
		{name: "write group as supplementary group", cfg: Config{ReadGroup: missing, WriteGroups: []string{"users"}}, groups: []uint32{uint32(usersGID)},
			refused: map[Perm]bool{},
			want:    map[string]int{"GET /healthz": 200, "GET /v1/status": 200, "POST /v1/activate": 200, "POST /v1/refresh": 200, "POST /v1/admission": 200}},
	}
	for i, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			fb := new(localapitest.Backend)
			fb.SetStatus(sampleStatus())
			fb.SetAdmission(apitype.AdmissionAnswer{Allowed: true, Remaining: ptr(2)})
			tt.cfg.Backend, tt.cfg.Logger = fb, discardLogger()
			srv, err := New(tt.cfg)
			if err != nil {
				t.Fatal(err)
			}
			ctx, cancel := context.WithCancel(context.Background())
			sock := filepath.Join(dir, "s"+strconv.Itoa(i)+".sock")
			// 0666 so that the connect itself succeeds and the server's
			// check is what decides.
			ln, err := srv.ListenUnix(ctx, sock, "", 0o666)
			if err != nil {
				t.Fatal(err)
			}
			done := make(chan error, 1)
			go func() { done <- srv.Serve(ctx, ln, Unix) }()
			defer func() {
				cancel()
				if err := <-done; err != nil {
					t.Error(err)
				}
			}()

			cmd := exec.Command(bin, "-test.run=^TestHelperPeer$")
			cmd.Env = []string{helperEnv + "=" + sock}
			cmd.Dir = dir
			cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: 65534, Gid: 65534, Groups: tt.groups}}
			var stderr bytes.Buffer
			cmd.Stderr = &stderr
			out, err := cmd.Output()
			if err != nil {
				t.Fatalf("child: %v\n%s%s", err, out, stderr.Bytes())
			}
			got := map[string]peerResult{}
			sc := bufio.NewScanner(bytes.NewReader(out))
			for sc.Scan() {
				if line, ok := bytes.CutPrefix(sc.Bytes(), []byte("PEER ")); ok {
					var r peerResult
					if err := json.Unmarshal(line, &r); err != nil {
						t.Fatal(err)
					}
					got[r.Req] = r
				}
			}
			// Every route the table has, by its permission: refused or not.
			for req, p := range RoutePerms() {
				r, ok := got[req]
				if !ok {
					t.Errorf("%s: the child did not ask", req)
					continue
				}
				if refused := r.Status == 403; refused != tt.refused[p] {
					t.Errorf("%s (%s) as nobody = %d (%s), want refused %v", req, p, r.Status, r.Error, tt.refused[p])
				}
			}
			for req, want := range tt.want {
				r := got[req]
				if r.Status != want {
					t.Errorf("%s as nobody = %d (%s), want %d", req, r.Status, r.Error, want)
				}
				if want == 403 && r.Code != apitype.CodeForbidden {
					t.Errorf("%s: code %q, want forbidden", req, r.Code)
				}
				if m := tt.msg[req]; m != "" && !strings.Contains(r.Error, m) {
					t.Errorf("%s: message %q lacks %q", req, r.Error, m)
				}
				if r.Status == 403 && !strings.Contains(r.Error, "uid 65534") {
					t.Errorf("%s: message %q does not name the uid", req, r.Error)
				}
			}
			// The backend bounds a peer's reservations by the uid it is told:
			// the peer's own, from SO_PEERCRED, whatever its groups.
			for _, adm := range fb.Admissions() {
				if adm.PeerUID == nil || *adm.PeerUID != 65534 {
					t.Errorf("admission asked with peer uid %v, want 65534", adm.PeerUID)
				}
			}
			keys, refreshes := fb.Activations(), fb.Refreshes()
			if wantWrites := tt.want["POST /v1/activate"] == 200; (len(keys) > 0 || refreshes > 0) != wantWrites {
				t.Errorf("backend saw %d activations and %d refreshes", len(keys), refreshes)
			}
		})
	}
}

func copyFile(t *testing.T, from, to string) {
	t.Helper()
	b, err := os.ReadFile(from)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(to, b, 0o755); err != nil {
		t.Fatal(err)
	}
}

package localapi

import (
	"net/http"
	"strings"
	"testing"
)

// nilBackend is a Backend for the tests in this package, which never reach
// it (a call panics); the tests that need a backend use localapitest.
type nilBackend struct{ Backend }

func TestBrowserGuard(t *testing.T) {
	unixHosts := []string{"", "localhost", "local"}
	tcpHosts := []string{"127.0.0.1:9731", "localhost:9731", "[::1]:9731"}
	tests := []struct {
		name   string
		hosts  []string
		host   string
		origin bool
		ok     bool
	}{
		{"unix empty host", unixHosts, "", false, true},
		{"unix localhost", unixHosts, "localhost", false, true},
		{"unix local upper case", unixHosts, "LOCAL", false, true},
		{"unix loopback address", unixHosts, "127.0.0.1", false, false},
		{"unix foreign", unixHosts, "evil.example", false, false},
		{"unix origin", unixHosts, "local", true, false},
		{"tcp ipv4", tcpHosts, "127.0.0.1:9731", false, true},
		{"tcp localhost", tcpHosts, "localhost:9731", false, true},
		{"tcp ipv6", tcpHosts, "[::1]:9731", false, true},
		{"tcp other port", tcpHosts, "127.0.0.1:9732", false, false},
		{"tcp no port", tcpHosts, "127.0.0.1", false, false},
		{"tcp rebound name", tcpHosts, "evil.example:9731", false, false},
		{"tcp empty", tcpHosts, "", false, false},
		{"tcp origin", tcpHosts, "127.0.0.1:9731", true, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r, _ := http.NewRequest("POST", "http://x/v1/activate", nil)
			r.Host = tt.host
			if tt.origin {
				r.Header.Set("Origin", "http://127.0.0.1:9731")
			}
			err := browserGuard(r, &connInfo{hosts: tt.hosts})
			if (err == nil) != tt.ok {
				t.Errorf("browserGuard = %v, want ok %v", err, tt.ok)
			}
		})
	}
}

func TestAccessOf(t *testing.T) {
	s := &Server{selfUID: 1000, writeGIDs: map[uint32]bool{50: true}, readGID: 60, hasReadGID: true}
	noRead := &Server{selfUID: 1000, writeGIDs: map[uint32]bool{}}
	tests := []struct {
		name  string
		s     *Server
		creds peerCreds
		want  access
	}{
		{"root", s, peerCreds{uid: 0, gid: 0}, accessWrite},
		{"daemon's own user", s, peerCreds{uid: 1000, gid: 1000}, accessWrite},
		{"write group primary", s, peerCreds{uid: 2000, gid: 50}, accessWrite},
		{"write group supplementary", s, peerCreds{uid: 2000, gid: 2000, groups: []uint32{7, 50}}, accessWrite},
		{"read group primary", s, peerCreds{uid: 2000, gid: 60}, accessRead},
		{"read group supplementary", s, peerCreds{uid: 2000, gid: 2000, groups: []uint32{60}}, accessRead},
		{"stranger", s, peerCreds{uid: 2000, gid: 2000, groups: []uint32{7}}, accessNone},
		{"no read group, gid 0 is not it", noRead, peerCreds{uid: 2000, gid: 0}, accessNone},
		{"no read group, root still writes", noRead, peerCreds{uid: 0, gid: 0}, accessWrite},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := tt.s.accessOf(&tt.creds); got != tt.want {
				t.Errorf("accessOf = %v, want %v", got, tt.want)
			}
		})
	}
}

func TestNew(t *testing.T) {
	tests := []struct {
		name    string
		cfg     Config
		wantErr string
	}{
		{name: "defaults", cfg: Config{Backend: nilBackend{}}},
		{name: "missing read group tolerated", cfg: Config{Backend: nilBackend{}, ReadGroup: "pbx-agent-test-missing"}},
		{name: "unknown write group", cfg: Config{Backend: nilBackend{}, WriteGroups: []string{"root", "pbx-admins-test-missing"}},
			wantErr: `api.write_groups: group "pbx-admins-test-missing" does not exist`},
		{name: "no backend", cfg: Config{}, wantErr: "no backend"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s, err := New(tt.cfg)
			if tt.wantErr == "" {
				if err != nil || s == nil {
					t.Fatalf("New = %v", err)
				}
				if tt.cfg.ReadGroup == "pbx-agent-test-missing" && s.hasReadGID {
					t.Error("a missing read group resolved")
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Errorf("New error = %v, want %q", err, tt.wantErr)
			}
		})
	}
}

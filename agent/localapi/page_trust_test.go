package localapi

import (
	"context"
	"io"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/pbx-agent/pbx-agent/pkg/apitype"
)

func TestStatusPageShowsWhereTrustComesFrom(t *testing.T) {
	tests := []struct {
		name        string
		trust       *apitype.TrustStatus
		want, avoid []string
	}{
		{
			name:  "development build",
			trust: &apitype.TrustStatus{Roots: "configured", Keys: []apitype.TrustedKeyStatus{{KeyID: "sim-1", Role: "configured"}}},
			want:  []string{`<strong class="error">development build</strong>`, "<code>sim-1</code>"},
			avoid: []string{"roots embedded"},
		},
		{
			name: "release build",
			trust: &apitype.TrustStatus{Roots: "embedded", Keys: []apitype.TrustedKeyStatus{
				{KeyID: "portal-2026", Role: "announced", AnnouncedBy: "root-1", Revoked: true},
				{KeyID: "root-1", Role: "root"},
			}, Ignored: []string{"a", "b"}},
			want:  []string{"roots embedded in this build", "<code>portal-2026</code> (revoked), <code>root-1</code>", "2 keyring entries not trusted"},
			avoid: []string{"development build"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s, err := New(Config{Backend: pageBackend{st: apitype.Status{State: "active", Trust: tt.trust}}})
			if err != nil {
				t.Fatal(err)
			}
			req := httptest.NewRequest("GET", "http://127.0.0.1:9731/?part=main", nil) // reads on TCP must name loopback
			req = req.WithContext(context.WithValue(req.Context(), connKey{}, &connInfo{kind: TCP, access: accessRead}))
			rec := httptest.NewRecorder()
			s.ServeHTTP(rec, req)
			body, _ := io.ReadAll(rec.Result().Body)
			for _, want := range tt.want {
				if !strings.Contains(string(body), want) {
					t.Errorf("page lacks %q", want)
				}
			}
			for _, bad := range tt.avoid {
				if strings.Contains(string(body), bad) {
					t.Errorf("page shows %q", bad)
				}
			}
		})
	}
}

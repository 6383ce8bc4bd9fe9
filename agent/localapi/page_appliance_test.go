package localapi

import (
	"context"
	"io"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/pbx-agent/pbx-agent/pkg/apitype"
)

func TestStatusPageShowsApplianceAndWMS(t *testing.T) {
	tests := []struct {
		name        string
		st          apitype.Status
		want, avoid []string
	}{
		{
			name: "behind, serial from DMI",
			st: apitype.Status{WMS: apitype.WMSStatus{Version: "7.02.20250609.3", Latest: "7.03.20250901.2", Behind: true},
				Appliance: apitype.ApplianceStatus{Serial: "SN-<1>", SerialSource: "dmi"}},
			want:  []string{"7.03.20250901.2 <strong>this PBX is behind</strong>", "<code>SN-&lt;1&gt;</code>", "(from dmi)"},
			avoid: []string{"up to date", "SN-<1>"},
		},
		{
			name: "unknown, saying why",
			st: apitype.Status{WMS: apitype.WMSStatus{VersionUnknown: "WMS upgrades are not set up", LatestUnknown: "apt has no package list"},
				Appliance: apitype.ApplianceStatus{SerialSource: "unknown (set identity.serial)"}},
			want:  []string{"unknown <span class=\"rel\">(WMS upgrades are not set up)</span>", "unknown <span class=\"rel\">(apt has no package list)</span>", "unknown (set identity.serial)"},
			avoid: []string{"behind"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tt.st.State = "active"
			s, err := New(Config{Backend: pageBackend{st: tt.st}})
			if err != nil {
				t.Fatal(err)
			}
			req := httptest.NewRequest("GET", "http://127.0.0.1:9731/?part=main", nil)
			req = req.WithContext(context.WithValue(req.Context(), connKey{}, &connInfo{kind: TCP, access: accessRead}))
			rec := httptest.NewRecorder()
			s.ServeHTTP(rec, req)
			body, _ := io.ReadAll(rec.Result().Body)
			for _, want := range tt.want {
				if !strings.Contains(string(body), want) {
					t.Errorf("page lacks %q", want)
				}
			}
			for _, avoid := range tt.avoid {
				if strings.Contains(string(body), avoid) {
					t.Errorf("page shows %q", avoid)
				}
			}
		})
	}
}

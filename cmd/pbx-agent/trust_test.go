package main

import (
	"bytes"
	"strings"
	"testing"

	"github.com/pbx-agent/pbx-agent/pkg/apitype"
)

func TestStatusShowsWhereTrustComesFrom(t *testing.T) {
	tests := []struct {
		name  string
		trust *apitype.TrustStatus
		want  []string
	}{
		{
			name:  "development build",
			trust: &apitype.TrustStatus{Roots: "configured", Keys: []apitype.TrustedKeyStatus{{KeyID: "sim-1", Role: "configured"}}},
			want:  []string{"Portal keys         DEVELOPMENT BUILD: roots from portal.keyring (a release\n", "trusted: sim-1\n"},
		},
		{
			name: "release build",
			trust: &apitype.TrustStatus{Roots: "embedded", Keys: []apitype.TrustedKeyStatus{
				{KeyID: "portal-2026", Role: "announced", AnnouncedBy: "root-1"},
				{KeyID: "portal-old", Role: "announced", AnnouncedBy: "root-1", Revoked: true},
				{KeyID: "root-1", Role: "root"},
			}, Ignored: []string{"/etc/pbx-agent/portal-keys/mine.pem: ignored"}},
			want: []string{"Portal keys         roots embedded in this build; trusted: portal-2026\n",
				"                    (announced by root-1), portal-old (revoked), root-1 (root);\n",
				"                    1 keyring entry not trusted (status --json: trust.ignored)\n"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			st := activeStatus()
			st.Trust = tt.trust
			var b bytes.Buffer
			printStatus(&b, st, false)
			for _, want := range tt.want {
				if !strings.Contains(b.String(), want) {
					t.Errorf("status lacks %q:\n%s", want, b.String())
				}
			}
		})
	}
	var b bytes.Buffer
	printStatus(&b, activeStatus(), false)
	if strings.Contains(b.String(), "Portal keys") {
		t.Error("a daemon that reports no trust got a Portal keys line")
	}
}

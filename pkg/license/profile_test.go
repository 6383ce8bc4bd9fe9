package license

import "testing"

func TestCovers(t *testing.T) {
	tests := []struct {
		p, q Profile
		want bool
	}{
		{UCPremium, UCBusiness, true},
		{UCPremium, PBXBasic, true},
		{UCEssential, PBXBasic, true},
		{UCBusiness, UCPremium, false},
		{PBXBasic, UCEssential, false},
		{UCWizyconf, UCWizyconf, true},
		{UCPremium, UCWizyconf, false},
		{UCWizyconf, PBXBasic, false},
		{PBXService, PBXBasic, false},
		{UCPremium, PBXService, false},
		{"uc-gold", PBXBasic, false},
	}
	for _, tt := range tests {
		if got := tt.p.Covers(tt.q); got != tt.want {
			t.Errorf("%s.Covers(%s) = %v, want %v", tt.p, tt.q, got, tt.want)
		}
	}
}

func TestParseProfile(t *testing.T) {
	for in, want := range map[string]Profile{"uc-premium": UCPremium, "UC-Premium": UCPremium, " PBX-BASIC ": PBXBasic, "pbx-service": PBXService} {
		got, err := ParseProfile(in)
		if err != nil || got != want {
			t.Errorf("ParseProfile(%q) = %q, %v; want %q", in, got, err, want)
		}
	}
	if _, err := ParseProfile("uc-gold"); err == nil {
		t.Error("ParseProfile accepted an unknown profile")
	}
}

func TestCountsString(t *testing.T) {
	if got := (Counts{PBXService: 1, UCPremium: 10}).String(); got != "uc-premium=10 pbx-service=1" {
		t.Errorf("String = %q", got)
	}
	if got := (Counts{UCPremium: 0}).String(); got != "none" {
		t.Errorf("String of zero counts = %q", got)
	}
}

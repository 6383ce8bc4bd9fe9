package license

import (
	"errors"
	"testing"
	"time"
)

func TestParseDocument(t *testing.T) {
	portal := testSigner(t, "portal-1")
	kr := testKeyring(t, portal)
	at := func(days int) *time.Time {
		v := testNow.AddDate(0, 0, days)
		return &v
	}

	tests := []struct {
		name    string
		edit    func(d *Document)
		typ     string
		check   DocumentCheck
		wantErr error
	}{
		{name: "valid"},
		{name: "valid, bound to this PBX", check: DocumentCheck{PBXID: "pbx-42"}},
		{name: "valid lifetime without a term end", edit: func(d *Document) { d.Term, d.TermEnd = Lifetime, time.Time{} }},
		{name: "valid countdown", edit: func(d *Document) {
			d.Counts = Counts{}
			d.ZeroSince, d.StopAt, d.DeleteAt = at(0), at(5), at(14)
		}},
		{name: "valid suspension", edit: func(d *Document) { d.Suspended, d.SuspendedSince = true, at(-1) }},
		{name: "suspended_since without suspended", edit: func(d *Document) { d.SuspendedSince = at(-1) }, wantErr: ErrInvalid},
		{name: "valid soft overage", edit: func(d *Document) { d.SoftOverage = &SoftOverage{Factor: 1.1, Until: testNow.Add(72 * time.Hour)} }},
		{name: "another PBX", check: DocumentCheck{PBXID: "pbx-43"}, wantErr: ErrInvalid},
		{name: "a key is not a licence", typ: TypeKey, wantErr: ErrWrongType},
		{name: "revision zero", edit: func(d *Document) { d.Revision = 0 }, wantErr: ErrInvalid},
		{name: "monthly without term end", edit: func(d *Document) { d.TermEnd = time.Time{} }, wantErr: ErrInvalid},
		{name: "negative count", edit: func(d *Document) { d.Counts[UCBusiness] = -1 }, wantErr: ErrInvalid},
		{name: "negative grace", edit: func(d *Document) { d.OfflineGrace = -1 }, wantErr: ErrInvalid},
		{name: "half a countdown", edit: func(d *Document) { d.ZeroSince, d.StopAt = at(0), at(5) }, wantErr: ErrInvalid},
		{name: "countdown backwards", edit: func(d *Document) { d.ZeroSince, d.StopAt, d.DeleteAt = at(0), at(14), at(5) }, wantErr: ErrInvalid},
		{name: "soft overage without end", edit: func(d *Document) { d.SoftOverage = &SoftOverage{Factor: 1.1} }, wantErr: ErrInvalid},
		{name: "soft overage of 3x", edit: func(d *Document) { d.SoftOverage = &SoftOverage{Factor: 3, Until: testNow} }, wantErr: ErrInvalid},
		{name: "bad revoked id", edit: func(d *Document) { d.RevokedKeyIDs = []string{"../x"} }, wantErr: ErrInvalid},
		{name: "newer format", edit: func(d *Document) { d.Version = DocumentVersion + 1 }, wantErr: ErrInvalid},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d := testDocument()
			if tt.edit != nil {
				tt.edit(&d)
			}
			typ := TypeLicense
			if tt.typ != "" {
				typ = tt.typ
			}
			got, err := ParseDocument(mustSign(t, portal, typ, d), kr, tt.check)
			if tt.wantErr != nil {
				if !errors.Is(err, tt.wantErr) {
					t.Fatalf("ParseDocument error = %v, want %v", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatalf("ParseDocument: %v", err)
			}
			if got.Revision != d.Revision || got.Counts.String() != d.Counts.String() || got.SignerKeyID != "portal-1" {
				t.Errorf("ParseDocument = %+v, want %+v signed by portal-1", got, d)
			}
		})
	}
}

func TestDocumentDefaults(t *testing.T) {
	d := testDocument()
	if d.OfflineGracePeriod() != 30*24*time.Hour || d.LapseGracePeriod() != 14*24*time.Hour || d.HeartbeatTolerancePeriod() != DefaultHeartbeatTolerance {
		t.Errorf("defaults = %v, %v, %v", d.OfflineGracePeriod(), d.LapseGracePeriod(), d.HeartbeatTolerancePeriod())
	}
	d.OfflineGrace, d.LapseGrace, d.HeartbeatTolerance = 3600, 60, 90
	if d.OfflineGracePeriod() != time.Hour || d.LapseGracePeriod() != time.Minute || d.HeartbeatTolerancePeriod() != 90*time.Second {
		t.Errorf("portal-set periods = %v, %v, %v", d.OfflineGracePeriod(), d.LapseGracePeriod(), d.HeartbeatTolerancePeriod())
	}
}

func TestDocumentRoundTripKeepsEveryField(t *testing.T) {
	portal := testSigner(t, "portal-1")
	zero, stop, del := testNow, testNow.AddDate(0, 0, 5), testNow.AddDate(0, 0, 14)
	d := testDocument()
	d.Counts = Counts{}
	d.HigherCoversLower = true
	d.SoftOverage = &SoftOverage{Factor: 1.1, Until: testNow.Add(72 * time.Hour)}
	d.OfflineGrace, d.HeartbeatTolerance, d.LapseGrace = 7*86400, 300, 86400
	d.Suspended, d.SuspendedSince = true, &zero
	d.ZeroSince, d.StopAt, d.DeleteAt = &zero, &stop, &del
	d.RevokedKeyIDs = []string{"portal-0"}

	got, err := ParseDocument(mustSign(t, portal, TypeLicense, d), testKeyring(t, portal), DocumentCheck{})
	if err != nil {
		t.Fatal(err)
	}
	got.SignerKeyID = ""
	if !got.HigherCoversLower || *got.SoftOverage != *d.SoftOverage || got.OfflineGrace != d.OfflineGrace ||
		got.HeartbeatTolerance != d.HeartbeatTolerance || got.LapseGrace != d.LapseGrace || !got.Suspended ||
		!got.SuspendedSince.Equal(zero) ||
		!got.ZeroSince.Equal(zero) || !got.StopAt.Equal(stop) || !got.DeleteAt.Equal(del) ||
		len(got.RevokedKeyIDs) != 1 || got.RevokedKeyIDs[0] != "portal-0" || !got.TermEnd.Equal(d.TermEnd) {
		t.Errorf("round trip lost a field:\n got %+v\nwant %+v", got, d)
	}
}

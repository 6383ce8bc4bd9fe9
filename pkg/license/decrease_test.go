package license

import (
	"reflect"
	"testing"
	"time"
)

func TestDecreasesNoteRevision(t *testing.T) {
	day1 := time.Date(2027, 2, 3, 14, 0, 0, 0, time.FixedZone("CET", 3600))
	day2 := day1.AddDate(0, 0, 1)
	rev := func(n int64, c Counts) *Document { return &Document{Revision: n, Counts: c} }
	tests := []struct {
		name       string
		held       Decreases
		prev, next *Document
		at         time.Time
		want       Decreases
	}{
		{name: "an increase records nothing", prev: rev(1, Counts{UCPremium: 10}), next: rev(2, Counts{UCPremium: 12}), at: day1},
		{name: "a decrease is recorded, in UTC", prev: rev(1, Counts{UCPremium: 10, PBXBasic: 2}), next: rev(2, Counts{UCPremium: 5, PBXBasic: 2}), at: day1,
			want: Decreases{UCPremium: {At: day1.UTC(), From: 10, To: 5, Revision: 2}}},
		{name: "dated by the revision's issue time", prev: rev(1, Counts{UCPremium: 10}),
			next: &Document{Revision: 2, IssuedAt: day1.Add(-50 * time.Hour), Counts: Counts{UCPremium: 5}}, at: day1,
			want: Decreases{UCPremium: {At: day1.Add(-50 * time.Hour).UTC(), From: 10, To: 5, Revision: 2}}},
		{name: "to zero is a decrease", prev: rev(1, Counts{PBXBasic: 2}), next: rev(2, Counts{}), at: day1,
			want: Decreases{PBXBasic: {At: day1.UTC(), From: 2, To: 0, Revision: 2}}},
		{name: "a later decrease replaces the earlier", held: Decreases{UCPremium: {At: day1.UTC(), From: 10, To: 8, Revision: 2}},
			prev: rev(2, Counts{UCPremium: 8}), next: rev(3, Counts{UCPremium: 5}), at: day2,
			want: Decreases{UCPremium: {At: day2.UTC(), From: 8, To: 5, Revision: 3}}},
		{name: "a partial raise keeps the decrease", held: Decreases{UCPremium: {At: day1.UTC(), From: 10, To: 5, Revision: 2}},
			prev: rev(2, Counts{UCPremium: 5}), next: rev(3, Counts{UCPremium: 8}), at: day2,
			want: Decreases{UCPremium: {At: day1.UTC(), From: 10, To: 5, Revision: 2}}},
		{name: "a raise back undoes it", held: Decreases{UCPremium: {At: day1.UTC(), From: 10, To: 5, Revision: 2}},
			prev: rev(2, Counts{UCPremium: 5}), next: rev(3, Counts{UCPremium: 10}), at: day2},
		{name: "other profiles keep theirs", held: Decreases{PBXBasic: {At: day1.UTC(), From: 4, To: 2, Revision: 2}},
			prev: rev(2, Counts{UCPremium: 5, PBXBasic: 2}), next: rev(3, Counts{UCPremium: 9, PBXBasic: 2}), at: day2,
			want: Decreases{PBXBasic: {At: day1.UTC(), From: 4, To: 2, Revision: 2}}},
		{name: "no previous licence: nothing to compare", next: rev(1, Counts{UCPremium: 5}), at: day1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			before := reflect.ValueOf(tt.held).Len()
			got := tt.held.NoteRevision(tt.prev, tt.next, tt.at)
			if !reflect.DeepEqual(got, tt.want) {
				t.Errorf("NoteRevision = %+v; want %+v", got, tt.want)
			}
			if reflect.ValueOf(tt.held).Len() != before {
				t.Errorf("NoteRevision changed its receiver: %+v", tt.held)
			}
		})
	}
}

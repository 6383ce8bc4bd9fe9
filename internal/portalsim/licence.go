package portalsim

import (
	"fmt"
	"maps"
	"reflect"
	"time"

	"github.com/pbx-agent/pbx-agent/pkg/license"
)

// termEnd is the end of the billing term that contains from, in UTC: for a
// monthly term the last second of from's month, for a yearly term the last
// second of the same month a year later, and none for a lifetime term.
//
// Auto-renewal (a later issue) moves a PBX to the next term by calling this
// again with the first instant after the old end.
func termEnd(term license.Term, from time.Time) time.Time {
	t := from.UTC()
	switch term {
	case license.Monthly:
		return time.Date(t.Year(), t.Month()+1, 1, 0, 0, 0, 0, time.UTC).Add(-time.Second)
	case license.Yearly:
		return time.Date(t.Year()+1, t.Month()+1, 1, 0, 0, 0, 0, time.UTC).Add(-time.Second)
	}
	return time.Time{}
}

// newLicense is revision 1 of a new PBX's licence.
func newLicense(pbx license.PBX, term license.Term, counts license.Counts, now time.Time) license.Document {
	return license.Document{
		Version:  license.DocumentVersion,
		PBX:      pbx,
		Revision: 1,
		IssuedAt: now.Truncate(time.Second),
		Term:     term,
		TermEnd:  termEnd(term, now),
		Counts:   maps.Clone(counts),
	}
}

// applyLicense is the one way a PBX's licence changes: change edits a copy
// of the current licence; if the result differs, it becomes the next
// revision and the current one is kept as the previous. It reports whether
// anything changed.
//
// The portal's rules go here as they come: refusing decreases on the last
// day of a month, and the zero-count countdown (zero_since, stop_at,
// delete_at) computed from the new counts.
func applyLicense(r *pbxRecord, now time.Time, change func(*license.Document) error) (bool, error) {
	cur := r.License
	next := cur
	next.Counts = maps.Clone(cur.Counts)
	next.RevokedKeyIDs = append([]string(nil), cur.RevokedKeyIDs...)
	if err := change(&next); err != nil {
		return false, err
	}
	if sameLicense(cur, next) {
		return false, nil
	}
	next.Revision = cur.Revision + 1
	next.IssuedAt = now.Truncate(time.Second)
	if err := next.Validate(); err != nil {
		return false, err
	}
	r.Previous = &cur
	r.License = next
	return true, nil
}

// sameLicense compares two licences as an agent would see them: issue
// time aside, and a count of zero the same as an absent profile.
func sameLicense(a, b license.Document) bool {
	for _, info := range license.Profiles() {
		if a.Counts[info.ID] != b.Counts[info.ID] {
			return false
		}
	}
	a.Counts, b.Counts = nil, nil
	a.IssuedAt, b.IssuedAt = time.Time{}, time.Time{}
	if len(a.RevokedKeyIDs) == 0 && len(b.RevokedKeyIDs) == 0 {
		a.RevokedKeyIDs, b.RevokedKeyIDs = nil, nil
	}
	return reflect.DeepEqual(a, b)
}

// mergeCounts is a licence change: it names only the profiles it changes,
// and the others keep their counts.
func mergeCounts(change license.Counts) func(*license.Document) error {
	return func(d *license.Document) error {
		if err := change.Validate(); err != nil {
			return err
		}
		if d.Counts == nil {
			d.Counts = license.Counts{}
		}
		for p, n := range change {
			d.Counts[p] = n
		}
		return nil
	}
}

// signLicense signs a licence as issued now: a fresh iat on the same revision.
func (p *Portal) signLicense(d license.Document, now time.Time) (string, error) {
	d.IssuedAt = now.Truncate(time.Second)
	s, err := p.signer.Sign(license.TypeLicense, d)
	if err != nil {
		return "", fmt.Errorf("signing licence: %w", err)
	}
	return s, nil
}

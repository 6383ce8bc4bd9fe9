package portalsim

import (
	"fmt"
	"maps"
	"net/http"
	"reflect"
	"strings"
	"time"

	"github.com/pbx-agent/pbx-agent/pkg/license"
)

// termEnd is the end of the billing term that contains from, in UTC: for a
// monthly term the last second of from's month, for a yearly term the last
// second of the same month a year later, and none for a lifetime term.
//
// Renewal moves a PBX to the next term: see nextTermEnd.
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

// nextTermEnd is the end of the term that follows one ending at end: a
// month later for a monthly term, twelve months later for a yearly one,
// always the last second of a month.
func nextTermEnd(term license.Term, end time.Time) time.Time {
	e := end.UTC()
	switch term {
	case license.Monthly:
		return time.Date(e.Year(), e.Month()+2, 1, 0, 0, 0, 0, time.UTC).Add(-time.Second)
	case license.Yearly:
		return time.Date(e.Year()+1, e.Month()+1, 1, 0, 0, 0, 0, time.UTC).Add(-time.Second)
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
// The portal's rules on the counts apply to every change, whatever made it:
// no count may decrease on the last day of a month (the whole change is
// refused), and the zero-licence countdown (zero_since, stop_at, delete_at)
// follows the new counts: it starts when every count goes to zero and is
// cleared when one comes back.
func applyLicense(r *pbxRecord, now time.Time, change func(*license.Document) error) (bool, error) {
	cur := r.License
	next := cur
	next.Counts = maps.Clone(cur.Counts)
	next.RevokedKeyIDs = append([]string(nil), cur.RevokedKeyIDs...)
	if err := change(&next); err != nil {
		return false, err
	}
	if err := checkNoDecreaseOnLastDay(cur.Counts, next.Counts, now); err != nil {
		return false, err
	}
	switch zero := next.Counts.Total() == 0; {
	case zero && next.ZeroSince == nil && cur.Counts.Total() > 0:
		since := now.Truncate(time.Second).UTC()
		stop, del := license.Countdown(since)
		next.ZeroSince, next.StopAt, next.DeleteAt = &since, &stop, &del
	case !zero && next.ZeroSince != nil:
		next.ZeroSince, next.StopAt, next.DeleteAt = nil, nil, nil
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

// RuleNoDecreaseOnLastDay names the rule in its refusals.
const RuleNoDecreaseOnLastDay = "no decrease on the last day of a month"

// checkNoDecreaseOnLastDay refuses a change that lowers any count, to zero
// included, on the last day of a month (UTC). Increases are taken any day;
// a change that mixes both is refused whole.
func checkNoDecreaseOnLastDay(cur, next license.Counts, now time.Time) error {
	if !license.LastDayOfMonth(now) {
		return nil
	}
	var down []string
	for _, info := range license.Profiles() {
		if a, b := cur[info.ID], next[info.ID]; b < a {
			down = append(down, fmt.Sprintf("%s %d → %d", info.ID, a, b))
		}
	}
	if len(down) == 0 {
		return nil
	}
	day := now.UTC()
	return &apiError{status: http.StatusConflict, code: CodeRuleRefused, msg: fmt.Sprintf(
		"refused by the portal rule %q: today, %s (UTC), is the last day of %s, and this change lowers %s; "+
			"increases are taken today, decreases again from %s 00:00 UTC (nothing was changed)",
		RuleNoDecreaseOnLastDay, day.Format(time.DateOnly), day.Month(), strings.Join(down, ", "),
		license.StartOfDay(day).AddDate(0, 0, 1).Format(time.DateOnly))}
}

// changeWarning is the warning for a licence change made at now, or "":
// changes are best made ChangeNoticeDays before the current term ends.
func changeWarning(d license.Document, now time.Time) string {
	end := license.CurrentTermEnd(d.Term, d.TermEnd, now)
	if end.IsZero() || end.Sub(now) >= license.ChangeNotice || now.After(end) {
		return ""
	}
	return fmt.Sprintf("this change was made less than 2 days before the term ends (%s, %s): licence changes are best made at least 2 days before the term ends",
		end.UTC().Format("2006-01-02 15:04:05 UTC"), license.Relative(end, now))
}

// renewedTermEnd is the term end of d once renewed up to now: a subscription
// renews on the last day of its term (UTC), term after term if the clock
// jumped several. It reports false when nothing is due.
func renewedTermEnd(d license.Document, now time.Time) (time.Time, bool) {
	if d.Term == license.Lifetime || d.TermEnd.IsZero() {
		return time.Time{}, false
	}
	end := d.TermEnd.UTC()
	for !now.Before(license.StartOfDay(end)) {
		end = nextTermEnd(d.Term, end)
	}
	return end, !end.Equal(d.TermEnd)
}

// settle brings a PBX up to the portal's clock, lazily: whenever the portal
// reads a PBX or answers its appliance, with the portal's now, so a moved
// clock takes effect at the next look. Past delete_at the PBX is deleted
// (at delete_at); otherwise a subscription due for renewal gets its next
// term end in a new revision. Callers hold p.mu.
func (p *Portal) settle(r *pbxRecord, now time.Time) {
	if r.deleted() {
		return
	}
	if del := r.License.DeleteAt; del != nil && !now.Before(*del) {
		t := del.UTC()
		r.DeletedAt = &t
		p.markDirty()
		p.log.Info("PBX deleted: its zero-licence countdown is over", "pbx", r.Name, "pbx_id", r.ID,
			"zero_since", r.License.ZeroSince, "delete_at", t)
		return
	}
	if end, due := renewedTermEnd(r.License, now); due {
		old := r.License.TermEnd
		changed, err := applyLicense(r, now, func(d *license.Document) error {
			d.TermEnd = end
			return nil
		})
		if err != nil {
			p.log.Error("renewing the term", "pbx", r.Name, "err", err)
			return
		}
		if changed {
			p.markDirty()
			p.log.Info("term renewed", "pbx", r.Name, "term", r.License.Term, "old_end", old, "new_end", end, "revision", r.License.Revision)
		}
	}
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
func (p *Portal) signLicense(d license.Document) (string, error) {
	s, err := p.signer.Sign(license.TypeLicense, d)
	if err != nil {
		return "", fmt.Errorf("signing licence: %w", err)
	}
	return s, nil
}

package localapi

import (
	"bytes"
	"crypto/sha256"
	_ "embed"
	"encoding/base64"
	"fmt"
	"html/template"
	"net/http"
	"regexp"
	"sort"
	"time"

	"github.com/pbx-agent/pbx-agent/pkg/apitype"
	"github.com/pbx-agent/pbx-agent/pkg/license"
)

// The status page is one self-contained document: its style and script are
// inline, it loads nothing else, and html/template escapes every value it
// shows. Every ten seconds the script fetches the page's main part again
// (GET /?part=main) and swaps it in, so nothing reloads as a whole.
//
//go:embed page/status.html.tmpl
var pageSource string

var pageTemplate = template.Must(template.New("page").Funcs(template.FuncMap{
	"pct": func(n, of int) string {
		if of <= 0 {
			return "0"
		}
		return fmt.Sprintf("%.1f", 100*float64(min(n, of))/float64(of))
	},
}).Parse(pageSource))

// pageCSP allows the page's own inline style and its one inline script
// (by hash), and fetches to itself; nothing else loads or runs.
var pageCSP = func() string {
	m := regexp.MustCompile(`(?s)<script>(.*?)</script>`).FindStringSubmatch(pageSource)
	sum := sha256.Sum256([]byte(m[1]))
	return "default-src 'none'; style-src 'unsafe-inline'; img-src data:; connect-src 'self'; " +
		"script-src 'sha256-" + base64.StdEncoding.EncodeToString(sum[:]) + "'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
}()

// pageView is what the template shows, computed from a Status.
type pageView struct {
	Status    apitype.Status
	StateName string
	Tone      string // ok, warn, bad: the state's colour
	Profiles  []profileRow
	Overuse   []overuseRow // profiles with more users than licences, in catalogue order
	// TelephonyStopped: the state stops telephony, so nobody's calls
	// keep working and the page must not say they do.
	TelephonyStopped bool
	Counting         *countingView // nil while counting works
	Deadlines        []timeRow
	Heartbeat        []timeRow
	Now              string
}

type profileRow struct {
	Name                      string
	Licensed, Used, Reserved  int
	Scale                     int // the bar's full width: the largest of licensed and used+reserved
	Overuse                   int
	Within                    int // the users within the licence: Used less Overuse
	UsedText, RemainingPhrase string
}

// countingView is the notice of a failing count of users.
type countingView struct {
	Error           string
	Failures        int
	Since, LastGood string // "" when not known, or never counted
	Unknown         bool   // the users are not known: nothing new is admitted
}

type overuseRow struct {
	Name  string
	Users int // without a licence
}

type timeRow struct {
	Label, When, Relative string
	Past                  bool
}

func newPageView(st apitype.Status) pageView {
	v := pageView{Status: st, StateName: st.State, Tone: stateTone(st.State),
		TelephonyStopped: license.State(st.State).StopsTelephony()}
	now := st.Clock.Now
	if now.IsZero() {
		// A backend that gives no licence time (tests, a page rendered
		// before the clock runs): only the page's "as of" line uses it.
		now = time.Now().UTC()
	}
	v.Now = now.UTC().Format("2006-01-02 15:04:05 UTC")
	if u := st.Users; u.Error != "" {
		c := &countingView{Error: u.Error, Failures: u.Failures, Unknown: u.Unknown || u.CountedAt == nil}
		if u.FailingSince != nil {
			c.Since = u.FailingSince.UTC().Format("2006-01-02 15:04 UTC") + " (" + license.Relative(*u.FailingSince, now) + ")"
		}
		if u.CountedAt != nil {
			c.LastGood = u.CountedAt.UTC().Format("2006-01-02 15:04 UTC") + " (" + license.Relative(*u.CountedAt, now) + ")"
		}
		v.Counting = c
	}
	if l := st.License; l != nil {
		v.Profiles = profileRows(l, st.Users)
		for _, r := range v.Profiles {
			if r.Overuse > 0 {
				v.Overuse = append(v.Overuse, overuseRow{Name: r.Name, Users: r.Overuse})
			}
		}
	}
	// A deadline passed is named in the past tense: telephony that
	// stopped is "stopped", not a "stops" struck through.
	add := func(rows *[]timeRow, future, past string, t *time.Time) {
		if t == nil || t.IsZero() {
			return
		}
		r := timeRow{Label: future, When: t.UTC().Format("2006-01-02 15:04 UTC"),
			Relative: license.Relative(*t, now), Past: t.Before(now)}
		if r.Past {
			r.Label = past
		}
		*rows = append(*rows, r)
	}
	d := st.Deadlines
	add(&v.Deadlines, "Telephony stops", "Telephony stopped", d.StopAt)
	add(&v.Deadlines, "PBX deleted", "PBX deleted", d.DeleteAt)
	add(&v.Deadlines, "Offline grace ends", "Offline grace ended", d.OfflineGraceEnd)
	add(&v.Deadlines, "Lapse grace ends", "Lapse grace ended", d.LapseGraceEnd)
	if l := st.License; l != nil {
		add(&v.Deadlines, "Term ends", "Term ended", l.TermEnd)
	}
	if c := st.Calendar; c != nil {
		if d := c.RenewsOn; d != nil {
			// A day, not an instant: "today" all of the renewal day.
			v.Deadlines = append(v.Deadlines, timeRow{Label: "Renews (and is invoiced)", When: d.UTC().Format(time.DateOnly),
				Relative: license.RelativeDay(*d, now), Past: license.StartOfDay(*d).Before(license.StartOfDay(now))})
			if v.Deadlines[len(v.Deadlines)-1].Past {
				v.Deadlines[len(v.Deadlines)-1].Label = "Renewed"
			}
		}
		add(&v.Deadlines, "Licence changes until", "Licence changes were due", c.ChangesUntil)
	}
	sort.SliceStable(v.Deadlines, func(i, j int) bool { return v.Deadlines[i].When < v.Deadlines[j].When })
	add(&v.Heartbeat, "Last heartbeat", "Last heartbeat", st.Heartbeat.LastSuccess)
	next := "Next heartbeat"
	if n := st.Heartbeat.Failures; n > 0 {
		next = fmt.Sprintf("Next retry (%d failed in a row)", n)
	}
	add(&v.Heartbeat, next, next, st.Heartbeat.Next)
	return v
}

// profileRows lists the profiles in catalogue order, then any unknown ones.
// While counting fails no row says seats are free: the users may have
// changed since the last good count, which is all the row can show.
func profileRows(l *apitype.LicenseStatus, u apitype.UsersStatus) []profileRow {
	var rows []profileRow
	seen := map[string]bool{}
	row := func(id, name string) {
		p := l.Profiles[id]
		seen[id] = true
		r := profileRow{Name: name, Licensed: p.Licensed, Used: p.Used, Reserved: p.Reserved, Overuse: l.Overuse[id]}
		r.Scale = max(r.Licensed, r.Used+r.Reserved, 1)
		r.Within = max(r.Used-r.Overuse, 0)
		r.UsedText = fmt.Sprintf("%d of %d", r.Used, r.Licensed)
		switch free := r.Licensed - r.Used - r.Reserved; {
		case u.Error != "" && u.CountedAt == nil:
			r.UsedText = fmt.Sprintf("not counted, %d licensed", r.Licensed)
			r.RemainingPhrase = "free seats unknown"
		case u.Error != "":
			r.UsedText += " at the last good count"
			r.RemainingPhrase = "free seats unknown"
		case r.Overuse > 0:
			r.RemainingPhrase = fmt.Sprintf("%d over the licence", r.Overuse)
		case free <= 0 && r.Licensed > 0:
			r.RemainingPhrase = "full"
		case r.Licensed > 0:
			r.RemainingPhrase = fmt.Sprintf("%d free", free)
		}
		rows = append(rows, r)
	}
	for _, p := range license.Profiles() {
		if pr, ok := l.Profiles[string(p.ID)]; ok && (pr.Licensed > 0 || pr.Used > 0 || pr.Reserved > 0) {
			row(string(p.ID), p.Name)
		}
	}
	var other []string
	for id := range l.Profiles {
		if !seen[id] && !license.Profile(id).Valid() {
			other = append(other, id)
		}
	}
	sort.Strings(other)
	for _, id := range other {
		row(id, id)
	}
	return rows
}

func stateTone(state string) string {
	switch license.State(state) {
	case license.Active:
		return "ok"
	case license.Offline, license.Unactivated:
		return "warn"
	}
	return "bad"
}

// servePage answers the status page, or only its main part for ?part=main.
func (s *Server) servePage(w http.ResponseWriter, r *http.Request) error {
	if err := s.permit(r, permRead); err != nil {
		return err
	}
	name := "page"
	if r.URL.Query().Get("part") == "main" {
		name = "main"
	}
	var buf bytes.Buffer
	if err := pageTemplate.ExecuteTemplate(&buf, name, newPageView(s.status())); err != nil {
		return &apiError{status: http.StatusInternalServerError, code: apitype.CodeInternal, msg: "rendering the status page", err: err}
	}
	setCommonHeaders(w.Header(), contentTypeHTML)
	w.Header().Set("Content-Security-Policy", pageCSP)
	w.Header().Set("X-Frame-Options", "DENY")
	w.Header().Set("Referrer-Policy", "no-referrer")
	w.WriteHeader(http.StatusOK)
	_, err := w.Write(buf.Bytes())
	return err
}

package agent

import (
	"time"

	"github.com/pbx-agent/pbx-agent/pkg/admission"
	"github.com/pbx-agent/pbx-agent/pkg/apitype"
	"github.com/pbx-agent/pbx-agent/pkg/license"
)

// Status returns a snapshot for the local API. It never waits on the portal.
func (a *Agent) Status() apitype.Status { return a.status(true) }

// status is Status, with the appliance's part (serial, WMS versions: see
// applianceInfo) only when appliance is set: the one-line status for
// systemd, built every minute, shows none of it.
func (a *Agent) status(appliance bool) apitype.Status {
	now := a.lic.now()
	offset := a.lic.localOffset()
	used, reserved, us := a.usersSnapshot()
	ssh, wmsSt := a.ssh.status(), a.wms.status() // each under its own lock, before the licence's
	next, failures := a.hb.snapshot()

	cfgStatus := a.rl.status()
	lst := a.lic.status(now)
	over := 0
	if lst.doc != nil {
		for _, n := range admission.Overuse(lst.doc, used) {
			over += n
		}
	}
	v := lst.verdict.WithOveruse(over) // users over the licence are not "all good"
	var pbxID string
	if lst.pbx != nil {
		pbxID = lst.pbx.ID
	}
	commands := a.cmds.status(pbxID, lst.activatedAt) // the licence's lock released
	s := apitype.Status{
		State:    string(v.State),
		Next:     v.WhatNext,
		Summary:  v.Summary,
		Commands: commands,
		Clock:    apitype.ClockStatus{Now: clampTime(now), MarkError: a.lic.markError()},
		SSH:      ssh,
		WMS:      wmsSt,
		Users:    us,
	}
	if appliance {
		s.Appliance = a.applianceStatus(&s.WMS)
	}
	if offset < -time.Second {
		s.Clock.LocalBehind = license.Duration(offset)
	}
	if p := lst.pbx; p != nil {
		s.PBX = &apitype.PBXStatus{ID: p.ID, Name: p.Name, Model: string(p.Model)}
	}
	if d := lst.doc; d != nil {
		ls := &apitype.LicenseStatus{Term: string(d.Term), Revision: d.Revision, Profiles: map[string]apitype.ProfileStatus{}}
		if !d.TermEnd.IsZero() {
			ls.TermEnd = utc(d.TermEnd)
		}
		for _, p := range license.Profiles() {
			ls.Profiles[string(p.ID)] = apitype.ProfileStatus{Licensed: d.Counts[p.ID], Used: used[p.ID], Reserved: reserved[p.ID]}
		}
		for p, n := range admission.Overuse(d, used) {
			if ls.Overuse == nil {
				ls.Overuse = map[string]int{}
			}
			ls.Overuse[string(p)] = n
		}
		if so := d.SoftOverage; so != nil && now.Before(so.Until) {
			ls.SoftOverage = &apitype.SoftOverageStatus{Factor: so.Factor, Until: clampTime(so.Until)}
		}
		ls.HigherCoversLower = d.HigherCoversLower
		s.License = ls
	}
	s.Deadlines = apitype.Deadlines{
		StopAt:          optional(v.StopAt),
		DeleteAt:        optional(v.DeleteAt),
		OfflineGraceEnd: optional(v.OfflineGraceEnd),
		LapseGraceEnd:   optional(v.LapseGraceEnd),
	}
	if lst.doc != nil && !lst.lastOK.IsZero() {
		s.Heartbeat.LastSuccess = utc(lst.lastOK)
	}
	if lst.doc != nil && next != 0 {
		// The schedule runs on the clock's elapsed time; shown in licence time.
		s.Heartbeat.Next = utc(now.Add(next - a.clk.Elapsed()).Truncate(time.Second))
	}
	s.Heartbeat.LastError = lst.lastError
	s.Heartbeat.Failures = failures
	s.Trust = trustStatus(a.lic.keyring())
	s.Config = cfgStatus
	s.Calendar, s.Deleted = calendarStatus(lst.doc, now, v)
	s.Mode, s.Offline = a.lic.offlineStatus(now) // offline.go
	if s.Mode == apitype.ModeAirGapped && a.cfg.Portal.URL == "" {
		// No portal configured: no heartbeat is made, none is due.
		s.Heartbeat = apitype.HeartbeatStatus{}
	}
	return s
}

// calendarStatus is the status's part of the portal's calendar at now and,
// once deleted, when and why the PBX left.
func calendarStatus(doc *license.Document, now time.Time, v license.Verdict) (*apitype.CalendarStatus, *apitype.DeletedStatus) {
	if v.State == license.Deleted {
		// Nothing to renew or change on a deleted PBX.
		return nil, &apitype.DeletedStatus{At: optional(v.DeletedAt), Rebound: v.Rebound}
	}
	c := license.CalendarAt(doc, now)
	if c == (license.Calendar{}) || v.State == license.Unactivated {
		return nil, nil
	}
	return &apitype.CalendarStatus{RenewsOn: optional(c.RenewsOn), ChangesUntil: optional(c.ChangesUntil),
		NoDecreasesToday: c.NoDecreasesToday, DecreasesFrom: optional(c.DecreasesFrom)}, nil
}

// optional is t in UTC, or nil for the zero time: a deadline that does not apply.
func optional(t time.Time) *time.Time {
	if t.IsZero() {
		return nil
	}
	return utc(t)
}

// utc is t in UTC, or nil when JSON cannot carry it: time.MarshalJSON
// refuses years beyond 9999, and one such time (a deadline computed from
// a far signed time) failed the whole status. A deadline that far is none.
func utc(t time.Time) *time.Time {
	t = t.UTC()
	if !encodable(t) {
		return nil
	}
	return &t
}

// clampTime is t in UTC, held within the years JSON can carry, for the
// times the status always shows.
func clampTime(t time.Time) time.Time {
	t = t.UTC()
	switch {
	case t.Year() > 9999:
		return time.Date(9999, 12, 31, 23, 59, 59, 0, time.UTC)
	case t.Year() < 0:
		return time.Date(0, 1, 1, 0, 0, 0, 0, time.UTC)
	}
	return t
}

func encodable(t time.Time) bool { return t.Year() >= 0 && t.Year() <= 9999 }

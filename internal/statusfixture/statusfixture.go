// Package statusfixture holds one status of the daemon per licence state
// (and per variant an admin meets: over-use, a suspension, a re-bind), at a
// fixed licence time. The golden files of `pbx-agent status` and of the
// status page, and the page's screenshots, are rendered from them.
//
// The state, its phrases and its deadlines come from the real lifecycle
// (license.Evaluate) and calendar (license.CalendarAt) on fixed facts, so
// a change of wording there shows in the golden files.
package statusfixture

import (
	"time"

	"github.com/pbx-agent/pbx-agent/pkg/admission"
	"github.com/pbx-agent/pbx-agent/pkg/apitype"
	"github.com/pbx-agent/pbx-agent/pkg/license"
)

// Now is the licence clock of every case: a Wednesday mid-month, so no
// month's-last-day rule applies unless a case says so.
var Now = time.Date(2027, 3, 10, 10, 0, 0, 0, time.UTC)

// LastDay is the licence clock of the one case on the last day of the
// month and of the term.
var LastDay = time.Date(2027, 3, 31, 10, 0, 0, 0, time.UTC)

// Case is one status to render, named for its file: status-NAME.golden.
type Case struct {
	Name   string
	Status apitype.Status
}

// Cases returns a fresh status per case, in the order of the lifecycle.
func Cases() []Case {
	counts := license.Counts{license.UCPremium: 10, license.UCBusiness: 5, license.PBXBasic: 3}
	used := license.Counts{license.UCPremium: 8, license.UCBusiness: 5, license.PBXBasic: 1}
	over := license.Counts{license.UCPremium: 12, license.UCBusiness: 5, license.PBXBasic: 1}
	suspended := doc(counts, func(d *license.Document) {
		d.Suspended = true
		d.SuspendedSince = ptr(Now.Add(-2 * day))
	})
	zero := func(since time.Time) *license.Document {
		return doc(license.Counts{}, func(d *license.Document) {
			stop, del := license.Countdown(since)
			d.ZeroSince, d.StopAt, d.DeleteAt = ptr(since), &stop, &del
		})
	}
	recent := Now.Add(-40 * time.Second)
	return []Case{
		{"unactivated", build(license.Facts{Now: Now}, nil, unactivatedExtras)},
		{"active", build(license.Facts{Now: Now, Doc: doc(counts), LastSuccess: recent}, used, activeExtras)},
		{"active-overuse", build(license.Facts{Now: Now, Doc: doc(counts), LastSuccess: recent}, over, nil)},
		// Support logged in through the portal's tunnel: the appliance
		// behind NAT, sshd on loopback.
		{"active-tunnel", build(license.Facts{Now: Now, Doc: doc(counts), LastSuccess: recent}, used, tunnelExtras)},
		// The term's last day, the last of a month: renewal today, the
		// changes deadline passed, no decreases today.
		{"active-last-day", build(license.Facts{Now: LastDay, Doc: doc(counts), LastSuccess: LastDay.Add(-40 * time.Second)}, used, nil)},
		// The WMS's database moved away an hour ago: admissions refused,
		// free seats unknown.
		{"active-counting-fails", build(license.Facts{Now: Now, Doc: doc(counts), LastSuccess: recent}, used, countingFailsExtras)},
		{"offline", build(license.Facts{Now: Now, Doc: doc(counts), LastSuccess: Now.Add(-3 * day)}, used, offlineExtras)},
		// Activated and renewed by files, the last one 10 days ago, valid
		// for 30: the lifecycle counts from the file's time to its horizon.
		{"air-gapped", build(license.Facts{Now: Now, Doc: doc(counts, func(d *license.Document) {
			d.HeartbeatTolerance, d.OfflineGrace = license.Seconds(30*day/time.Second), license.Seconds(30*day/time.Second)
		}), LastSuccess: Now.Add(-10 * day), ByFile: true}, used, airGappedExtras)},
		{"lapsed", build(license.Facts{Now: Now, Doc: doc(counts), LastSuccess: Now.Add(-33 * day)}, used, lapsedExtras)},
		{"suspended", build(license.Facts{Now: Now, Doc: suspended, LastSuccess: recent}, used, nil)},
		{"stopping", build(license.Facts{Now: Now, Doc: zero(Now.Add(-2*day - 3*time.Hour)), LastSuccess: recent}, used, nil)},
		{"stopped", build(license.Facts{Now: Now, Doc: zero(Now.Add(-6*day - 3*time.Hour)), LastSuccess: recent}, used, nil)},
		{"deleted", build(license.Facts{Now: Now, Gone: "deleted on the portal at 2027-03-09T00:00:00Z, at the end of its zero-licence countdown",
			GoneAt: time.Date(2027, 3, 9, 0, 0, 0, 0, time.UTC)}, nil, nil)}, // the signed delete_at
		{"deleted-rebound", build(license.Facts{Now: Now, Gone: "re-bound to another appliance", Rebound: true,
			GoneAt: Now.Add(-3 * time.Hour)}, nil, nil)},
	}
}

const day = 24 * time.Hour

var pbx = license.PBX{ID: "pbx-5f1c0a2e9b7d", Name: "acme.example", Model: license.ModelVM}

// doc is the PBX's monthly licence, revision 7, issued a day ago.
func doc(counts license.Counts, edit ...func(*license.Document)) *license.Document {
	d := &license.Document{Version: license.DocumentVersion, PBX: pbx, Revision: 7, IssuedAt: Now.Add(-day),
		Term: license.Monthly, TermEnd: time.Date(2027, 3, 31, 23, 59, 59, 0, time.UTC), Counts: counts}
	for _, e := range edit {
		e(d)
	}
	return d
}

// build is the status the daemon shows for facts f with users counted,
// as agent.Status makes it, then edited by extras.
func build(f license.Facts, used license.Counts, extras func(*apitype.Status)) apitype.Status {
	d := f.Doc
	overuse := admission.Overuse(d, used)
	v := license.Evaluate(f).WithOveruse(overuse.Total())
	st := apitype.Status{
		State: string(v.State), Next: v.WhatNext, Summary: v.Summary,
		Clock:     apitype.ClockStatus{Now: f.Now},
		WMS:       apitype.WMSStatus{Version: "7.02.20250609.3", Latest: "7.02.20250609.3"},
		Appliance: apitype.ApplianceStatus{Serial: "CZ2038XK1V", SerialSource: "dmi"},
		Users:     apitype.UsersStatus{Source: "sqlite /var/lib/wms/users.db"},
		Commands:  []apitype.CommandStatus{},
		Trust: &apitype.TrustStatus{Roots: "embedded", Keys: []apitype.TrustedKeyStatus{
			{KeyID: "portal-2026", Role: "root"},
		}},
		Deadlines: apitype.Deadlines{StopAt: optional(v.StopAt), DeleteAt: optional(v.DeleteAt),
			OfflineGraceEnd: optional(v.OfflineGraceEnd), LapseGraceEnd: optional(v.LapseGraceEnd)},
	}
	if v.State != license.Unactivated {
		st.PBX = &apitype.PBXStatus{ID: pbx.ID, Name: pbx.Name, Model: string(pbx.Model)}
	}
	if d != nil {
		ls := &apitype.LicenseStatus{Term: string(d.Term), TermEnd: ptr(d.TermEnd), Revision: d.Revision, Profiles: map[string]apitype.ProfileStatus{}}
		for _, p := range license.Profiles() {
			ls.Profiles[string(p.ID)] = apitype.ProfileStatus{Licensed: d.Counts[p.ID], Used: used[p.ID]}
		}
		for p, n := range overuse {
			if ls.Overuse == nil {
				ls.Overuse = map[string]int{}
			}
			ls.Overuse[string(p)] = n
		}
		st.License = ls
		if !f.LastSuccess.IsZero() {
			st.Heartbeat.LastSuccess = ptr(f.LastSuccess)
		}
		st.Heartbeat.Next = ptr(f.Now.Add(20 * time.Second))
		st.Users.CountedAt = ptr(f.Now.Add(-12 * time.Second))
		if c := license.CalendarAt(d, f.Now); c != (license.Calendar{}) {
			st.Calendar = &apitype.CalendarStatus{RenewsOn: optional(c.RenewsOn), ChangesUntil: optional(c.ChangesUntil),
				NoDecreasesToday: c.NoDecreasesToday, DecreasesFrom: optional(c.DecreasesFrom)}
		}
	}
	if v.State == license.Deleted {
		st.Deleted = &apitype.DeletedStatus{At: optional(v.DeletedAt), Rebound: v.Rebound}
	}
	if extras != nil {
		extras(&st)
	}
	return st
}

func unactivatedExtras(st *apitype.Status) {
	st.Appliance = apitype.ApplianceStatus{SerialSource: "unknown (open /sys/class/dmi/id/product_serial: permission denied; set identity.serial)"}
	st.WMS = apitype.WMSStatus{VersionUnknown: "the package wms, which upgrade.package names, is not installed", LatestUnknown: "no WMS repository configured: set upgrade.repo_url"}
}

func activeExtras(st *apitype.Status) {
	st.SSH = apitype.SSHStatus{Open: true, Port: 2222, Until: ptr(Now.Add(50 * time.Minute)),
		HostKeys: []string{"SHA256:q3n1Zb0m8Xf6vC2yP9kL4tR7sW1aD5eG8hJ0uI3oK6M (ED25519)"}}
	st.WMS = apitype.WMSStatus{Version: "7.02.20250609.3", Latest: "7.02.20250901.1", Behind: true}
	st.Commands = []apitype.CommandStatus{
		{ID: "cmd-Hq2v9XbT1mZk", Type: "ssh.open", State: "done", Result: "SSH open on port 2222 until 2027-03-10T10:50:00Z",
			ReceivedAt: Now.Add(-10 * time.Minute), FinishedAt: ptr(Now.Add(-10*time.Minute + 2*time.Second))},
		{ID: "cmd-4rPa0LcW8nYe", Type: "wms.upgrade", State: "waiting", Result: "7.02.20250901.1 waits for its window at 2027-03-11T01:00:00Z",
			ReceivedAt: Now.Add(-2 * time.Hour)},
	}
}

func tunnelExtras(st *apitype.Status) {
	st.SSH = apitype.SSHStatus{Open: true, Port: 222, Until: ptr(Now.Add(110 * time.Minute)),
		HostKeys: []string{"SHA256:q3n1Zb0m8Xf6vC2yP9kL4tR7sW1aD5eG8hJ0uI3oK6M (ED25519)"},
		Tunnel: &apitype.SSHTunnelStatus{Open: true, Connected: true, Since: ptr(Now.Add(-10 * time.Minute)), Command: "cmd-T7wq2LmZp0Xa",
			Sessions: 1, SessionsTotal: 3, BytesIn: 48_213, BytesOut: 1_873_402}}
	st.Commands = []apitype.CommandStatus{
		{ID: "cmd-T7wq2LmZp0Xa", Type: "ssh.open", State: "done",
			Result:     "SSH open through the portal's tunnel (sshd on 127.0.0.1:222) until 2027-03-10T11:50:00Z",
			ReceivedAt: Now.Add(-10 * time.Minute), FinishedAt: ptr(Now.Add(-10*time.Minute + time.Second))},
	}
}

func countingFailsExtras(st *apitype.Status) {
	st.Users.CountedAt = ptr(Now.Add(-61 * time.Minute))
	st.Users.Error = "users source sqlite /var/lib/wms/users.db: unable to open database file (14)"
	st.Users.Failures, st.Users.FailingSince, st.Users.Unknown = 360, ptr(Now.Add(-time.Hour)), true
}

func offlineExtras(st *apitype.Status) {
	st.Heartbeat.LastError = "portal unreachable: Post \"https://portal.example/api/v1/heartbeat\": dial tcp 203.0.113.7:443: connect: connection refused"
	st.Heartbeat.Failures = 12
	st.Heartbeat.Next = ptr(Now.Add(4 * time.Minute))
}

func airGappedExtras(st *apitype.Status) {
	st.Mode = apitype.ModeAirGapped
	st.Heartbeat = apitype.HeartbeatStatus{} // no portal.url: no heartbeat
	st.Offline = &apitype.OfflineStatus{Horizon: ptr(Now.Add(20 * day)), NextDue: ptr(Now.Add(13 * day)), LastFile: ptr(Now.Add(-10 * day)),
		Carry: "nothing until " + Now.Add(13*day).UTC().Format(time.RFC3339) + "; then write a usage report (pbx-agent report --offline) and carry it to the portal"}
}

func lapsedExtras(st *apitype.Status) {
	offlineExtras(st)
	st.Clock.LocalBehind = "6 days"
}

func optional(t time.Time) *time.Time {
	if t.IsZero() {
		return nil
	}
	return ptr(t)
}

func ptr(t time.Time) *time.Time {
	t = t.UTC()
	return &t
}

package agent

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/pbx-agent/pbx-agent/internal/logbuf"
	"github.com/pbx-agent/pbx-agent/internal/portalsim"
	"github.com/pbx-agent/pbx-agent/pkg/apitype"
	"github.com/pbx-agent/pbx-agent/pkg/clock/clocktest"
	"github.com/pbx-agent/pbx-agent/pkg/license"
	"github.com/pbx-agent/pbx-agent/pkg/offline"
)

// airGapped is a rig whose agents have no portal.url: the portal is
// reached only by files carried through its admin API.
func airGapped(t *testing.T) *rig {
	r := newRig(t)
	r.cfg.Portal.URL = ""
	return r
}

// carry moves both clocks, the machine's and the portal's, by d.
func (r *rig) carry(t *testing.T, d time.Duration) {
	t.Helper()
	r.time.run(d)
	if _, err := r.admin.AdvanceClock(context.Background(), d); err != nil {
		t.Fatal(err)
	}
}

// activateByFile runs the whole offline activation of a on PBX name.
func activateByFile(t *testing.T, r *rig, a *Agent, name, key string) *portalsim.OfflineLicence {
	t.Helper()
	ctx := context.Background()
	req, err := a.OfflineRequest(ctx, key)
	if err != nil {
		t.Fatalf("writing the activation request: %v", err)
	}
	file, err := r.admin.OfflineActivate(ctx, name, req.File)
	if err != nil {
		t.Fatalf("the portal refused the request: %v", err)
	}
	if err := a.InstallLicenceFile(ctx, file.File); err != nil {
		t.Fatalf("installing the licence file: %v", err)
	}
	return file
}

// renewByFile writes a usage report, has the portal answer it and installs the file.
func renewByFile(t *testing.T, r *rig, a *Agent, name string) *portalsim.OfflineLicence {
	t.Helper()
	ctx := context.Background()
	rep, err := a.OfflineReport(ctx)
	if err != nil {
		t.Fatalf("writing the usage report: %v", err)
	}
	file, err := r.admin.OfflineRenew(ctx, name, rep.File)
	if err != nil {
		t.Fatalf("the portal refused the report: %v", err)
	}
	if err := a.InstallLicenceFile(ctx, file.File); err != nil {
		t.Fatalf("installing the renewed file: %v", err)
	}
	return file
}

func TestAirGappedActivationRenewalAndLapse(t *testing.T) {
	r := airGapped(t)
	ctx := context.Background()
	key := r.createPBX(t, "air.example", license.Counts{license.UCPremium: 10})
	a := r.newAgent(t)

	req, err := a.OfflineRequest(ctx, key)
	if err != nil {
		t.Fatal(err)
	}
	again, err := a.OfflineRequest(ctx, key)
	if err != nil || !again.Again || again.File != req.File {
		t.Fatalf("asking again must re-emit the same request: again %v, same %v, %v", again.Again, again.File == req.File, err)
	}
	if s := a.Status(); s.Offline == nil || s.Offline.Outstanding != "request" || s.Mode != "" {
		t.Fatalf("status with a request outstanding: mode %q, %+v", s.Mode, s.Offline)
	}
	file, err := r.admin.OfflineActivate(ctx, "air.example", req.File)
	if err != nil {
		t.Fatal(err)
	}
	if err := a.InstallLicenceFile(ctx, file.File); err != nil {
		t.Fatal(err)
	}
	s := a.Status()
	if s.State != "active" || s.Mode != apitype.ModeAirGapped || s.Offline == nil || s.Offline.Horizon == nil ||
		!s.Offline.Horizon.Equal(file.Horizon) || s.Offline.Outstanding != "" {
		t.Fatalf("after activation by file: state %s, mode %q, offline %+v", s.State, s.Mode, s.Offline)
	}
	if !strings.HasPrefix(s.Offline.Carry, "nothing until") {
		t.Errorf("carry = %q", s.Offline.Carry)
	}

	// Three weeks on: still active, a renewal due.
	r.carry(t, 24*day)
	if s := a.Status(); s.State != "active" || !strings.HasPrefix(s.Offline.Carry, "a renewal is due") {
		t.Fatalf("24 days on: %s, carry %q", s.State, s.Offline.Carry)
	}
	rep, err := a.OfflineReport(ctx)
	if err != nil {
		t.Fatal(err)
	}
	// The report is lost on the way: asking again writes the same one.
	rep2, err := a.OfflineReport(ctx)
	if err != nil || !rep2.Again || rep2.File != rep.File {
		t.Fatalf("a report not yet answered must be re-emitted: again %v, same %v, %v", rep2.Again, rep2.File == rep.File, err)
	}
	renewed, err := r.admin.OfflineRenew(ctx, "air.example", rep2.File)
	if err != nil {
		t.Fatal(err)
	}
	if err := a.InstallLicenceFile(ctx, renewed.File); err != nil {
		t.Fatal(err)
	}
	if s := a.Status(); !s.Offline.Horizon.Equal(renewed.Horizon) || !renewed.Horizon.After(file.Horizon) {
		t.Fatalf("the renewal did not move the horizon: %v, file %v", s.Offline.Horizon, renewed.Horizon)
	}

	// A restart keeps everything: the mode, the horizon, the chain.
	a = r.newAgent(t)
	if s := a.Status(); s.State != "active" || s.Mode != apitype.ModeAirGapped || !s.Offline.Horizon.Equal(renewed.Horizon) {
		t.Fatalf("after a restart: %s, mode %q, %+v", s.State, s.Mode, s.Offline)
	}

	// Nobody comes back: the PBX lapses at the horizon, then stops.
	r.time.run(renewed.Horizon.Sub(a.lic.now()) - time.Minute)
	if got := a.State(); got != license.Active {
		t.Fatalf("a minute before the horizon: %s", got)
	}
	r.time.run(2 * time.Minute)
	if got := a.State(); got != license.Lapsed {
		t.Fatalf("past the horizon: %s", got)
	}
	r.time.run(license.DefaultLapseGrace)
	if got := a.State(); got != license.Stopped {
		t.Fatalf("past the lapse grace: %s", got)
	}
}

// The appliance's owner sets the machine's clock back: the licence clock
// keeps counting the machine's elapsed time from the file's signed time,
// so the horizon comes all the same.
func TestAirGappedClockSetBackNeverExtends(t *testing.T) {
	r := airGapped(t)
	key := r.createPBX(t, "air.example", license.Counts{license.UCPremium: 10})
	a := r.newAgent(t)
	file := activateByFile(t, r, a, "air.example", key)

	r.time.wall = r.time.wall.Add(-90 * day)
	r.time.run(license.DefaultOfflineGrace + time.Hour)
	if got := a.State(); got != license.Lapsed {
		t.Fatalf("past the horizon with the clock set back 90 days: %s", got)
	}
	// A restart after a reboot (the elapsed time starts again) resumes from
	// the persisted mark, never from the machine's clock behind it.
	a.writeClockMark()
	if err := a.persistClock(); err != nil {
		t.Fatal(err)
	}
	r.time.elapsed = time.Minute
	a = r.newAgent(t)
	if now := a.lic.now(); now.Before(file.Horizon) {
		t.Fatalf("after a reboot with the clock set back, the licence clock is %v, before the horizon %v", now, file.Horizon)
	}
	if got := a.State(); got != license.Lapsed {
		t.Fatalf("after a reboot: %s", got)
	}
}

func TestAirGappedFilesRefused(t *testing.T) {
	r := airGapped(t)
	ctx := context.Background()
	key := r.createPBX(t, "air.example", license.Counts{license.UCPremium: 10})
	a := r.newAgent(t)
	first := activateByFile(t, r, a, "air.example", key)
	r.carry(t, day)
	renewByFile(t, r, a, "air.example")

	otherKey := r.createPBX(t, "other.example", license.Counts{license.UCPremium: 1})
	b := r.otherAppliance(t)
	foreign := activateByFile(t, r, b, "other.example", otherKey)
	bDevice := b.lic.device.KeyID()

	for _, tc := range []struct {
		name, file string
		want       string
	}{
		{"a replayed older licence file", first.File, "this file is older than the one installed"},
		{"a file for another appliance", foreign.File, "this licence file is for appliance " + bDevice + ", this is " + a.lic.device.KeyID()},
		{"a usage report", func() string { f, _ := a.OfflineReport(ctx); return f.File }(), `this is a "PBX OFFLINE USAGE REPORT" block`},
		{"a file cut short", first.File[:len(first.File)/2], "stops before its END line"},
		{"a file altered", tamper(t, first.File), "offline licence file bad signature"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			before := a.Status()
			err := a.InstallLicenceFile(ctx, tc.file)
			var le *license.Error
			if !errors.As(err, &le) || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("got %v, want a refusal saying %q", err, tc.want)
			}
			if after := a.Status(); after.Offline.Horizon.Compare(*before.Offline.Horizon) != 0 || after.License.Revision != before.License.Revision {
				t.Fatal("a refused file changed what the appliance holds")
			}
		})
	}

	// The portal, for its part, refuses a report with a missing link.
	rep, err := a.OfflineReport(ctx)
	if err != nil {
		t.Fatal(err)
	}
	compact, _ := offline.Unarmour(rep.File, offline.KindReport)
	if _, err := r.admin.OfflineRenew(ctx, "other.example", compact); err == nil || !strings.Contains(err.Error(), "holds no PBX") {
		t.Fatalf("a report carried to another PBX's page: %v", err)
	}
}

// tamper changes the signed content of an armoured licence file: the
// horizon a year later, as an owner would want it.
func tamper(t *testing.T, armoured string) string {
	t.Helper()
	compact, err := offline.Unarmour(armoured, offline.KindLicence)
	if err != nil {
		t.Fatal(err)
	}
	parts := strings.Split(compact, ".")
	payload, err := base64.RawURLEncoding.DecodeString(parts[1])
	if err != nil {
		t.Fatal(err)
	}
	var f map[string]any
	if err := json.Unmarshal(payload, &f); err != nil {
		t.Fatal(err)
	}
	h, _ := time.Parse(time.RFC3339, f["horizon"].(string))
	f["horizon"] = h.AddDate(1, 0, 0)
	payload, _ = json.Marshal(f)
	parts[1] = base64.RawURLEncoding.EncodeToString(payload)
	return offline.Armour(offline.KindLicence, nil, strings.Join(parts, "."))
}

// A PBX moves between online and offline operation on one chain.
func TestOnlineThenAirGappedThenOnline(t *testing.T) {
	r := newRig(t)
	ctx := context.Background()
	key := r.createPBX(t, "acme.example", license.Counts{license.UCPremium: 10})
	a := r.newAgent(t)
	if err := a.Activate(ctx, key); err != nil {
		t.Fatal(err)
	}
	if err := a.heartbeat(ctx); err != nil {
		t.Fatal(err)
	}
	renewByFile(t, r, a, "acme.example")
	if s := a.Status(); s.Mode != apitype.ModeAirGapped {
		t.Fatalf("after a renewal by file: mode %q", s.Mode)
	}
	r.carry(t, time.Minute) // the next answer's signed time is after the file's
	if err := a.heartbeat(ctx); err != nil {
		t.Fatalf("a heartbeat after the file: %v", err)
	}
	s := a.Status()
	if s.Mode != "" || s.State != "active" {
		t.Fatalf("online again: mode %q, state %s", s.Mode, s.State)
	}
	if p, _ := r.admin.PBX(ctx, "acme.example"); p.ChainForks != 0 {
		t.Fatalf("moving between online and offline forked the chain %d times", p.ChainForks)
	}
}

// TestAirGappedActivationByQRCode: the short form of the request, as its
// QR code carries it, activates the PBX, and the short form of a usage
// report renews it; each written again has the same short form, and the
// portal answers the short form and the file of one with one file.
func TestAirGappedActivationByQRCode(t *testing.T) {
	r := airGapped(t)
	ctx := context.Background()
	key := r.createPBX(t, "air.example", license.Counts{license.UCPremium: 10})
	a := r.newAgent(t)

	req, err := a.OfflineRequest(ctx, key)
	if err != nil {
		t.Fatal(err)
	}
	if !offline.IsShortRequest(req.Short) || strings.Contains(req.Short, key) {
		t.Fatalf("short form %q: want a PBX-ACTIVATE: text without the key", req.Short)
	}
	again, err := a.OfflineRequest(ctx, key)
	if err != nil || again.Short != req.Short {
		t.Fatalf("the request written again has another short form:\n%s\n%s (%v)", req.Short, again.Short, err)
	}
	file, err := r.admin.OfflineActivate(ctx, "air.example", req.Short)
	if err != nil {
		t.Fatalf("the portal refused the short form: %v", err)
	}
	if err := a.InstallLicenceFile(ctx, file.File); err != nil {
		t.Fatal(err)
	}
	if s := a.Status(); s.State != "active" || s.Mode != apitype.ModeAirGapped {
		t.Fatalf("after activation by QR code: state %s, mode %q", s.State, s.Mode)
	}
	if byFile, err := r.admin.OfflineActivate(ctx, "air.example", req.File); err != nil || byFile.File != file.File {
		t.Fatalf("the file of the same request must get the same licence file: %v", err)
	}

	// Ten days on, a renewal by the usage report's QR code.
	r.carry(t, 10*24*time.Hour)
	rep, err := a.OfflineReport(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if again, err := a.OfflineReport(ctx); err != nil || !offline.IsShortReport(rep.Short) || again.Short != rep.Short {
		t.Fatalf("the report written again has another short form:\n%s\n%s (%v)", rep.Short, again.Short, err)
	}
	renewed, err := r.admin.OfflineRenew(ctx, "air.example", rep.Short)
	if err != nil {
		t.Fatalf("the portal refused the short report: %v", err)
	}
	if err := a.InstallLicenceFile(ctx, renewed.File); err != nil {
		t.Fatal(err)
	}
	if s := a.Status(); s.State != "active" || !s.Offline.Horizon.Equal(renewed.Horizon) || !renewed.Horizon.After(file.Horizon) {
		t.Fatalf("after renewal by QR code: state %s, offline %+v", s.State, s.Offline)
	}
	if byFile, err := r.admin.OfflineRenew(ctx, "air.example", rep.File); err != nil || byFile.File != renewed.File {
		t.Fatalf("the file of the same report must get the same licence file: %v", err)
	}
}

// TestAirGappedMakesNoHeartbeat: with no portal.url, a PBX activated by
// file has no portal to reach. Its heartbeat loop keeps the interval
// rather than backing off, logs no failure and counts none (a failing
// heartbeat would raise PBXHeartbeatFailing on every air-gapped PBX); a
// refresh asked for by hand says why.
func TestAirGappedMakesNoHeartbeat(t *testing.T) {
	r := airGapped(t)
	fake := clocktest.NewFake(r.time.wall, time.Hour)
	var logs logbuf.Buffer
	a, err := New(r.cfg, slog.New(slog.NewTextHandler(&logs, nil)), Options{Time: fake, Root: r.root})
	if err != nil {
		t.Fatal(err)
	}
	activateByFile(t, r, a, "air.example", r.createPBX(t, "air.example", license.Counts{license.UCPremium: 10}))
	for _, c := range []chan struct{}{a.hb.resched, a.hb.waitWake} { // as activatedOnFake
		select {
		case <-c:
		default:
		}
	}

	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	loopCtx, stop := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() { a.heartbeatLoop(loopCtx); close(done) }()
	defer func() { stop(); <-done }()
	step := func() time.Duration {
		t.Helper()
		if err := fake.WaitArmed(ctx, 1); err != nil {
			t.Fatalf("the heartbeat loop armed no timer: %v", err)
		}
		d, ok := fake.NextDue()
		if !ok {
			t.Fatal("no timer armed")
		}
		return d
	}
	interval := a.interval()
	lo, hi := interval-interval/10, interval+interval/10
	d := step()
	for n := 1; n <= 3; n++ {
		fake.Advance(d)
		if d = step(); !within(d, lo, hi) {
			t.Fatalf("heartbeat %d: next in %v, want the interval %v..%v, not a backoff", n, d, lo, hi)
		}
	}
	if s := a.Status(); s.Heartbeat.Failures != 0 || s.Heartbeat.LastError != "" {
		t.Errorf("the status shows heartbeat failures: %+v", s.Heartbeat)
	}
	if strings.Contains(logs.String(), "heartbeat failed") {
		t.Errorf("the log reports heartbeats failing:\n%s", logs.String())
	}
	body := scrape(t, a)
	for _, line := range []string{
		`pbx_agent_heartbeats_total{result="unreachable"} 0`,
		`pbx_license_air_gapped 1`,
	} {
		if !hasLine(body, line) {
			t.Errorf("no line %q in /metrics", line)
		}
	}

	err = a.Refresh(ctx)
	if !errors.Is(err, apitype.ErrUnreachable) || !strings.Contains(err.Error(), "pbx-agent report --offline") {
		t.Errorf("refresh of an air-gapped PBX: %v; want unreachable, saying to renew by file", err)
	}
}

package agent

import (
	"context"
	"fmt"
	"os"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/coreos/go-systemd/v22/daemon"
	"golang.org/x/sys/unix"

	"github.com/pbx-agent/pbx-agent/pkg/apitype"
	"github.com/pbx-agent/pbx-agent/pkg/license"
)

// statusEvery is how often the main loop looks whether the one-line status
// for systemd changed; it is sent only when it did.
const statusEvery = 5 * time.Second

// maxStatusLine bounds STATUS=: systemctl shows it on one line.
const maxStatusLine = 300

// notifier tells systemd how the daemon is doing. Outside systemd every
// call is a no-op: SdNotify reports (false, nil) when NOTIFY_SOCKET is unset.
type notifier struct {
	log interface{ Warn(string, ...any) }
}

// send sends one datagram of assignments, such as READY=1 and STATUS=...:
// systemd applies them together.
func (n notifier) send(assignments ...string) {
	msg := strings.Join(assignments, "\n")
	if _, err := daemon.SdNotify(false, msg); err != nil {
		n.log.Warn("sd_notify failed", "state", msg, "err", err)
	}
}

// reloading is what sd_notify(3) asks a daemon to send when it begins a
// reload: RELOADING=1 with the time on CLOCK_MONOTONIC, so systemd can tell
// this reload from an earlier one.
func reloading() []string {
	var ts unix.Timespec
	if err := unix.ClockGettime(unix.CLOCK_MONOTONIC, &ts); err != nil {
		return []string{daemon.SdNotifyReloading}
	}
	usec := ts.Sec*1_000_000 + ts.Nsec/1_000
	return []string{daemon.SdNotifyReloading, "MONOTONIC_USEC=" + strconv.FormatInt(usec, 10)}
}

// mainLoop is the daemon's main loop, between READY=1 and STOPPING=1: it
// alone talks to systemd. It reloads the configuration on SIGHUP, sends
// STATUS= when the summary changes, and pings the watchdog, each time only
// after the heartbeat loop and the lifecycle loop have both answered a
// probe: a stuck heartbeat loop, lifecycle loop or main loop stops the
// pings and lets systemd restart the daemon. Telephony calls run off the
// lifecycle loop's select, so a slow one does not. It returns when ctx ends.
func (a *Agent) mainLoop(ctx context.Context, n notifier, hup <-chan os.Signal, lp *loops) {
	lastStatus := a.statusLine()
	n.send(daemon.SdNotifyReady, "STATUS="+lastStatus)

	// The watchdog: a probe every third of WatchdogSec gives a busy loop
	// (a heartbeat exchange with the portal is bounded at 30 s) two chances
	// before systemd acts. Without a watchdog the ticker's channel
	// stays nil and never fires.
	var wdTick <-chan time.Time
	every, err := daemon.SdWatchdogEnabled(false)
	if err != nil {
		a.log.Warn("the watchdog settings from systemd are not understood; no pings", "err", err)
	}
	if every > 0 {
		t := a.clk.NewTicker(every / 3)
		defer t.Stop()
		wdTick = t.C()
	}
	watched := []watchedLoop{{"heartbeat", a.hb.probe}, {"lifecycle", a.lc.probe}}
	answered := make(chan string, len(watched)) // the loops that answered the probe in flight
	var (
		waiting []string      // the loops yet to answer the probe in flight
		asked   time.Duration // when it was asked, on the elapsed clock
	)
	statusTick := a.clk.NewTicker(statusEvery)
	defer statusTick.Stop()
	updateStatus := func() {
		if s := a.statusLine(); s != lastStatus {
			lastStatus = s
			n.send("STATUS=" + s)
		}
	}
	for {
		select {
		case <-ctx.Done():
			return
		case <-wdTick:
			if len(waiting) > 0 {
				a.log.Warn("loops have not answered the watchdog; systemd restarts the daemon if this lasts",
					"loops", strings.Join(waiting, ","), "waiting", (a.clk.Elapsed() - asked).Round(time.Millisecond), "watchdog", every)
				continue
			}
			asked = a.clk.Elapsed()
			for _, w := range watched {
				waiting = append(waiting, w.name)
				go w.ask(ctx, answered)
			}
		case name := <-answered:
			waiting = slices.DeleteFunc(waiting, func(s string) bool { return s == name })
			if len(waiting) == 0 {
				n.send(daemon.SdNotifyWatchdog)
			}
		case <-hup:
			n.send(reloading()...)
			a.reload(ctx, lp)
			lastStatus = a.statusLine()
			n.send(daemon.SdNotifyReady, "STATUS="+lastStatus)
		case <-statusTick.C():
			updateStatus()
		}
	}
}

// watchedLoop is a loop the watchdog proves alive: it answers a probe sent
// on its channel between its turns.
type watchedLoop struct {
	name  string
	probe chan chan struct{}
}

// ask sends the loop a probe and reports its name on answered once the loop
// answers; it gives up when ctx ends.
func (w watchedLoop) ask(ctx context.Context, answered chan<- string) {
	ack := make(chan struct{}, 1)
	select {
	case w.probe <- ack:
	case <-ctx.Done():
		return
	}
	select {
	case <-ack:
	case <-ctx.Done():
		return
	}
	answered <- w.name // buffered for every loop watched
}

// statusLine is the daemon's one-line status for systemd now.
func (a *Agent) statusLine() string {
	return statusLine(a.status(false))
}

// statusLine sums up a status on one line for `systemctl status`: the
// state, the users against the licences, what happens next (the phrase the
// CLI and the status page show too), and the last heartbeat or what is
// wrong. Its times are to the minute and its countdowns round as they get
// longer, so that it changes with the facts and not with every tick.
func statusLine(st apitype.Status) string {
	parts := []string{st.State}
	minute := func(t *time.Time) string { return t.UTC().Format("2006-01-02 15:04 UTC") }
	if l := st.License; l != nil {
		licensed, used := 0, 0
		for _, p := range l.Profiles {
			licensed += p.Licensed
			used += p.Used
		}
		if st.Users.CountedAt != nil {
			parts = append(parts, fmt.Sprintf("%d of %d users", used, licensed))
		} else {
			parts = append(parts, fmt.Sprintf("%d licences, users not counted yet", licensed))
		}
		if len(l.Overuse) > 0 {
			var ov []string
			for _, p := range license.Profiles() {
				if n := l.Overuse[string(p.ID)]; n > 0 {
					ov = append(ov, fmt.Sprintf("%s %d", p.Name, n))
				}
			}
			parts = append(parts, "over-use: "+strings.Join(ov, ", "))
		}
	}
	// Active needs no phrase on one line: the state says it, and the
	// room is kept for what is wrong (the line is cut at maxStatusLine).
	if st.Next != "" && license.State(st.State) != license.Active {
		parts = append(parts, st.Next)
	}
	hb := st.Heartbeat
	switch {
	case hb.LastError != "" && hb.LastSuccess != nil:
		parts = append(parts, "portal not reached since "+minute(hb.LastSuccess)+": "+hb.LastError)
	case hb.LastError != "":
		parts = append(parts, hb.LastError)
	case hb.LastSuccess != nil:
		parts = append(parts, "last heartbeat "+minute(hb.LastSuccess))
	}
	if st.Users.Error != "" {
		parts = append(parts, "counting users fails: "+st.Users.Error)
	}
	if c := st.Config; c != nil {
		if c.Error != "" {
			parts = append(parts, "config not reloaded: "+c.Error)
		}
		if len(c.RestartNeeded) > 0 {
			parts = append(parts, "restart to apply "+strings.Join(c.RestartNeeded, ", "))
		}
	}
	s := strings.Join(strings.Fields(strings.Join(parts, "; ")), " ") // one line
	if len(s) > maxStatusLine {
		s = strings.ToValidUTF8(s[:maxStatusLine-3], "") + "..."
	}
	return s
}

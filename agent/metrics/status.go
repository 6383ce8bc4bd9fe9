package metrics

import (
	"math"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/pbx-agent/pbx-agent/pkg/apitype"
	"github.com/pbx-agent/pbx-agent/pkg/license"
)

// Deadline kinds, the values of pbx_license_deadline_timestamp_seconds{kind}.
// lapse_grace is an addition to the contract's three: the lapse grace's
// end, when a lapsed (or suspended) PBX stops its telephony.
const (
	DeadlineStop         = "stop"
	DeadlineDelete       = "delete"
	DeadlineOfflineGrace = "offline_grace"
	DeadlineLapseGrace   = "lapse_grace"
)

// WMSUnknown is the version pbx_wms_version_info reports when no WMS is
// installed (or its version is not known yet).
const WMSUnknown = "unknown"

// statusCollector turns the agent's status snapshot into gauges at every
// scrape: one source of truth, nothing to keep in sync.
//
// A timestamp that does not apply (no deadline, a lifetime term, no
// heartbeat yet, SSH closed) is NaN: the series still exists from start-up,
// as the contract asks, and NaN fails every comparison, so an alert such as
// `deadline - time() < 3 * 86400` ignores it.
type statusCollector struct {
	status func() apitype.Status

	licensed, used, overuse *prometheus.Desc
	state                   *prometheus.Desc
	termEnd, deadline       *prometheus.Desc
	lastSuccess             *prometheus.Desc
	countSuccess, counting  *prometheus.Desc
	pbxInfo                 *prometheus.Desc
	sshOpen, sshUntil       *prometheus.Desc
	tunnelOpen, tunnelUp    *prometheus.Desc
	tunnelSessions          *prometheus.Desc
	wms                     *prometheus.Desc
	wmsLatest, wmsBehind    *prometheus.Desc
	airGapped, offlineDue   *prometheus.Desc
}

func newStatusCollector(status func() apitype.Status) *statusCollector {
	d := func(name, help string, labels ...string) *prometheus.Desc {
		return prometheus.NewDesc(name, help, labels, nil)
	}
	return &statusCollector{
		status:   status,
		licensed: d("pbx_license_users_licensed", "Users licensed per profile by the licence held; 0 without a licence.", "profile"),
		used:     d("pbx_license_users_used", "Users counted per profile on the PBX.", "profile"),
		overuse:  d("pbx_license_users_overuse", "Users beyond the licence per profile, after any cover by higher profiles; 0 when within it.", "profile"),
		state:    d("pbx_license_state", "The licence state: 1 for the current state, 0 for the others.", "state"),
		termEnd:  d("pbx_license_term_end_timestamp_seconds", "End of the licence's billing term (Unix time); NaN for a lifetime term or without a licence."),
		deadline: d("pbx_license_deadline_timestamp_seconds",
			"When the licence state changes by itself (Unix time): stop and delete of the zero-licence countdown, the end of the offline grace, the end of the lapse grace; NaN when it does not apply.", "kind"),
		lastSuccess: d("pbx_agent_heartbeat_last_success_timestamp_seconds", "Last heartbeat the portal answered (Unix time, licence clock); NaN before the first."),
		countSuccess: d("pbx_agent_users_count_last_success_timestamp_seconds",
			"Last good count of the PBX's users (Unix time, licence clock); NaN before the first."),
		counting: d("pbx_agent_users_count_failing",
			"1 while counting the PBX's users fails (the last count failed), else 0."),
		pbxInfo: d("pbx_pbx_info",
			"The PBX this agent holds the licence of, for joins on instance; always 1, empty labels before activation.",
			"pbx_id", "name", "model", "term"),
		sshOpen:  d("pbx_ssh_open", "1 while support SSH access is open, else 0."),
		sshUntil: d("pbx_ssh_open_until_timestamp_seconds", "When the open support SSH access closes by itself (Unix time); NaN when closed."),
		tunnelOpen: d("pbx_agent_ssh_tunnel_open",
			"1 while support SSH is open in tunnel mode (reached through the portal's tunnel), else 0."),
		tunnelUp: d("pbx_agent_ssh_tunnel_connected",
			"1 while the tunnel of a tunnel-mode access is connected to the portal, else 0 (0 with the access open: the agent is dialling again)."),
		tunnelSessions: d("pbx_agent_ssh_tunnel_sessions",
			"Support sessions open now through the portal's tunnel."),
		wms:       d("pbx_wms_version_info", `The installed WMS version ("unknown" when none); always 1.`, "version"),
		wmsLatest: d("pbx_wms_latest_info", `The latest stable WMS the configured repository offers, from apt's package lists ("unknown" when not read); always 1.`, "version"),
		wmsBehind: d("pbx_wms_behind", "1 when the installed WMS is older than the repository's latest stable one, 0 when not; NaN when either version is unknown."),
		airGapped: d("pbx_license_air_gapped",
			"1 while the licence held came in an offline licence file carried by hand and no portal answer came after it, else 0."),
		offlineDue: d("pbx_license_offline_file_due_timestamp_seconds",
			`When the next offline licence file is due (Unix time, licence clock); NaN unless air-gapped. The file's horizon is the deadline kind="offline_grace".`),
	}
}

func (c *statusCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{c.licensed, c.used, c.overuse, c.state, c.termEnd, c.deadline, c.lastSuccess, c.countSuccess, c.counting, c.pbxInfo, c.sshOpen, c.sshUntil, c.tunnelOpen, c.tunnelUp, c.tunnelSessions, c.wms, c.wmsLatest, c.wmsBehind, c.airGapped, c.offlineDue} {
		ch <- d
	}
}

func (c *statusCollector) Collect(ch chan<- prometheus.Metric) {
	s := c.status()
	gauge := func(d *prometheus.Desc, v float64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, v, labels...)
	}

	var profiles map[string]apitype.ProfileStatus
	var overuse map[string]int
	var termEnd *time.Time
	if s.License != nil {
		profiles, overuse, termEnd = s.License.Profiles, s.License.Overuse, s.License.TermEnd
	}
	for _, p := range license.Profiles() {
		id := string(p.ID)
		ps := profiles[id]
		gauge(c.licensed, float64(ps.Licensed), id)
		gauge(c.used, float64(ps.Used), id)
		gauge(c.overuse, float64(overuse[id]), id)
	}
	for _, st := range license.States() {
		gauge(c.state, boolValue(string(st) == s.State), string(st))
	}
	gauge(c.termEnd, timestamp(termEnd))
	gauge(c.deadline, timestamp(s.Deadlines.StopAt), DeadlineStop)
	gauge(c.deadline, timestamp(s.Deadlines.DeleteAt), DeadlineDelete)
	gauge(c.deadline, timestamp(s.Deadlines.OfflineGraceEnd), DeadlineOfflineGrace)
	gauge(c.deadline, timestamp(s.Deadlines.LapseGraceEnd), DeadlineLapseGrace)
	gauge(c.lastSuccess, timestamp(s.Heartbeat.LastSuccess))
	gauge(c.countSuccess, timestamp(s.Users.CountedAt))
	gauge(c.counting, boolValue(s.Users.Error != ""))
	var id, name, model, term string
	if s.PBX != nil {
		id, name, model = s.PBX.ID, s.PBX.Name, s.PBX.Model
	}
	if s.License != nil {
		term = s.License.Term
	}
	gauge(c.pbxInfo, 1, id, name, model, term)
	gauge(c.sshOpen, boolValue(s.SSH.Open))
	var until *time.Time
	if s.SSH.Open {
		until = s.SSH.Until
	}
	gauge(c.sshUntil, timestamp(until))
	var tun apitype.SSHTunnelStatus
	if s.SSH.Open && s.SSH.Tunnel != nil {
		tun = *s.SSH.Tunnel
	}
	gauge(c.tunnelOpen, boolValue(tun.Open))
	gauge(c.tunnelUp, boolValue(tun.Connected))
	gauge(c.tunnelSessions, float64(tun.Sessions))
	version := s.WMS.Version
	if version == "" {
		version = WMSUnknown
	}
	gauge(c.wms, 1, version)
	latest := s.WMS.Latest
	if latest == "" {
		latest = WMSUnknown
	}
	gauge(c.wmsLatest, 1, latest)
	behind := math.NaN()
	if s.WMS.Version != "" && s.WMS.Latest != "" {
		behind = boolValue(s.WMS.Behind)
	}
	gauge(c.wmsBehind, behind)
	airGapped := s.Mode == apitype.ModeAirGapped
	var due *time.Time
	if airGapped && s.Offline != nil {
		due = s.Offline.NextDue
	}
	gauge(c.airGapped, boolValue(airGapped))
	gauge(c.offlineDue, timestamp(due))
}

// timestamp is t in Unix seconds, or NaN when t does not apply.
func timestamp(t *time.Time) float64 {
	if t == nil || t.IsZero() {
		return math.NaN()
	}
	return float64(t.Unix()) + float64(t.Nanosecond())/1e9
}

func boolValue(b bool) float64 {
	if b {
		return 1
	}
	return 0
}

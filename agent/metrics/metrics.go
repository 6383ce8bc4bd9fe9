// Package metrics is the agent's Prometheus metrics (DESIGN.md section 4):
// a registry of its own with the standard process and Go collectors, a
// collector that reads the agent's status snapshot at every scrape for the
// gauges, and the counters and histogram the agent updates as things
// happen. docs/metrics.md describes every series.
package metrics

import (
	"log/slog"
	"net/http"
	"slices"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/pbx-agent/pbx-agent/pkg/apitype"
	"github.com/pbx-agent/pbx-agent/pkg/buildinfo"
	"github.com/pbx-agent/pbx-agent/pkg/license"
)

// Results of a heartbeat, the values of pbx_agent_heartbeats_total{result}.
const (
	// HeartbeatSuccess: the portal answered and the answer was accepted.
	HeartbeatSuccess = "success"
	// HeartbeatUnreachable: the portal was not reached (network, timeout,
	// or the agent lacks the configuration to reach it).
	HeartbeatUnreachable = "unreachable"
	// HeartbeatRefused: the portal answered with an error status
	// (including 429 and 503).
	HeartbeatRefused = "refused"
	// HeartbeatInvalid: an answer the agent could not accept (bad
	// signature, wrong nonce, unexpected content).
	HeartbeatInvalid = "invalid"
	// HeartbeatGone: the portal's signed answer that this appliance no
	// longer holds the PBX.
	HeartbeatGone = "gone"
)

// Results of a count of the PBX's users, the values of
// pbx_agent_users_counts_total{result}.
const (
	CountSuccess = "success"
	CountFailed  = "failed"
)

// Admission decisions, the values of
// pbx_agent_admission_decisions_total{decision}.
const (
	DecisionAllowed = "allowed"
	DecisionDenied  = "denied"
)

// Portal command types and results, the values of
// pbx_agent_commands_total{type,result}.
const (
	// CommandSuccess: the command was applied.
	CommandSuccess = "success"
	// CommandFailed: applying it failed (a WMS upgrade rolled back, sshd
	// did not start).
	CommandFailed = "failed"
	// CommandRefused: the agent would not apply it (expired, not for this
	// PBX, a new major WMS version on a lifetime licence).
	CommandRefused = "refused"
)

// The label values each labelled series is pre-initialised with, so every
// series exists from start-up. Values outside these sets are not counted:
// the label sets stay bounded whatever a caller passes.
var (
	heartbeatResults = []string{HeartbeatSuccess, HeartbeatUnreachable, HeartbeatRefused, HeartbeatInvalid, HeartbeatGone}
	countResults     = []string{CountSuccess, CountFailed}
	decisions        = []string{DecisionAllowed, DecisionDenied}
	commandResults   = []string{CommandSuccess, CommandFailed, CommandRefused}
)

// heartbeatBuckets spans a loopback portal (milliseconds) to the 30 s bound
// of one exchange.
var heartbeatBuckets = []float64{0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30}

// DefaultMaxScrapes is how many scrapes may run at once; more are answered
// 503 at once rather than queued.
const DefaultMaxScrapes = 4

// Config configures New.
type Config struct {
	// Status returns the agent's snapshot; the gauges are read from it at
	// every scrape. It must not block on the portal.
	Status func() apitype.Status
	Build  buildinfo.Info
	Logger *slog.Logger // nil discards
	// MaxScrapes caps concurrent scrapes; 0 means DefaultMaxScrapes.
	MaxScrapes int
	// CommandTypes are the portal command types the agent runs, from its
	// executor table: the values of pbx_agent_commands_total's type.
	CommandTypes []string
	// Started is when the process started (wall clock), the value of
	// pbx_agent_start_time_seconds; the zero time leaves the series out.
	Started time.Time
}

// Metrics is the agent's registry and the series it updates at events. Its
// methods are safe for concurrent use, and on a nil *Metrics they do
// nothing, so code under test may run without metrics.
type Metrics struct {
	reg     *prometheus.Registry
	handler http.Handler
	log     *slog.Logger

	heartbeats        *prometheus.CounterVec
	heartbeatDuration prometheus.Histogram
	userCounts        *prometheus.CounterVec
	admission         *prometheus.CounterVec
	admitted          map[decisionKey]prometheus.Counter // admission's series, looked up once at start
	commands          *prometheus.CounterVec
	commandTypes      []string
	tunnelSessions    prometheus.Counter
	tunnelBytes       *prometheus.CounterVec
	tunnelRefused     prometheus.Counter
}

// Directions of pbx_agent_ssh_tunnel_bytes_total{direction}.
const (
	TunnelToSSHD   = "to_sshd"   // from support, through the portal, to the sshd
	TunnelToPortal = "to_portal" // from the sshd back to support
)

// New builds the registry: the status collector, the event series with
// every label value at zero, pbx_agent_build_info, and the process and Go
// collectors.
func New(cfg Config) *Metrics {
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	m := &Metrics{
		reg:          prometheus.NewRegistry(),
		log:          log,
		commandTypes: cfg.CommandTypes,
		heartbeats: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "pbx_agent_heartbeats_total",
			Help: "Heartbeats to the portal by result: success, unreachable, refused, invalid or gone.",
		}, []string{"result"}),
		heartbeatDuration: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "pbx_agent_heartbeat_duration_seconds",
			Help:    "Time of each heartbeat's exchange with the portal, whatever its result.",
			Buckets: heartbeatBuckets,
		}),
		userCounts: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "pbx_agent_users_counts_total",
			Help: "Counts of the PBX's users from users.source, by result (success or failed).",
		}, []string{"result"}),
		admission: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "pbx_agent_admission_decisions_total",
			Help: "Admission answers by profile and decision (allowed or denied).",
		}, []string{"profile", "decision"}),
		commands: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "pbx_agent_commands_total",
			Help: "Portal commands handled, by type and result (success, failed or refused).",
		}, []string{"type", "result"}),
		tunnelSessions: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "pbx_agent_ssh_tunnel_sessions_total",
			Help: "Support sessions relayed through the portal's tunnel (tunnel mode), each a stream to the loopback sshd.",
		}),
		tunnelBytes: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "pbx_agent_ssh_tunnel_bytes_total",
			Help: "Bytes of finished support sessions through the tunnel, by direction: to_sshd (from support) or to_portal.",
		}, []string{"direction"}),
		tunnelRefused: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "pbx_agent_ssh_tunnel_streams_refused_total",
			Help: "Streams the portal opened through the tunnel that the agent refused (over the cap of concurrent sessions).",
		}),
	}
	for _, d := range []string{TunnelToSSHD, TunnelToPortal} {
		m.tunnelBytes.WithLabelValues(d)
	}
	for _, r := range heartbeatResults {
		m.heartbeats.WithLabelValues(r)
	}
	for _, r := range countResults {
		m.userCounts.WithLabelValues(r)
	}
	m.admitted = map[decisionKey]prometheus.Counter{}
	for _, p := range license.Profiles() {
		for _, d := range decisions {
			m.admitted[decisionKey{string(p.ID), d}] = m.admission.WithLabelValues(string(p.ID), d)
		}
	}
	for _, typ := range cfg.CommandTypes {
		for _, r := range commandResults {
			m.commands.WithLabelValues(typ, r)
		}
	}
	build := prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Name: "pbx_agent_build_info",
		Help: "The running build of pbx-agent; always 1.",
	}, []string{"version", "revision", "goversion"})
	build.WithLabelValues(cfg.Build.Version, cfg.Build.Revision, cfg.Build.GoVersion).Set(1)

	m.reg.MustRegister(
		newStatusCollector(cfg.Status),
		m.heartbeats, m.heartbeatDuration, m.userCounts, m.admission, m.commands, build,
		m.tunnelSessions, m.tunnelBytes, m.tunnelRefused,
		// Under the unit's ProcSubset=pid /proc/stat is hidden: the
		// process collector leaves process_start_time_seconds out
		// without failing the scrape (ReportErrors false), and
		// pbx_agent_start_time_seconds below stands in for it.
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
		// The classic go_* series, not the full runtime/metrics set.
		collectors.NewGoCollector(),
	)

	if !cfg.Started.IsZero() {
		start := prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "pbx_agent_start_time_seconds",
			Help: "When the agent's process started (Unix time, the machine's clock); read without /proc/stat.",
		})
		start.Set(float64(cfg.Started.UnixNano()) / 1e9)
		m.reg.MustRegister(start)
	}

	maxScrapes := cfg.MaxScrapes
	if maxScrapes <= 0 {
		maxScrapes = DefaultMaxScrapes
	}
	h := promhttp.HandlerFor(m.reg, promhttp.HandlerOpts{
		ErrorLog:            slog.NewLogLogger(log.Handler(), slog.LevelError),
		ErrorHandling:       promhttp.ContinueOnError,
		MaxRequestsInFlight: maxScrapes,
		Registry:            m.reg, // promhttp_metric_handler_errors_total
	})
	m.handler = promhttp.InstrumentMetricHandler(m.reg, h)
	return m
}

// Handler serves the registry in the Prometheus text format (or
// OpenMetrics when asked), at most MaxScrapes at once.
func (m *Metrics) Handler() http.Handler { return m.handler }

// Gatherer is the registry, for tests and tools that read it directly.
func (m *Metrics) Gatherer() prometheus.Gatherer { return m.reg }

// Heartbeat counts one heartbeat with its result (one of the Heartbeat*
// constants) and observes took, the time of its exchange with the portal.
// A heartbeat that never reached the network (the portal not configured)
// passes took 0, which is not observed.
func (m *Metrics) Heartbeat(result string, took time.Duration) {
	if m == nil || !m.known("heartbeat result", result, heartbeatResults) {
		return
	}
	m.heartbeats.WithLabelValues(result).Inc()
	if took > 0 {
		m.heartbeatDuration.Observe(took.Seconds())
	}
}

// UsersCount counts one count of the PBX's users: result CountSuccess or
// CountFailed.
func (m *Metrics) UsersCount(result string) {
	if m == nil || !m.known("users count result", result, countResults) {
		return
	}
	m.userCounts.WithLabelValues(result).Inc()
}

// AdmissionDecision counts one admission answer: profile is a profile id
// ("uc-premium"), decision DecisionAllowed or DecisionDenied. Requests
// refused as malformed (an unknown profile) are not decisions and are not
// counted.
func (m *Metrics) AdmissionDecision(profile, decision string) {
	if m == nil {
		return
	}
	// Every admission passes here: its counter was looked up at start.
	c, ok := m.admitted[decisionKey{profile, decision}]
	if !ok {
		// Not a pre-initialised pair: a caller's bug, which known names.
		if m.known("admission profile", profile, profileIDs()) {
			m.known("admission decision", decision, decisions)
		}
		return
	}
	c.Inc()
}

// decisionKey is the labels of one admission series.
type decisionKey struct{ profile, decision string }

// Command counts one portal command handled: typ is one of the Command*
// types ("wms.upgrade"), result CommandSuccess, CommandFailed or
// CommandRefused.
func (m *Metrics) Command(typ, result string) {
	if m == nil || !m.known("command type", typ, m.commandTypes) || !m.known("command result", result, commandResults) {
		return
	}
	m.commands.WithLabelValues(typ, result).Inc()
}

// TunnelSession counts a support session started through the tunnel.
func (m *Metrics) TunnelSession() {
	if m == nil {
		return
	}
	m.tunnelSessions.Inc()
}

// TunnelBytes counts a finished session's bytes: toSSHD from support,
// toPortal back.
func (m *Metrics) TunnelBytes(toSSHD, toPortal int64) {
	if m == nil {
		return
	}
	m.tunnelBytes.WithLabelValues(TunnelToSSHD).Add(float64(max(toSSHD, 0)))
	m.tunnelBytes.WithLabelValues(TunnelToPortal).Add(float64(max(toPortal, 0)))
}

// TunnelRefused counts a stream the agent refused.
func (m *Metrics) TunnelRefused() {
	if m == nil {
		return
	}
	m.tunnelRefused.Inc()
}

// known reports whether v is one of the label values the series was
// pre-initialised with; another is a caller's bug, logged and not counted.
func (m *Metrics) known(what, v string, values []string) bool {
	if slices.Contains(values, v) {
		return true
	}
	m.log.Warn("metrics: unknown label value not counted (a bug)", "label", what, "value", v, "known", values)
	return false
}

func profileIDs() []string {
	ps := license.Profiles()
	ids := make([]string, len(ps))
	for i, p := range ps {
		ids[i] = string(p.ID)
	}
	return ids
}

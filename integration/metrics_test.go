package integration

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"io"
	"math"
	"math/big"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"golang.org/x/crypto/bcrypt"
)

// scrapeUser and scrapePassword are the basic auth of the remote metrics
// listener in these tests.
const (
	scrapeUser     = "prometheus"
	scrapePassword = "correct horse battery staple"
)

// webConfig is an exporter-toolkit web configuration with a self-signed
// certificate for 127.0.0.1 and one bcrypt-hashed user, written for a test.
type webConfig struct {
	path   string // the web configuration file
	caFile string // the certificate, which is its own CA
	pool   *x509.CertPool
}

func newWebConfig(t *testing.T) webConfig {
	t.Helper()
	dir := t.TempDir()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(now.UnixNano()),
		Subject:               pkix.Name{CommonName: "pbx-agent test"},
		NotBefore:             now.Add(-time.Hour),
		NotAfter:              now.Add(24 * time.Hour),
		IsCA:                  true,
		BasicConstraintsValid: true,
		KeyUsage:              x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		IPAddresses:           []net.IP{net.ParseIP("127.0.0.1")},
		DNSNames:              []string{"localhost"},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	keyDER, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	wc := webConfig{path: filepath.Join(dir, "web-config.yml"), caFile: filepath.Join(dir, "cert.pem"), pool: x509.NewCertPool()}
	certPEM := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
	wc.pool.AppendCertsFromPEM(certPEM)
	keyFile := filepath.Join(dir, "key.pem")
	// The lowest cost keeps the test fast; production hashes use the default.
	hash, err := bcrypt.GenerateFromPassword([]byte(scrapePassword), bcrypt.MinCost)
	if err != nil {
		t.Fatal(err)
	}
	cfg := fmt.Sprintf("tls_server_config:\n  cert_file: %s\n  key_file: %s\nbasic_auth_users:\n  %s: %s\n",
		wc.caFile, keyFile, scrapeUser, hash)
	for name, b := range map[string][]byte{
		wc.caFile: certPEM, keyFile: pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: keyDER}), wc.path: []byte(cfg),
	} {
		if err := os.WriteFile(name, b, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	return wc
}

// startWith starts the agent with extra flags for `run`.
func (a *appliance) startWith(extra ...string) {
	a.t.Helper()
	a.proc = start(a.t, "pbx-agent", append([]string{"--config", a.config, "run", "--log-level", "debug"}, extra...)...)
	a.waitUp(a.cli)
}

var listenHTTPRE = regexp.MustCompile(`(?m)^  http: (\S+)$`)

// httpAddr is the agent's read-only local listener (listen.http).
func (a *appliance) httpAddr() string {
	a.t.Helper()
	b, err := os.ReadFile(a.config)
	if err != nil {
		a.t.Fatal(err)
	}
	m := listenHTTPRE.FindSubmatch(b)
	if m == nil {
		a.t.Fatalf("no listen.http in %s", a.config)
	}
	return string(m[1])
}

func get(t *testing.T, client *http.Client, rawURL, user, password string) (int, string) {
	t.Helper()
	req, err := http.NewRequest("GET", rawURL, nil)
	if err != nil {
		t.Fatal(err)
	}
	if user != "" {
		req.SetBasicAuth(user, password)
	}
	resp, err := client.Do(req)
	if err != nil {
		t.Fatalf("GET %s: %v", rawURL, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp.StatusCode, string(b)
}

// activatedAgent starts a portal and an agent with a PBX of known counts
// (uc-premium=10, pbx-basic=3, uc-wizyconf=1), activated; extra are flags
// for `run`.
func activatedAgent(t *testing.T, extra ...string) *appliance {
	t.Helper()
	p := startPortal(t, t.TempDir(), freeAddr(t), "--interval", "1s")
	key := p.admin("pbx", "create", "--name", "metrics.example", "--model", "WPBX-VM", "--term", "monthly",
		"--users", "uc-premium=10", "--users", "pbx-basic=3", "--users", "uc-wizyconf=1")
	a := newAppliance(t, "metrics", p, "500ms")
	// Users counted from a source that works: a healthy PBX raises no alert.
	f, err := os.OpenFile(a.config, os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	fmt.Fprintf(f, "users:\n  source: command\n  command:\n    argv: [\"/bin/echo\", '{\"profiles\": {\"uc-premium\": 4}}']\n")
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	a.startWith(extra...)
	if r := a.cli(key, "activate"); r.code != 0 {
		t.Fatalf("activate: exit %d: %s", r.code, r.stderr)
	}
	a.waitState("active", 5*time.Second)
	return a
}

// TestMetricsOverTLSWithBasicAuth scrapes the remote metrics listener of
// --web.listen-address through the web configuration of --web.config.file:
// TLS with a certificate the client trusts, and basic auth, refused
// without the password. The local listener keeps serving plain metrics.
func TestMetricsOverTLSWithBasicAuth(t *testing.T) {
	wc := newWebConfig(t)
	remote := freeAddr(t)
	a := activatedAgent(t, "--web.listen-address", remote, "--web.config.file", wc.path)
	trusting := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: wc.pool}}}
	metricsURL := "https://" + remote + "/metrics"

	t.Run("with the password", func(t *testing.T) {
		code, body := get(t, trusting, metricsURL, scrapeUser, scrapePassword)
		if code != http.StatusOK {
			t.Fatalf("GET %s: %d %s", metricsURL, code, body)
		}
		for _, line := range []string{`pbx_license_users_licensed{profile="uc-premium"} 10`, `pbx_license_state{state="active"} 1`} {
			if !strings.Contains(body, "\n"+line+"\n") {
				t.Errorf("no line %q", line)
			}
		}
	})
	t.Run("refused without the password", func(t *testing.T) {
		for _, c := range []struct{ name, user, password string }{
			{"no credentials", "", ""},
			{"wrong password", scrapeUser, "Tr0ub4dor&3"},
			{"unknown user", "mallory", scrapePassword},
		} {
			code, body := get(t, trusting, metricsURL, c.user, c.password)
			if code != http.StatusUnauthorized || strings.Contains(body, "pbx_") {
				t.Errorf("%s: %d %q, want 401 and no metrics", c.name, code, body)
			}
		}
	})
	t.Run("TLS only", func(t *testing.T) {
		plain := &http.Client{Timeout: 10 * time.Second}
		if code, body := get(t, plain, "http://"+remote+"/metrics", scrapeUser, scrapePassword); code != http.StatusBadRequest || strings.Contains(body, "pbx_") {
			t.Errorf("plain HTTP to the TLS listener: %d %q, want 400", code, body)
		}
		if _, err := plain.Get(metricsURL); err == nil || !strings.Contains(err.Error(), "certificate") {
			t.Errorf("a client that does not trust the certificate: %v, want a certificate error", err)
		}
	})
	t.Run("metrics alone", func(t *testing.T) {
		if code, _ := get(t, trusting, "https://"+remote+"/v1/status", scrapeUser, scrapePassword); code != http.StatusNotFound {
			t.Errorf("GET /v1/status on the metrics listener: %d, want 404", code)
		}
	})
	t.Run("the local listener is unchanged", func(t *testing.T) {
		code, body := get(t, &http.Client{Timeout: 10 * time.Second}, "http://"+a.httpAddr()+"/metrics", "", "")
		if code != http.StatusOK || !strings.Contains(body, `pbx_license_users_licensed{profile="uc-premium"} 10`) {
			t.Errorf("GET /metrics on listen.http: %d", code)
		}
	})
	t.Run("a broken web configuration stops the start", func(t *testing.T) {
		broken := filepath.Join(t.TempDir(), "web-config.yml")
		if err := os.WriteFile(broken, []byte("tls_server_config:\n  cert_file: /nonexistent/cert.pem\n  key_file: /nonexistent/key.pem\n"), 0o600); err != nil {
			t.Fatal(err)
		}
		other := newAppliance(t, "broken", &portal{t: t, addr: "127.0.0.1:1", data: t.TempDir()}, "1s")
		r := other.cli("", "run", "--web.listen-address", freeAddr(t), "--web.config.file", broken)
		if r.code == 0 || !strings.Contains(r.stderr, "metrics.web_config_file") {
			t.Errorf("run with a broken web configuration: exit %d, stderr %q; want a failure naming metrics.web_config_file", r.code, r.stderr)
		}
	})
}

// prometheusBin finds Debian's prometheus server. Without it the test
// skips, except in CI (CI=true), where .ci/run installs it.
func prometheusBin(t *testing.T) string {
	t.Helper()
	bin, err := exec.LookPath("prometheus")
	if err == nil {
		return bin
	}
	if os.Getenv("CI") == "true" {
		t.Fatalf("prometheus not found in CI (.ci/run installs Debian's prometheus package): %v", err)
	}
	t.Skip("prometheus is not installed: apt-get install --no-install-recommends prometheus (Debian's package) to run this test; CI always runs it")
	return ""
}

// promServer is a Prometheus server of the test's own, on loopback.
type promServer struct {
	t    *testing.T
	base string
}

// query runs an instant query through the HTTP API and returns the
// vector's samples keyed by their labels (name=value pairs, sorted, as
// "{a=x,b=y}").
func (p *promServer) query(q string) (map[string]string, error) {
	resp, err := http.Get(p.base + "/api/v1/query?query=" + url.QueryEscape(q))
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	var out struct {
		Status string `json:"status"`
		Error  string `json:"error"`
		Data   struct {
			ResultType string `json:"resultType"`
			Result     []struct {
				Metric map[string]string `json:"metric"`
				Value  [2]any            `json:"value"`
			} `json:"result"`
		} `json:"data"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&out); err != nil {
		return nil, err
	}
	if out.Status != "success" || out.Data.ResultType != "vector" {
		return nil, fmt.Errorf("query %s: %s %s (%s)", q, out.Status, out.Error, out.Data.ResultType)
	}
	samples := map[string]string{}
	for _, r := range out.Data.Result {
		var keys []string
		for k, v := range r.Metric {
			if k != "__name__" && k != "instance" {
				keys = append(keys, k+"="+v)
			}
		}
		slices.Sort(keys)
		v, _ := r.Value[1].(string)
		samples["{"+strings.Join(keys, ",")+"}"] = v
	}
	return samples, nil
}

// value runs q, which must yield one sample, and returns it.
func (p *promServer) value(q string) (float64, error) {
	s, err := p.query(q)
	if err != nil {
		return 0, err
	}
	if len(s) != 1 {
		return 0, fmt.Errorf("query %s: %d samples, want 1: %v", q, len(s), s)
	}
	for _, v := range s {
		return strconv.ParseFloat(v, 64)
	}
	return 0, nil
}

// TestPrometheusScrapesTheAgent runs Debian's prometheus on loopback with
// a configuration of its own: it scrapes an activated agent on its local
// listener (job pbx-agent) and on its remote listener through TLS and
// basic auth (job pbx-agent-tls), evaluates the shipped alert rules, and
// is queried through its HTTP API for what a fleet dashboard reads.
func TestPrometheusScrapesTheAgent(t *testing.T) {
	bin := prometheusBin(t)
	wc := newWebConfig(t)
	remote := freeAddr(t)
	a := activatedAgent(t, "--web.listen-address", remote, "--web.config.file", wc.path)
	local := a.httpAddr()

	if promtool, err := exec.LookPath("promtool"); err == nil {
		code, body := get(t, &http.Client{Timeout: 10 * time.Second}, "http://"+local+"/metrics", "", "")
		cmd := exec.Command(promtool, "check", "metrics")
		cmd.Stdin = strings.NewReader(body)
		if out, err := cmd.CombinedOutput(); code != 200 || err != nil {
			t.Errorf("promtool check metrics on the agent's output (%d): %v\n%s", code, err, out)
		}
	}

	dir := t.TempDir()
	rules, err := filepath.Abs("../packaging/prometheus/pbx-agent.rules.yml")
	if err != nil {
		t.Fatal(err)
	}
	cfg := fmt.Sprintf(`global:
  scrape_interval: 1s
  scrape_timeout: 1s
  evaluation_interval: 1s
rule_files:
  - %s
scrape_configs:
  - job_name: pbx-agent
    static_configs:
      - targets: ['%s']
  - job_name: pbx-agent-tls
    scheme: https
    tls_config:
      ca_file: %s
    basic_auth:
      username: %s
      password: %q
    static_configs:
      - targets: ['%s']
`, rules, local, wc.caFile, scrapeUser, scrapePassword, remote)
	if err := os.WriteFile(filepath.Join(dir, "prometheus.yml"), []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	listen := freeAddr(t)
	promProc := &proc{name: "prometheus", done: make(chan struct{})}
	promProc.cmd = exec.Command(bin, "--config.file", filepath.Join(dir, "prometheus.yml"),
		"--storage.tsdb.path", filepath.Join(dir, "data"), "--web.listen-address", listen)
	promProc.cmd.Stderr = promProc
	if err := promProc.cmd.Start(); err != nil {
		t.Fatalf("starting prometheus: %v", err)
	}
	go func() { promProc.cmd.Wait(); close(promProc.done) }()
	t.Cleanup(func() {
		promProc.stop(t)
		if t.Failed() {
			t.Logf("prometheus stderr:\n%s", promProc.logs())
		}
	})
	p := &promServer{t: t, base: "http://" + listen}

	for _, job := range []string{"pbx-agent", "pbx-agent-tls"} {
		eventually(t, 30*time.Second, "up{job="+job+"} == 1", func() (bool, string) {
			v, err := p.value(`up{job="` + job + `"}`)
			if err != nil {
				return false, err.Error()
			}
			return v == 1, fmt.Sprint("up = ", v)
		})
	}

	st := a.status()
	// The counts of the PBX made on the simulator, through both jobs.
	for _, job := range []string{"pbx-agent", "pbx-agent-tls"} {
		want := map[string]string{}
		for profile, n := range map[string]string{"uc-premium": "10", "pbx-basic": "3", "uc-wizyconf": "1",
			"uc-essential": "0", "uc-business": "0", "pbx-service": "0"} {
			want["{job="+job+",profile="+profile+"}"] = n
		}
		got, err := p.query(`pbx_license_users_licensed{job="` + job + `"}`)
		if err != nil {
			t.Fatal(err)
		}
		if fmt.Sprint(got) != fmt.Sprint(want) {
			t.Errorf("pbx_license_users_licensed{job=%q}:\n got %v\nwant %v", job, got, want)
		}
	}
	for q, want := range map[string]float64{
		`pbx_license_state{job="pbx-agent",state="active"}`:              1,
		`sum(pbx_license_state{job="pbx-agent"})`:                        1,
		`pbx_license_state{job="pbx-agent",state="unactivated"}`:         0,
		`count(pbx_license_users_used{job="pbx-agent"})`:                 6,
		`count(pbx_license_state{job="pbx-agent"})`:                      7,
		`count(pbx_agent_admission_decisions_total{job="pbx-agent"})`:    12,
		`pbx_ssh_open{job="pbx-agent"}`:                                  0,
		`count(pbx_wms_version_info{job="pbx-agent",version="unknown"})`: 1,
		`count(pbx_agent_build_info{job="pbx-agent"})`:                   1,
		`pbx_license_term_end_timestamp_seconds{job="pbx-agent"}`:        float64(st.License.TermEnd.Unix()),
	} {
		v, err := p.value(q)
		if err != nil {
			t.Error(err)
		} else if v != want {
			t.Errorf("%s = %v, want %v", q, v, want)
		}
	}
	if v, err := p.value(`pbx_license_deadline_timestamp_seconds{job="pbx-agent",kind="stop"}`); err != nil || !math.IsNaN(v) {
		t.Errorf("the stop deadline of an active PBX: %v %v, want NaN", v, err)
	}
	// The offline grace (30 days by default) runs from the last heartbeat.
	if v, err := p.value(`(pbx_license_deadline_timestamp_seconds{job="pbx-agent",kind="offline_grace"} - time()) / 86400`); err != nil || v < 29.9 || v > 30.1 {
		t.Errorf("days to the offline grace's end: %v %v, want 30", v, err)
	}
	eventually(t, 10*time.Second, "heartbeats counted", func() (bool, string) {
		v, err := p.value(`pbx_agent_heartbeats_total{job="pbx-agent",result="success"}`)
		return err == nil && v > 0, fmt.Sprint(v, err)
	})

	// The shipped rules load, evaluate cleanly, and nothing fires for a
	// healthy, active PBX.
	eventually(t, 15*time.Second, "the alert rules evaluated", func() (bool, string) {
		resp, err := http.Get(p.base + "/api/v1/rules")
		if err != nil {
			return false, err.Error()
		}
		defer resp.Body.Close()
		var out struct {
			Data struct {
				Groups []struct {
					Rules []struct {
						Name           string `json:"name"`
						Health         string `json:"health"`
						LastError      string `json:"lastError"`
						LastEvaluation string `json:"lastEvaluation"`
					} `json:"rules"`
				} `json:"groups"`
			} `json:"data"`
		}
		if err := json.NewDecoder(resp.Body).Decode(&out); err != nil {
			return false, err.Error()
		}
		n := 0
		for _, g := range out.Data.Groups {
			for _, r := range g.Rules {
				if r.Health != "ok" || strings.HasPrefix(r.LastEvaluation, "0001") {
					return false, fmt.Sprintf("%s: health %q %s", r.Name, r.Health, r.LastError)
				}
				n++
			}
		}
		return n >= 9, fmt.Sprintf("%d rules", n)
	})
	// An evaluation before the first scrape may have seen no target
	// (PBXAgentAbsent pending): the next ones clear it.
	eventually(t, 10*time.Second, "no alert for a healthy, active PBX", func() (bool, string) {
		alerts, err := p.query(`ALERTS`)
		return err == nil && len(alerts) == 0, fmt.Sprint(alerts, err)
	})
}

package metrics

import (
	"encoding/json"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"

	dto "github.com/prometheus/client_model/go"
	"go.yaml.in/yaml/v3"
)

// selector is a metric name an expression selects, with its label matchers.
type selector struct {
	name     string
	matchers []matcher
}

type matcher struct {
	label, op, value string
}

// promqlSelectors returns the vector selectors of a PromQL expression: the
// names that are neither functions, aggregations, keywords nor labels of
// by/without/on/ignoring/group_* lists, with their {matchers}. It is a
// scanner, not a parser: enough for the expressions this project ships,
// and it fails loudly (an error names the expression) on what it cannot
// read.
func promqlSelectors(expr string) ([]selector, error) {
	var out []selector
	isIdentStart := func(c byte) bool { return c == '_' || c == ':' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' }
	isIdent := func(c byte) bool { return isIdentStart(c) || c >= '0' && c <= '9' }
	skipSpace := func(i int) int {
		for i < len(expr) && strings.ContainsRune(" \t\r\n", rune(expr[i])) {
			i++
		}
		return i
	}
	// closing returns the index just past the closer of the bracket that
	// opens at i, skipping strings.
	closing := func(i int, open, close byte) (int, error) {
		depth := 0
		for j := i; j < len(expr); j++ {
			switch c := expr[j]; c {
			case '"', '\'', '`':
				k := strings.IndexByte(expr[j+1:], c)
				if k < 0 {
					return 0, errUnclosed(expr)
				}
				j += k + 1
			case open:
				depth++
			case close:
				depth--
				if depth == 0 {
					return j + 1, nil
				}
			}
		}
		return 0, errUnclosed(expr)
	}
	keywords := map[string]bool{"and": true, "or": true, "unless": true, "bool": true, "offset": true, "inf": true, "nan": true}
	grouping := map[string]bool{"by": true, "without": true, "on": true, "ignoring": true, "group_left": true, "group_right": true}

	for i := 0; i < len(expr); {
		c := expr[i]
		switch {
		case c == '"' || c == '\'' || c == '`':
			k := strings.IndexByte(expr[i+1:], c)
			if k < 0 {
				return nil, errUnclosed(expr)
			}
			i += k + 2
		case c == '[':
			j, err := closing(i, '[', ']')
			if err != nil {
				return nil, err
			}
			i = j
		case c == '{':
			// Matchers with no name before them: {__name__=...}, unused here.
			return nil, &scanError{expr, "a selector without a metric name"}
		case c == '$': // a Grafana variable: $job, ${job}, $__rate_interval
			i++
			if i < len(expr) && expr[i] == '{' {
				j := strings.IndexByte(expr[i:], '}')
				if j < 0 {
					return nil, errUnclosed(expr)
				}
				i += j + 1
			}
			for i < len(expr) && isIdent(expr[i]) {
				i++
			}
		case c >= '0' && c <= '9' || c == '.': // numbers and durations: 3, 0.95, 86400, 5m
			for i < len(expr) && (isIdent(expr[i]) || expr[i] == '.') {
				i++
			}
		case isIdentStart(c):
			j := i
			for j < len(expr) && isIdent(expr[j]) {
				j++
			}
			word := expr[i:j]
			next := skipSpace(j)
			switch {
			case grouping[strings.ToLower(word)]:
				// by (a, b): skip the label list, if any (group_left may have none).
				if next < len(expr) && expr[next] == '(' {
					k, err := closing(next, '(', ')')
					if err != nil {
						return nil, err
					}
					j = k
				}
			case keywords[strings.ToLower(word)]:
			case next < len(expr) && expr[next] == '(':
				// a function or an aggregation: its arguments are scanned on.
			case startsWord(expr[next:], "by") || startsWord(expr[next:], "without"):
				// an aggregation with its grouping before the arguments
			default:
				sel := selector{name: word}
				if next < len(expr) && expr[next] == '{' {
					k, err := closing(next, '{', '}')
					if err != nil {
						return nil, err
					}
					ms, err := parseMatchers(expr, expr[next+1:k-1])
					if err != nil {
						return nil, err
					}
					sel.matchers, j = ms, k
				}
				out = append(out, sel)
			}
			i = j
		default:
			i++
		}
	}
	return out, nil
}

var matcherRE = regexp.MustCompile(`^\s*([a-zA-Z_][a-zA-Z0-9_]*)\s*(=~|!~|!=|=)\s*"((?:[^"\\]|\\.)*)"\s*$`)

func parseMatchers(expr, s string) ([]matcher, error) {
	var out []matcher
	for part := range strings.SplitSeq(s, ",") {
		if strings.TrimSpace(part) == "" {
			continue
		}
		m := matcherRE.FindStringSubmatch(part)
		if m == nil {
			return nil, &scanError{expr, "matcher " + part}
		}
		out = append(out, matcher{m[1], m[2], m[3]})
	}
	return out, nil
}

func startsWord(s, w string) bool {
	return strings.HasPrefix(s, w) && (len(s) == len(w) || !(s[len(w)] == '_' || s[len(w)] >= 'a' && s[len(w)] <= 'z'))
}

type scanError struct{ expr, what string }

func (e *scanError) Error() string { return "cannot read " + e.what + " in " + e.expr }

func errUnclosed(expr string) error { return &scanError{expr, "an unclosed bracket or string"} }

func TestPromQLSelectors(t *testing.T) {
	for _, c := range []struct {
		expr string
		want []string
	}{
		{`up{job="pbx-agent"} == 0`, []string{`up{job="pbx-agent"}`}},
		{`absent(up{job="pbx-agent"})`, []string{`up{job="pbx-agent"}`}},
		{`sum by (profile) (pbx_license_users_used{job="$job", instance=~"$instance"}) / sum by (profile) (pbx_license_users_licensed > 0)`,
			[]string{`pbx_license_users_used{job="$job",instance=~"$instance"}`, `pbx_license_users_licensed`}},
		{`sum without (result) (increase(pbx_agent_heartbeats_total{result=~"a|b"}[30m])) > 0 and sum without(result) (x_total) == 0`,
			[]string{`pbx_agent_heartbeats_total{result=~"a|b"}`, `x_total`}},
		{`histogram_quantile(0.95, sum by (le) (rate(h_bucket[$__rate_interval])))`, []string{`h_bucket`}},
		{`(d{kind=~"stop|delete"} - time()) < 3 * 86400 > 0`, []string{`d{kind=~"stop|delete"}`}},
		{`(a - time()) and on (instance, job) (b == 1)`, []string{`a`, `b`}},
		{`count by (state) (s{x="1"} == 1) or vector(0)`, []string{`s{x="1"}`}},
		{`sum(rate(a[5m] offset 1h)) by (job)`, []string{`a`}},
	} {
		sels, err := promqlSelectors(c.expr)
		if err != nil {
			t.Errorf("%s: %v", c.expr, err)
			continue
		}
		var got []string
		for _, s := range sels {
			var ms []string
			for _, m := range s.matchers {
				ms = append(ms, m.label+m.op+`"`+m.value+`"`)
			}
			if len(ms) > 0 {
				got = append(got, s.name+"{"+strings.Join(ms, ",")+"}")
			} else {
				got = append(got, s.name)
			}
		}
		if !slices.Equal(got, c.want) {
			t.Errorf("%s:\n got %q\nwant %q", c.expr, got, c.want)
		}
	}
}

// targetLabels are added by Prometheus at scrape time, not by the agent.
var targetLabels = map[string]bool{"job": true, "instance": true}

// literalAlternatives splits a regexp made only of literal alternatives
// ("stop|delete") into them; ok false for any other regexp. A dot counts
// as itself ("wms.upgrade").
func literalAlternatives(re string) ([]string, bool) {
	alts := strings.Split(re, "|")
	for _, a := range alts {
		if !literalRE.MatchString(a) {
			return nil, false
		}
	}
	return alts, true
}

var literalRE = regexp.MustCompile(`^[A-Za-z0-9_.-]+$`)

// checkSelectors reports selectors of expr that name no series of the
// registry (up, which Prometheus makes, aside), labels the series do not
// have, and label values (= or a regexp of literal alternatives) that no
// series carries: a typo in a dashboard or a rule, or a metric renamed.
func checkSelectors(t *testing.T, where, expr string, fams map[string]*dto.MetricFamily) {
	t.Helper()
	sels, err := promqlSelectors(expr)
	if err != nil {
		t.Errorf("%s: %v", where, err)
		return
	}
	if len(sels) == 0 {
		t.Errorf("%s: %q selects no metric", where, expr)
	}
	for _, s := range sels {
		if s.name == "up" {
			continue
		}
		mf := fams[s.name]
		if mf == nil {
			t.Errorf("%s: %q names %s, which the agent does not expose", where, expr, s.name)
			continue
		}
		values := map[string][]string{}
		for _, m := range mf.GetMetric() {
			for _, lp := range m.GetLabel() {
				values[lp.GetName()] = append(values[lp.GetName()], lp.GetValue())
			}
		}
		if strings.HasSuffix(s.name, "_bucket") {
			values["le"] = nil
		}
		for _, m := range s.matchers {
			if targetLabels[m.label] {
				continue
			}
			have, ok := values[m.label]
			if !ok {
				t.Errorf("%s: %s has no label %s (in %q)", where, s.name, m.label, expr)
				continue
			}
			var want []string
			switch m.op {
			case "=":
				want = []string{m.value}
			case "=~":
				want, _ = literalAlternatives(m.value)
			}
			for _, v := range want {
				if !strings.Contains(v, "$") && !slices.Contains(have, v) {
					t.Errorf("%s: no series %s{%s=%q} (in %q); the values are %v", where, s.name, m.label, v, expr, have)
				}
			}
		}
	}
}

// grafanaExprs returns every PromQL expression of a dashboard: panel
// targets' expr, and the queries of its template variables, where
// label_values(SELECTOR, label) yields SELECTOR.
func grafanaExprs(v any, path string, out map[string]string) {
	switch v := v.(type) {
	case map[string]any:
		for k, x := range v {
			p := path + "." + k
			if s, ok := x.(string); ok && (k == "expr" || k == "definition") {
				out[p] = s
				continue
			}
			grafanaExprs(x, p, out)
		}
	case []any:
		for i, x := range v {
			grafanaExprs(x, path+"["+strconv.Itoa(i)+"]", out)
		}
	}
}

var labelValuesRE = regexp.MustCompile(`^\s*label_values\((.*),\s*[a-zA-Z_][a-zA-Z0-9_]*\s*\)\s*$`)

// TestGrafanaDashboard checks the dashboards in packaging/grafana: valid
// JSON, and every PromQL expression names only metrics the registry has,
// with labels and label values that exist.
func TestGrafanaDashboard(t *testing.T) {
	fams := familyNames(t, newTest(t, snapshots["active"]))
	files, err := filepath.Glob("../../packaging/grafana/*.json")
	if err != nil || len(files) == 0 {
		t.Fatalf("no dashboard in packaging/grafana: %v", err)
	}
	for _, f := range files {
		t.Run(filepath.Base(f), func(t *testing.T) {
			b, err := os.ReadFile(f)
			if err != nil {
				t.Fatal(err)
			}
			var dash map[string]any
			if err := json.Unmarshal(b, &dash); err != nil {
				t.Fatalf("not valid JSON: %v", err)
			}
			for _, k := range []string{"title", "uid", "panels"} {
				if dash[k] == nil {
					t.Errorf("no %q", k)
				}
			}
			exprs := map[string]string{}
			grafanaExprs(dash, "", exprs)
			if len(exprs) < 10 {
				t.Fatalf("only %d expressions found", len(exprs))
			}
			named := map[string]bool{}
			for _, where := range sortedKeys(exprs) {
				expr := exprs[where]
				if m := labelValuesRE.FindStringSubmatch(expr); m != nil {
					expr = m[1]
				} else if strings.HasSuffix(where, ".definition") {
					t.Errorf("%s: a variable query other than label_values(SELECTOR, label): %q", where, expr)
					continue
				}
				checkSelectors(t, where, expr, fams)
				sels, _ := promqlSelectors(expr)
				for _, s := range sels {
					named[s.name] = true
				}
			}
			// The dashboard is for usage, states, deadlines and heartbeats.
			for _, want := range []string{"pbx_license_users_licensed", "pbx_license_users_used", "pbx_license_state",
				"pbx_license_deadline_timestamp_seconds", "pbx_agent_heartbeats_total"} {
				if !named[want] {
					t.Errorf("the dashboard never shows %s", want)
				}
			}
		})
	}
}

// TestAlertRules checks that every expression of the shipped alert rules
// names only metrics, labels and label values the registry has (or a
// series an earlier recording rule makes), and that every alert has a
// runbook_url whose section exists in the runbook the package ships.
func TestAlertRules(t *testing.T) {
	fams := familyNames(t, newTest(t, snapshots["active"]))
	b, err := os.ReadFile("../../packaging/prometheus/pbx-agent.rules.yml")
	if err != nil {
		t.Fatal(err)
	}
	var rules struct {
		Groups []struct {
			Rules []struct {
				Alert       string            `yaml:"alert"`
				Record      string            `yaml:"record"`
				Expr        string            `yaml:"expr"`
				Labels      map[string]string `yaml:"labels"`
				Annotations map[string]string `yaml:"annotations"`
			} `yaml:"rules"`
		} `yaml:"groups"`
	}
	if err := yaml.Unmarshal(b, &rules); err != nil {
		t.Fatal(err)
	}
	anchors := runbookAnchors(t, "../../docs/runbook.md")
	const runbook = "file:///usr/share/doc/pbx-agent/runbook.md#"
	n := 0
	for _, g := range rules.Groups {
		for _, r := range g.Rules {
			if r.Record != "" {
				checkSelectors(t, r.Record, r.Expr, fams)
				fams[r.Record] = &dto.MetricFamily{} // job and instance only
				continue
			}
			checkSelectors(t, r.Alert, r.Expr, fams)
			n++
			if sev := r.Labels["severity"]; !slices.Contains([]string{"page", "ticket", "info"}, sev) {
				t.Errorf("%s: severity %q, want page, ticket or info", r.Alert, sev)
			}
			url := r.Annotations["runbook_url"]
			anchor, ok := strings.CutPrefix(url, runbook)
			switch {
			case !ok:
				t.Errorf("%s: runbook_url %q does not start with %s", r.Alert, url, runbook)
			case !anchors[anchor]:
				t.Errorf("%s: runbook_url %q: docs/runbook.md has no section #%s", r.Alert, url, anchor)
			}
		}
	}
	if n < 15 {
		t.Errorf("only %d alerts found", n)
	}
}

// runbookAnchors returns the anchors of a Markdown file's headings as
// GitHub and most renderers make them: lower case, spaces to hyphens,
// punctuation dropped.
func runbookAnchors(t *testing.T, path string) map[string]bool {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]bool{}
	for _, line := range strings.Split(string(b), "\n") {
		if !strings.HasPrefix(line, "#") {
			continue
		}
		title := strings.TrimSpace(strings.TrimLeft(line, "#"))
		var a strings.Builder
		for _, r := range strings.ToLower(title) {
			switch {
			case r >= 'a' && r <= 'z', r >= '0' && r <= '9', r == '-', r == '_':
				a.WriteRune(r)
			case r == ' ':
				a.WriteByte('-')
			}
		}
		out[a.String()] = true
	}
	return out
}

package telemetry

import (
	"encoding/json"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
)

const dashboardPath = "../../deploy/grafana/trustmesh-security.json"

// knownMetrics are the proxy's series and their labels, with the default
// naming (--metrics-naming trustmesh; with istio the request and TCP
// series are Istio's and this dashboard does not apply). This list must
// follow internal/proxy/metrics.go: when a metric or label is added,
// renamed or removed there, change it here and fix the dashboard.
var knownMetrics = map[string][]string{
	"trustmesh_requests_total":                {"direction", "service", "code", "mtls", "source", "destination", "decision"},
	"trustmesh_request_duration_seconds":      {"direction", "service", "code", "mtls", "source", "destination", "decision"}, // histogram
	"trustmesh_tcp_bytes_total":               {"direction", "service", "flow", "source", "destination"},
	"trustmesh_tcp_connections_total":         {"direction", "service", "source", "destination"},
	"trustmesh_tls_handshakes_total":          {"direction", "group", "resumed"},
	"trustmesh_plaintext_connections_total":   {"port", "action"},
	"trustmesh_peers_refused_total":           {"direction", "reason"},
	"trustmesh_authz_decisions_total":         {"decision", "reason", "policy"},
	"trustmesh_decision_events_dropped_total": nil,
}

var histograms = []string{"trustmesh_request_duration_seconds"}

// knownValues are the values of the labels with a closed set of values,
// also from internal/proxy: an equality matcher on one of them must use
// one of these.
var knownValues = map[string][]string{
	"direction": {"inbound", "outbound"},
	"mtls":      {"mtls", "plaintext"},
	"action":    {"accepted", "refused"},
	"flow":      {"rx", "tx"},
	"decision":  {"allow", "deny", "audit", "dry-run-deny", "dry-run-allow"},
	"resumed":   {"true", "false"},
}

// seriesLabels returns the labels of a series name (a histogram's
// _bucket, _sum and _count included) and whether it is known.
func seriesLabels(name string) ([]string, bool) {
	if l, ok := knownMetrics[name]; ok && !slices.Contains(histograms, name) {
		return l, true
	}
	for _, h := range histograms {
		switch name {
		case h + "_bucket":
			return append(slices.Clone(knownMetrics[h]), "le"), true
		case h + "_sum", h + "_count":
			return knownMetrics[h], true
		}
	}
	return nil, false
}

type panel struct {
	ID         int                      `json:"id"`
	Type       string                   `json:"type"`
	Title      string                   `json:"title"`
	Datasource *datasource              `json:"datasource"`
	GridPos    struct{ X, Y, W, H int } `json:"gridPos"`
	Targets    []struct {
		Expr       string      `json:"expr"`
		RefID      string      `json:"refId"`
		Datasource *datasource `json:"datasource"`
	} `json:"targets"`
	Panels []panel `json:"panels"` // a collapsed row's
}

type datasource struct {
	Type string `json:"type"`
	UID  string `json:"uid"`
}

type dashboard struct {
	SchemaVersion int     `json:"schemaVersion"`
	UID           string  `json:"uid"`
	Title         string  `json:"title"`
	Panels        []panel `json:"panels"`
	Templating    struct {
		List []struct {
			Name       string          `json:"name"`
			Type       string          `json:"type"`
			Query      json.RawMessage `json:"query"`
			Definition string          `json:"definition"`
			Datasource *datasource     `json:"datasource"`
		} `json:"list"`
	} `json:"templating"`
}

func loadDashboard(t *testing.T) *dashboard {
	t.Helper()
	data, err := os.ReadFile(filepath.FromSlash(dashboardPath))
	if err != nil {
		t.Fatal(err)
	}
	var d dashboard
	if err := json.Unmarshal(data, &d); err != nil {
		t.Fatalf("%s: %v", dashboardPath, err)
	}
	return &d
}

func allPanels(ps []panel) []panel {
	var out []panel
	for _, p := range ps {
		out = append(out, p)
		out = append(out, allPanels(p.Panels)...)
	}
	return out
}

func TestDashboardShape(t *testing.T) {
	d := loadDashboard(t)
	if d.SchemaVersion != 39 {
		t.Errorf("schemaVersion %d, want 39", d.SchemaVersion)
	}
	if d.UID == "" || d.Title == "" {
		t.Errorf("uid %q, title %q: both are required", d.UID, d.Title)
	}
	var hasDS bool
	for _, v := range d.Templating.List {
		if v.Name == "datasource" && v.Type == "datasource" && string(v.Query) == `"prometheus"` {
			hasDS = true
		}
		if v.Type == "query" && (v.Datasource == nil || v.Datasource.UID != "${datasource}") {
			t.Errorf("variable %s does not query ${datasource}", v.Name)
		}
	}
	if !hasDS {
		t.Error("no Prometheus datasource variable named datasource")
	}
	ids := map[int]string{}
	type cell struct{ x, y int }
	used := map[cell]string{}
	for _, p := range allPanels(d.Panels) {
		if other, dup := ids[p.ID]; dup {
			t.Errorf("panels %q and %q share id %d", other, p.Title, p.ID)
		}
		ids[p.ID] = p.Title
		g := p.GridPos
		if g.W <= 0 || g.H <= 0 || g.X < 0 || g.X+g.W > 24 {
			t.Errorf("panel %q: gridPos %+v outside the 24-column grid", p.Title, g)
		}
		for x := g.X; x < g.X+g.W; x++ {
			for y := g.Y; y < g.Y+g.H; y++ {
				if other, ok := used[cell{x, y}]; ok {
					t.Errorf("panels %q and %q overlap at %d,%d", other, p.Title, x, y)
				}
				used[cell{x, y}] = p.Title
			}
		}
		if p.Type == "row" {
			continue
		}
		if p.Datasource == nil || p.Datasource.UID != "${datasource}" || p.Datasource.Type != "prometheus" {
			t.Errorf("panel %q: datasource %+v, want prometheus ${datasource}", p.Title, p.Datasource)
		}
		if len(p.Targets) == 0 {
			t.Errorf("panel %q has no query", p.Title)
		}
		refs := map[string]bool{}
		for _, tg := range p.Targets {
			if tg.Datasource == nil || tg.Datasource.UID != "${datasource}" {
				t.Errorf("panel %q query %s: datasource %+v, want ${datasource}", p.Title, tg.RefID, tg.Datasource)
			}
			if tg.RefID == "" || refs[tg.RefID] {
				t.Errorf("panel %q: refId %q empty or repeated", p.Title, tg.RefID)
			}
			refs[tg.RefID] = true
		}
	}
}

// TestDashboardMetrics checks every query of the dashboard against the
// metrics the proxy exports: each series name is known, each label in a
// matcher or a grouping belongs to the series queried, and each equality
// matcher on a closed label uses a value the proxy writes.
func TestDashboardMetrics(t *testing.T) {
	d := loadDashboard(t)
	var exprs int
	for _, p := range allPanels(d.Panels) {
		for _, tg := range p.Targets {
			exprs++
			for _, problem := range checkExpr(tg.Expr) {
				t.Errorf("panel %q query %s: %s\n\t%s", p.Title, tg.RefID, problem, tg.Expr)
			}
		}
	}
	labelValues := regexp.MustCompile(`^label_values\(\s*([a-zA-Z_:][a-zA-Z0-9_:]*)\s*,\s*([a-zA-Z_][a-zA-Z0-9_]*)\s*\)$`)
	for _, v := range d.Templating.List {
		if v.Type != "query" {
			continue
		}
		m := labelValues.FindStringSubmatch(v.Definition)
		if m == nil {
			t.Errorf("variable %s: definition %q is not label_values(metric, label)", v.Name, v.Definition)
			continue
		}
		labels, ok := seriesLabels(m[1])
		if !ok {
			t.Errorf("variable %s: unknown metric %s", v.Name, m[1])
		} else if !slices.Contains(labels, m[2]) {
			t.Errorf("variable %s: %s has no label %s", v.Name, m[1], m[2])
		}
	}
	if exprs == 0 {
		t.Fatal("no queries found")
	}
}

func TestCheckExpr(t *testing.T) {
	tests := []struct {
		name, expr string
		problems   int
	}{
		{"ok", `sum by (service, code) (rate(trustmesh_requests_total{direction=~"$direction",mtls="mtls"}[$__rate_interval]))`, 0},
		{"ok-histogram", `histogram_quantile(0.99, sum by (le, service) (rate(trustmesh_request_duration_seconds_bucket{service=~"$service"}[5m])))`, 0},
		{"ok-ratio", `sum(increase(trustmesh_tls_handshakes_total{group="X25519MLKEM768"}[$__range])) / sum(increase(trustmesh_tls_handshakes_total[$__range]))`, 0},
		{"unknown-metric", `sum(rate(trustmesh_request_total[5m]))`, 1},
		{"unknown-foreign-metric", `sum(rate(http_requests_total[5m]))`, 1},
		{"histogram-without-suffix", `rate(trustmesh_request_duration_seconds[5m])`, 1},
		{"wrong-matcher-label", `rate(trustmesh_peers_refused_total{service="x"}[5m])`, 1},
		{"wrong-grouping-label", `sum by (policy) (rate(trustmesh_requests_total[5m]))`, 1},
		{"wrong-value", `rate(trustmesh_authz_decisions_total{decision="dryrun-deny"}[5m])`, 1},
		{"regex-value-not-checked", `rate(trustmesh_authz_decisions_total{decision=~"dry-run-.*"}[5m])`, 0},
		{"string-not-a-metric", `label_replace(trustmesh_tcp_bytes_total, "x", "$1", "flow", "(.*)")`, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := checkExpr(tt.expr); len(got) != tt.problems {
				t.Errorf("checkExpr(%s) = %q, want %d problems", tt.expr, got, tt.problems)
			}
		})
	}
}

// promqlWords are PromQL's functions, aggregations and keywords, which
// are not series names.
var promqlWords = map[string]bool{}

func init() {
	for _, w := range strings.Fields(`sum min max avg count stddev stdvar topk bottomk quantile count_values group
		limitk limit_ratio by without on ignoring group_left group_right bool offset and or unless
		rate irate increase delta idelta deriv predict_linear resets changes histogram_quantile
		histogram_fraction histogram_count histogram_sum histogram_avg abs ceil floor round sqrt exp ln log2 log10
		clamp clamp_min clamp_max absent absent_over_time vector scalar time timestamp sort sort_desc label_replace
		label_join sum_over_time avg_over_time min_over_time max_over_time count_over_time last_over_time
		quantile_over_time stddev_over_time present_over_time inf nan`) {
		promqlWords[w] = true
	}
}

var identRE = regexp.MustCompile(`^[a-zA-Z_:][a-zA-Z0-9_:]*`)

// checkExpr returns what is wrong with the series and labels of a PromQL
// expression. It is a scanner, not a parser: enough for dashboard
// queries, which it is tested on.
func checkExpr(expr string) []string {
	var problems []string
	var series [][]string // labels of each series in expr
	var grouped []string  // labels in by/without/on/ignoring clauses
	s := expr
	for len(s) > 0 {
		switch c := s[0]; {
		case c == '"' || c == '\'' || c == '`':
			s = skipString(s)
		case c == '[': // range or subquery duration, possibly a $variable
			if i := strings.IndexByte(s, ']'); i >= 0 {
				s = s[i+1:]
			} else {
				return append(problems, "unterminated [")
			}
		case c == '$': // a Grafana variable outside a string
			s = s[1:]
			s = s[len(identRE.FindString(s)):]
		case c >= '0' && c <= '9' || c == '.':
			s = strings.TrimLeft(s, "0123456789.eE")
		case identRE.MatchString(s):
			word := identRE.FindString(s)
			s = s[len(word):]
			rest := strings.TrimLeft(s, " \t\n")
			switch {
			case word == "by" || word == "without" || word == "on" || word == "ignoring" ||
				word == "group_left" || word == "group_right":
				if strings.HasPrefix(rest, "(") {
					end := strings.IndexByte(rest, ')')
					if end < 0 {
						return append(problems, "unterminated (")
					}
					for _, l := range strings.Split(rest[1:end], ",") {
						if l = strings.TrimSpace(l); l != "" {
							grouped = append(grouped, l)
						}
					}
					s = rest[end+1:]
				}
			case promqlWords[word] && strings.HasPrefix(rest, "("):
			case promqlWords[word]:
			default:
				labels, ok := seriesLabels(word)
				if !ok {
					problems = append(problems, "unknown metric "+word)
				}
				series = append(series, labels)
				if strings.HasPrefix(rest, "{") {
					var matcherProblems []string
					s, matcherProblems = checkMatchers(word, labels, ok, rest)
					problems = append(problems, matcherProblems...)
				}
			}
		default:
			s = s[1:]
		}
	}
	for _, l := range grouped {
		found := l == "le"
		for _, labels := range series {
			found = found || slices.Contains(labels, l)
		}
		if !found {
			problems = append(problems, "grouping by "+l+", a label of no series queried")
		}
	}
	return problems
}

var matcherRE = regexp.MustCompile(`^\s*([a-zA-Z_][a-zA-Z0-9_]*)\s*(=~|!~|!=|=)\s*"((?:[^"\\]|\\.)*)"\s*,?`)

// checkMatchers checks the {…} after metric, which s starts with, and
// returns what follows it.
func checkMatchers(metric string, labels []string, known bool, s string) (string, []string) {
	var problems []string
	s = s[1:]
	for {
		s = strings.TrimLeft(s, " \t\n")
		if strings.HasPrefix(s, "}") {
			return s[1:], problems
		}
		m := matcherRE.FindStringSubmatch(s)
		if m == nil {
			return "", append(problems, "cannot read the matchers of "+metric)
		}
		s = s[len(m[0]):]
		label, op, value := m[1], m[2], m[3]
		if known && !slices.Contains(labels, label) {
			problems = append(problems, metric+" has no label "+label)
		}
		if vals, closed := knownValues[label]; closed && (op == "=" || op == "!=") && !strings.Contains(value, "$") && !slices.Contains(vals, value) {
			problems = append(problems, label+"=\""+value+"\" is not a value the proxy writes")
		}
	}
}

// skipString returns s after the quoted string it starts with.
func skipString(s string) string {
	q := s[0]
	for i := 1; i < len(s); i++ {
		switch s[i] {
		case '\\':
			if q != '`' {
				i++
			}
		case q:
			return s[i+1:]
		}
	}
	return ""
}

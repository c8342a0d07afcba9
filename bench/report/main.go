// Command report turns one bench/run.sh run into bench/results/STAMP.md and
// STAMP.json. It reads the runs file run.sh writes, one tab-separated line per
// (configuration, shape):
//
//	CONFIG  SHAPE  FORTIO_JSON  PROXIES
//
// PROXIES is "name:cpu_ticks:vmhwm_kb,..." (CPU ticks used by that proxy
// process during the shape, VmHWM after it; empty for direct). Every figure
// in the output comes from these files; nothing is typed by hand.
package main

import (
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"math"
	"os"
	"strconv"
	"strings"
)

type fortio struct {
	ActualQPS         float64
	ActualDuration    int64
	NumThreads        int
	RequestedQPS      string
	H2                bool
	Version           string
	URL               string
	SocketCount       int
	RetCodes          map[string]int64
	DurationHistogram struct {
		Count       int64
		Avg         float64
		Max         float64
		Percentiles []struct{ Percentile, Value float64 }
	}
}

type proxy struct {
	Name       string  `json:"name"`
	CPUSeconds float64 `json:"cpu_seconds"`
	PeakRSSKB  int64   `json:"peak_rss_kb"`
}

type run struct {
	Config       string             `json:"config"`
	Shape        string             `json:"shape"`
	QPS          float64            `json:"qps"`
	Requests     int64              `json:"requests"`
	LatencyMS    map[string]float64 `json:"latency_ms"`
	Non2xx       int64              `json:"non_2xx"`
	SocketErrors int64              `json:"socket_errors"`
	Sockets      int                `json:"sockets_opened"`
	Proxies      []proxy            `json:"proxies"`
	CPUSeconds   float64            `json:"proxy_cpu_seconds"`
	CPUMsPer1k   float64            `json:"proxy_cpu_ms_per_1000_requests"`
	PeakRSSKB    int64              `json:"proxy_peak_rss_kb"`
	Fortio       json.RawMessage    `json:"fortio"`
}

func main() {
	if err := report(os.Args[1:], os.Stdout); err != nil {
		fmt.Fprintln(os.Stderr, "report:", err)
		os.Exit(1) //nolint:forbidigo // this is main
	}
}

func report(args []string, stdout io.Writer) error {
	fs := flag.NewFlagSet("report", flag.ContinueOnError)
	runsFile := fs.String("runs", "", "runs file written by bench/run.sh")
	out := fs.String("out", "", "output prefix: writes PREFIX.md and PREFIX.json")
	clk := fs.Float64("clk-tck", 100, "clock ticks per second (getconf CLK_TCK)")
	var meta, shapes, notes metaFlags
	fs.Var(&meta, "meta", "KEY=VALUE recorded in the report header (repeatable, in order)")
	fs.Var(&shapes, "shape", "NAME=description (repeatable, in order)")
	fs.Var(&notes, "note", "a line for the report's footer (repeatable)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *runsFile == "" || *out == "" {
		return errors.New("-runs and -out are required")
	}
	runs, err := load(*runsFile, *clk)
	if err != nil {
		return err
	}
	md := render(runs, meta, shapes, notes)
	raw, err := json.MarshalIndent(map[string]any{"meta": meta.m(), "shapes": shapes.m(), "notes": notes, "runs": runs}, "", "  ")
	if err != nil {
		return err
	}
	if err := os.WriteFile(*out+".md", []byte(md), 0o644); err != nil {
		return err
	}
	if err := os.WriteFile(*out+".json", append(raw, '\n'), 0o644); err != nil {
		return err
	}
	_, err = io.WriteString(stdout, md)
	return err
}

type metaFlags []string

func (m *metaFlags) String() string     { return strings.Join(*m, ",") }
func (m *metaFlags) Set(v string) error { *m = append(*m, v); return nil }
func (m metaFlags) m() map[string]string {
	r := map[string]string{}
	for _, kv := range m {
		k, v, _ := strings.Cut(kv, "=")
		r[k] = v
	}
	return r
}

func load(path string, clk float64) ([]run, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var runs []run
	for n, line := range strings.Split(strings.TrimSpace(string(b)), "\n") {
		f := strings.Split(line, "\t")
		if len(f) < 3 {
			return nil, fmt.Errorf("%s:%d: want CONFIG SHAPE JSON [PROXIES]", path, n+1)
		}
		rawJSON, err := os.ReadFile(f[2]) //nolint:gosec // fortio outputs named by bench/run.sh
		if err != nil {
			return nil, err
		}
		var fr fortio
		if err := json.Unmarshal(rawJSON, &fr); err != nil {
			return nil, fmt.Errorf("%s: %w", f[2], err)
		}
		r := run{Config: f[0], Shape: f[1], QPS: fr.ActualQPS, Requests: fr.DurationHistogram.Count,
			LatencyMS: map[string]float64{}, Sockets: fr.SocketCount, Fortio: rawJSON}
		for _, p := range fr.DurationHistogram.Percentiles {
			r.LatencyMS[strconv.FormatFloat(p.Percentile, 'f', -1, 64)] = p.Value * 1000
		}
		r.LatencyMS["avg"] = fr.DurationHistogram.Avg * 1000
		r.LatencyMS["max"] = fr.DurationHistogram.Max * 1000
		for code, c := range fr.RetCodes {
			if code == "-1" {
				r.SocketErrors += c
			} else if !strings.HasPrefix(code, "2") {
				r.Non2xx += c
			}
		}
		if len(f) > 3 && f[3] != "" {
			for _, p := range strings.Split(f[3], ",") {
				parts := strings.Split(p, ":")
				if len(parts) != 3 {
					return nil, fmt.Errorf("%s:%d: bad proxy %q", path, n+1, p)
				}
				ticks, _ := strconv.ParseFloat(parts[1], 64)
				hwm, _ := strconv.ParseInt(parts[2], 10, 64)
				px := proxy{Name: parts[0], CPUSeconds: ticks / clk, PeakRSSKB: hwm}
				r.Proxies = append(r.Proxies, px)
				r.CPUSeconds += px.CPUSeconds
				r.PeakRSSKB += hwm
			}
			if r.Requests > 0 {
				r.CPUMsPer1k = r.CPUSeconds * 1000 / float64(r.Requests) * 1000
			}
		}
		runs = append(runs, r)
	}
	return runs, nil
}

func ratio(a, b float64) string {
	if b == 0 || math.IsNaN(a) || math.IsNaN(b) {
		return "–"
	}
	return fmt.Sprintf("%.2f×", a/b)
}

func render(runs []run, meta, shapes, notes metaFlags) string {
	var sb strings.Builder
	w := func(format string, a ...any) { fmt.Fprintf(&sb, format, a...) }
	m := meta.m()
	w("# trustmesh side-by-side benchmark, %s\n\n", m["date"])
	for _, kv := range meta {
		k, v, _ := strings.Cut(kv, "=")
		if k != "date" {
			w("- %s: %s\n", k, v)
		}
	}
	w("\nLatency in ms (fortio, 10 µs histogram resolution). \"+p50\"/\"+p99\": added over direct. " +
		"Ratios: this configuration's figure divided by direct's or HAProxy's. CPU: utime+stime of the proxy processes " +
		"(both proxies summed) during the shape, from /proc/PID/stat; per 1000 requests. RSS: VmHWM of both proxies summed, " +
		"reset (clear_refs 5) before each shape.\n")
	byKey := map[string]run{}
	var order []string
	for _, r := range runs {
		if _, ok := byKey[r.Shape]; !ok {
			order = append(order, r.Shape)
		}
		byKey[r.Shape+"/"+r.Config] = r
		byKey[r.Shape] = r
	}
	desc := shapes.m()
	w("\n## Headline: trustmesh against direct and against HAProxy\n\n")
	w("| shape | p50 ×direct | p99 ×direct | +p50 ms | +p99 ms | p50 ×HAProxy | p99 ×HAProxy | qps ×HAProxy | CPU/1k req ×HAProxy | peak RSS ×HAProxy | errors (trustmesh / HAProxy) |\n")
	w("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n")
	for _, shape := range order {
		t, ok := byKey[shape+"/trustmesh"]
		if !ok {
			continue
		}
		d, hasD := byKey[shape+"/direct"]
		h, hasH := byKey[shape+"/haproxy"]
		w("| %s ", shape)
		if hasD {
			w("| %s | %s | %+.3f | %+.3f ", ratio(t.LatencyMS["50"], d.LatencyMS["50"]), ratio(t.LatencyMS["99"], d.LatencyMS["99"]),
				t.LatencyMS["50"]-d.LatencyMS["50"], t.LatencyMS["99"]-d.LatencyMS["99"])
		} else {
			w("| – | – | – | – ")
		}
		if hasH {
			w("| %s | %s | %s | %s | %s | %d / %d |\n", ratio(t.LatencyMS["50"], h.LatencyMS["50"]), ratio(t.LatencyMS["99"], h.LatencyMS["99"]),
				ratio(t.QPS, h.QPS), ratio(t.CPUMsPer1k, h.CPUMsPer1k), ratio(float64(t.PeakRSSKB), float64(h.PeakRSSKB)),
				t.Non2xx+t.SocketErrors, h.Non2xx+h.SocketErrors)
		} else {
			w("| – | – | – | – | – | %d / – |\n", t.Non2xx+t.SocketErrors)
		}
	}
	for _, shape := range order {
		w("\n## %s: %s\n\n", shape, desc[shape])
		w("| config | qps | p50 | p90 | p99 | p99.9 | +p50 | +p99 | p50 ×direct | p99 ×direct | p50 ×HAProxy | p99 ×HAProxy | qps ×HAProxy | CPU/1k ×HAProxy | non-2xx | socket err | sockets | proxy CPU s | CPU ms/1k req | peak RSS MB |\n")
		w("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n")
		d, hasD := byKey[shape+"/direct"]
		h, hasH := byKey[shape+"/haproxy"]
		for _, cfg := range []string{"direct", "trustmesh", "haproxy"} {
			r, ok := byKey[shape+"/"+cfg]
			if !ok {
				continue
			}
			l := r.LatencyMS
			w("| %s | %.0f | %.3f | %.3f | %.3f | %.3f ", cfg, r.QPS, l["50"], l["90"], l["99"], l["99.9"])
			if hasD && cfg != "direct" {
				w("| %+.3f | %+.3f | %s | %s ", l["50"]-d.LatencyMS["50"], l["99"]-d.LatencyMS["99"],
					ratio(l["50"], d.LatencyMS["50"]), ratio(l["99"], d.LatencyMS["99"]))
			} else {
				w("| – | – | – | – ")
			}
			if hasH && cfg == "trustmesh" {
				w("| %s | %s | %s | %s ", ratio(l["50"], h.LatencyMS["50"]), ratio(l["99"], h.LatencyMS["99"]),
					ratio(r.QPS, h.QPS), ratio(r.CPUMsPer1k, h.CPUMsPer1k))
			} else {
				w("| – | – | – | – ")
			}
			w("| %d | %d | %d ", r.Non2xx, r.SocketErrors, r.Sockets)
			if len(r.Proxies) > 0 {
				var parts []string
				for _, p := range r.Proxies {
					parts = append(parts, fmt.Sprintf("%s %.2f", p.Name, p.CPUSeconds))
				}
				w("| %.2f (%s) | %.1f | %.1f |\n", r.CPUSeconds, strings.Join(parts, ", "), r.CPUMsPer1k, float64(r.PeakRSSKB)/1024)
			} else {
				w("| – | – | – |\n")
			}
		}
		if !hasH {
			w("\nNo HAProxy run for this shape (see notes).\n")
		}
	}
	if len(notes) > 0 {
		w("\n## Notes\n\n")
		for _, n := range notes {
			w("- %s\n", n)
		}
	}
	return sb.String()
}

package main

import (
	"bytes"
	"encoding/json"
	"io"
	"math"
	"os"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"
)

func TestRatio(t *testing.T) {
	tests := []struct {
		a, b int64
		want float64
	}{
		{10, 10, 1},
		{9, 10, 0.9},
		{11, 10, 1.1},
		{0, 0, 0},
		{5, 0, 0},
	}
	for _, tt := range tests {
		if got := ratio(tt.a, tt.b); got != tt.want {
			t.Errorf("ratio(%d, %d) = %v; want %v", tt.a, tt.b, got, tt.want)
		}
	}
}

func TestCPUPercent(t *testing.T) {
	t0 := time.Unix(1000, 0)
	tests := []struct {
		ticks int64
		wall  time.Duration
		want  float64
	}{
		{100, time.Second, 100},     // one core busy
		{50, time.Second, 50},       // half a core
		{400, 2 * time.Second, 200}, // two cores
		{0, time.Second, 0},
		{100, 0, 0}, // no time passed: no answer rather than +Inf
	}
	for _, tt := range tests {
		a := procSample{At: t0, CPUTck: 1000}
		b := procSample{At: t0.Add(tt.wall), CPUTck: 1000 + tt.ticks}
		if got := cpuPercent(a, b); math.Abs(got-tt.want) > 1e-9 {
			t.Errorf("cpuPercent(%d ticks in %v) = %v; want %v", tt.ticks, tt.wall, got, tt.want)
		}
	}
}

func TestPerConnBytes(t *testing.T) {
	tests := []struct {
		start, end int64
		conns      int
		want       float64
	}{
		{1000, 2000, 1000, 1024},
		{1000, 1000, 10, 0},
		{2000, 1000, 1024, -1000}, // memory returned to the OS shows as negative
		{1000, 5000, 0, 0},
	}
	for _, tt := range tests {
		if got := perConnBytes(tt.start, tt.end, tt.conns); got != tt.want {
			t.Errorf("perConnBytes(%d, %d, %d) = %v; want %v", tt.start, tt.end, tt.conns, got, tt.want)
		}
	}
}

func TestParseVmRSS(t *testing.T) {
	tests := []struct {
		in   string
		want int64
		ok   bool
	}{
		{"Name:\thubbub\nVmPeak:\t  9999 kB\nVmRSS:\t   12345 kB\nThreads: 4\n", 12345, true},
		{"VmRSS: 1 kB", 1, true},
		{"Name: x\n", 0, false},
		{"VmRSS:\n", 0, false},
	}
	for _, tt := range tests {
		got, err := parseVmRSS([]byte(tt.in))
		if (err == nil) != tt.ok || got != tt.want {
			t.Errorf("parseVmRSS(%q) = %d, %v; want %d, ok %v", tt.in, got, err, tt.want, tt.ok)
		}
	}
}

func TestParseStatCPU(t *testing.T) {
	tests := []struct {
		in   string
		want int64
		ok   bool
	}{
		{"7491 (chat) S 1 7449 1981 0 -1 4194368 96 0 0 0 150 25 0 0 20 0 1 0", 175, true},
		// The command name may hold spaces and parentheses.
		{"42 (my (odd) srv) R 1 2 3 4 5 6 7 8 9 10 3 4 0 0", 7, true},
		{"42 (x) S 1 2", 0, false},
		{"no parens", 0, false},
		{"42 (x) S 1 2 3 4 5 6 7 8 9 10 a b", 0, false},
	}
	for _, tt := range tests {
		got, err := parseStatCPU([]byte(tt.in))
		if (err == nil) != tt.ok || got != tt.want {
			t.Errorf("parseStatCPU(%q) = %d, %v; want %d, ok %v", tt.in, got, err, tt.want, tt.ok)
		}
	}
}

// TestReadProcSelf reads this test process, which must have memory.
func TestReadProcSelf(t *testing.T) {
	s, err := readProc("self")
	if err != nil {
		t.Fatalf("readProc(self): %v", err)
	}
	if s.RSSKB <= 0 || s.CPUTck < 0 {
		t.Errorf("readProc(self) = %+v; want RSS > 0", s)
	}
}

// TestRecorderTotals records known latencies through the sharded path and
// checks the percentiles, per-second points and the sliver rule.
func TestRecorderTotals(t *testing.T) {
	r := newRecorder()
	// 1..1000 ms spread over all shards.
	for i := int64(1); i <= 1000; i++ {
		r.recordFrame(r.shard(int(i)), []int64{i * 1000}, frameStats{Markers: 1})
	}
	p := r.tick(1.0, true)
	if p.Deliveries != 1000 || p.PerSec != 1000 {
		t.Errorf("tick point = %+v; want 1000 deliveries, 1000/s", p)
	}
	l := latencyStats(r)
	tests := []struct {
		name      string
		got, want float64
	}{
		{"p50", l.P50, 500},
		{"p90", l.P90, 900},
		{"p99", l.P99, 990},
		{"p99.9", l.P999, 999},
		{"max", l.Max, 1000},
		{"mean", l.Mean, 500.5},
	}
	for _, tt := range tests {
		// 3 significant digits: within 0.1%.
		if math.Abs(tt.got-tt.want) > tt.want*0.001 {
			t.Errorf("%s = %v ms; want %v", tt.name, tt.got, tt.want)
		}
	}
	if l.Count != 1000 || r.frames.Load() != 1000 || r.markers.Load() != 1000 {
		t.Errorf("count %d, frames %d, markers %d; want 1000 each", l.Count, r.frames.Load(), r.markers.Load())
	}
	// A 0.1 s sliver counts in the totals but is left out of the timeline.
	r.recordFrame(r.shard(0), []int64{5000}, frameStats{Markers: 1})
	r.tick(1.1, true)
	if len(r.timeline) != 1 || latencyStats(r).Count != 1001 {
		t.Errorf("after sliver: %d points, count %d; want 1, 1001", len(r.timeline), latencyStats(r).Count)
	}
	// Negative latencies (clock steps) are clamped, not lost.
	r.recordFrame(r.shard(0), []int64{-5}, frameStats{Markers: 1})
	r.tick(2.5, true)
	if latencyStats(r).Count != 1002 {
		t.Errorf("negative latency dropped")
	}
}

func TestNiceStep(t *testing.T) {
	tests := []struct {
		span   float64
		target int
		want   float64
	}{
		{10, 5, 2},
		{100, 10, 10},
		{7, 5, 2},
		{0.3, 5, 0.1},
		{12000, 5, 5000},
		{0, 5, 1},
	}
	for _, tt := range tests {
		if got := niceStep(tt.span, tt.target); math.Abs(got-tt.want) > 1e-12 {
			t.Errorf("niceStep(%v, %d) = %v; want %v", tt.span, tt.target, got, tt.want)
		}
	}
}

// TestWriteHTMLOffline checks that the report page loads nothing from the
// network, escapes what it embeds and draws one line per series.
func TestWriteHTMLOffline(t *testing.T) {
	r := &Report{
		Scenario: "fanout",
		URL:      "ws://127.0.0.1:1/ws?<script>",
		Timeline: []Point{
			{T: 1, Deliveries: 100, PerSec: 100, P50ms: 1, P99ms: 3, Maxms: 5},
			{T: 2, Deliveries: 120, PerSec: 120, P50ms: 1.2, P99ms: 2.5, Maxms: 9},
		},
	}
	var buf bytes.Buffer
	if err := r.writeHTML(&buf); err != nil {
		t.Fatal(err)
	}
	page := buf.String()
	if strings.Contains(page, "<script") {
		t.Errorf("page contains a script tag or unescaped input")
	}
	for _, u := range regexp.MustCompile(`(?:src|href)=["']?[a-z]+://`).FindAllString(page, -1) {
		t.Errorf("page loads a remote resource: %s", u)
	}
	if n := strings.Count(page, "<polyline"); n != 4 {
		t.Errorf("page has %d polylines; want 4 (p50, p99, max, deliveries/s)", n)
	}
}

// TestReportJSON checks that the JSON report carries the fields scripts
// read, with their stable names.
func TestReportJSON(t *testing.T) {
	r := &Report{Scenario: "rooms", Expected: 10, Received: 9, DeliveryRatio: 0.9,
		Latency: LatencyStats{P99: 1.5}, UnexpectedCloses: map[string]int64{"1013 slow consumer": 2}}
	var buf bytes.Buffer
	if err := r.writeJSON(&buf); err != nil {
		t.Fatal(err)
	}
	var m map[string]any
	if err := json.Unmarshal(buf.Bytes(), &m); err != nil {
		t.Fatal(err)
	}
	r.finish(Thresholds{MinDelivery: 0.95})
	for _, k := range []string{"scenario", "expected", "received", "delivery_ratio", "latency", "unexpected_closes", "duplicates", "coalescing",
		"conn_failures", "not_attempted", "interrupted", "checks", "pass"} {
		if _, ok := m[k]; !ok {
			t.Errorf("JSON report lacks %q", k)
		}
	}
	if m["pass"] != false {
		t.Errorf("JSON pass = %v for a run below -min-delivery; want false", m["pass"])
	}
	var text bytes.Buffer
	if err := r.writeText(&text); err != nil || !strings.Contains(text.String(), "1013 slow consumer: 2") {
		t.Errorf("text report = %q, %v; want the close count", text.String(), err)
	}
	for _, want := range []string{"FAIL  delivery ratio 0.9000", "verdict      FAIL"} {
		if !strings.Contains(text.String(), want) {
			t.Errorf("text report lacks %q:\n%s", want, text.String())
		}
	}
}

// chartSVG returns the markup of the chart with the given id on page, up
// to the end of its div, or "" if there is no such chart.
func chartSVG(page, id string) string {
	i := strings.Index(page, `<div class="chart" id="chart-`+id+`">`)
	if i < 0 {
		return ""
	}
	rest := page[i:]
	return rest[:strings.Index(rest, "</div>")]
}

// TestWriteHTMLSections checks the page's structure: the run's metadata,
// the verdict with every check, and one chart per view with one line per
// series, or a note where there is nothing to draw.
func TestWriteHTMLSections(t *testing.T) {
	started := time.Date(2026, 3, 4, 5, 6, 7, 0, time.UTC)
	full := func() *Report {
		r := &Report{
			Meta: Meta{Version: "v1.2.3 (abc123)", GoVersion: "go1.99", Started: started, Target: "ws://127.0.0.1:9/ws",
				Flags: []string{"-clients=50", "-login=bench:REDACTED", "-url=ws://127.0.0.1:9/ws?a=<b>"}},
			Scenario: "fanout", URL: "ws://127.0.0.1:9/ws", Clients: 50, Senders: 5, ConnOK: 50,
			WindowSec: 2, WindowStartSec: 1.5,
			Latency:     LatencyStats{Count: 1000, P99: 3},
			Timeline:    []Point{{T: 1, P50ms: 1, P99ms: 3, Maxms: 4, PerSec: 100}, {T: 2, P50ms: 1, P99ms: 2, Maxms: 5, PerSec: 90}},
			LatencyDist: []DistPoint{{0, 0.1}, {90, 1}, {99, 3}, {99.9, 5}},
			ProcTimeline: []ProcPoint{
				{T: 1, Server: &ProcReading{CPUPercent: 20, RSSKB: 10240}, Tool: &ProcReading{CPUPercent: 10, RSSKB: 5120}},
				{T: 2, Server: &ProcReading{CPUPercent: 40, RSSKB: 20480}, Tool: &ProcReading{CPUPercent: 15, RSSKB: 6144}},
				{T: 3, Tool: &ProcReading{CPUPercent: 5, RSSKB: 6144}}, // the server could not be read
			},
		}
		r.finish(Thresholds{MaxP99: 2 * time.Millisecond})
		return r
	}
	tests := []struct {
		name string
		mod  func(*Report)
		// lines is the number of polylines wanted per chart id; -1 means a
		// note instead of a chart.
		lines     map[string]int
		wantNotes []string
	}{
		{name: "everything", mod: func(*Report) {},
			lines: map[string]int{"latency": 3, "rate": 1, "distribution": 1, "cpu": 2, "rss": 2}},
		{name: "no server pid", mod: func(r *Report) {
			for i := range r.ProcTimeline {
				r.ProcTimeline[i].Server = nil
			}
		}, lines: map[string]int{"latency": 3, "rate": 1, "distribution": 1, "cpu": 1, "rss": 1}, wantNotes: []string{"pass -server-pid"}},
		{name: "idle", mod: func(r *Report) { r.LatencyDist, r.Timeline = nil, nil },
			lines: map[string]int{"latency": 3, "rate": 1, "distribution": -1, "cpu": 2, "rss": 2}, wantNotes: []string{"no latency was measured"}},
		{name: "no samples", mod: func(r *Report) { r.ProcTimeline = nil },
			lines: map[string]int{"latency": 3, "rate": 1, "distribution": 1, "cpu": -1, "rss": -1}, wantNotes: []string{"no process samples"}},
	}
	for _, tt := range tests {
		r := full()
		tt.mod(r)
		var buf bytes.Buffer
		if err := r.writeHTML(&buf); err != nil {
			t.Fatal(err)
		}
		page := buf.String()
		for _, want := range []string{
			`<section id="run">`, "v1.2.3 (abc123), built with go1.99", "2026-03-04T05:06:07Z", "ws://127.0.0.1:9/ws",
			"-clients=50", "-login=bench:REDACTED", "a=&lt;b&gt;",
			`<section id="checks">`, `<span class="FAIL">FAIL</span>`, "p99 latency 3.000 ms, above -max-p99 2ms", "not interrupted",
		} {
			if !strings.Contains(page, want) {
				t.Errorf("%s: page lacks %q", tt.name, want)
			}
		}
		for id, want := range tt.lines {
			chart := chartSVG(page, id)
			switch {
			case chart == "":
				t.Errorf("%s: no chart %q", tt.name, id)
			case want < 0 && (strings.Contains(chart, "<svg") || !strings.Contains(chart, `class="empty"`)):
				t.Errorf("%s: chart %q draws something; want only a note", tt.name, id)
			case want >= 0 && strings.Count(chart, "<polyline") != want:
				t.Errorf("%s: chart %q has %d lines; want %d", tt.name, id, strings.Count(chart, "<polyline"), want)
			}
		}
		for _, want := range tt.wantNotes {
			if !strings.Contains(page, want) {
				t.Errorf("%s: page lacks the note %q", tt.name, want)
			}
		}
		// The window is shaded on both process charts when they are drawn.
		if tt.lines["cpu"] > 0 && (!strings.Contains(chartSVG(page, "cpu"), `class="band"`) || !strings.Contains(chartSVG(page, "rss"), `class="band"`)) {
			t.Errorf("%s: process charts do not shade the measurement window", tt.name)
		}
		if tt.lines["distribution"] > 0 && !strings.Contains(chartSVG(page, "distribution"), ">99.9%<") {
			t.Errorf("%s: distribution chart has no 99.9%% tick", tt.name)
		}
	}
}

func TestLatencyDist(t *testing.T) {
	tests := []struct {
		n        int     // samples 1..n ms
		wantLen  int     // points
		wantLast float64 // percentile of the last point
	}{
		{n: 0, wantLen: 0},
		{n: 1, wantLen: 1, wantLast: 0},
		{n: 10, wantLen: 11, wantLast: 90},
		{n: 1000, wantLen: 31, wantLast: 99.9},
		{n: 2_000_000, wantLen: 61, wantLast: 99.9999},
	}
	for _, tt := range tests {
		h := newHist()
		if tt.n > 0 {
			// RecordValues spreads the count without a loop of millions.
			_ = h.RecordValues(1000, int64(tt.n)-1)
			_ = h.RecordValue(int64(tt.n) * 1000)
		}
		d := latencyDist(h)
		if len(d) != tt.wantLen {
			t.Errorf("n=%d: %d points; want %d", tt.n, len(d), tt.wantLen)
			continue
		}
		if len(d) == 0 {
			continue
		}
		if last := d[len(d)-1].Percentile; math.Abs(last-tt.wantLast) > 1e-9 {
			t.Errorf("n=%d: last percentile %v; want %v", tt.n, last, tt.wantLast)
		}
		for i := 1; i < len(d); i++ {
			if d[i].Percentile <= d[i-1].Percentile || d[i].Ms < d[i-1].Ms {
				t.Errorf("n=%d: point %d %+v does not follow %+v", tt.n, i, d[i], d[i-1])
			}
		}
	}
}

func TestNinesLabel(t *testing.T) {
	tests := []struct {
		x    float64
		want string
	}{{0, "0%"}, {1, "90%"}, {2, "99%"}, {3, "99.9%"}, {5, "99.999%"}}
	for _, tt := range tests {
		if got := ninesLabel(tt.x); got != tt.want {
			t.Errorf("ninesLabel(%v) = %q; want %q", tt.x, got, tt.want)
		}
	}
}

// TestReportFile runs the tool with -report and -json through runMain
// and checks that the page it wrote holds the run's metadata, with the
// secret header redacted, and charts of real samples: the test process
// stands in for the server.
func TestReportFile(t *testing.T) {
	out := t.TempDir() + "/run.html"
	url := newRelay(t, &relay{flavour: formatJSON})
	code, rep, _ := runJSON(t, benchArgs(url, "-report", out, "-server-pid", strconv.Itoa(os.Getpid()),
		"-header", "Authorization: Bearer sekrit", "-max-p99", "10s"))
	if code != exitPass || rep == nil {
		t.Fatalf("exit code %d, report %v; want a passing run", code, rep != nil)
	}
	b, err := os.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	page := string(b)
	if strings.Contains(page, "sekrit") || strings.Contains(strings.Join(rep.Meta.Flags, " "), "sekrit") {
		t.Errorf("the report shows the Authorization header's value")
	}
	for _, want := range []string{
		"hubbub-bench</td><td>" + toolVersion(), rep.Meta.Started.Format(time.RFC3339), "<td>target</td><td>" + url,
		"-clients=8", "-max-p99=10s", "-header=Authorization: REDACTED", `<span class="PASS">PASS</span>`,
	} {
		if !strings.Contains(page, want) {
			t.Errorf("page lacks %q", want)
		}
	}
	if time.Since(rep.Meta.Started) > time.Minute || rep.Meta.GoVersion == "" {
		t.Errorf("meta = %+v; want this run's start and Go version", rep.Meta)
	}
	if len(rep.ProcTimeline) == 0 || rep.ProcTimeline[len(rep.ProcTimeline)-1].Server == nil {
		t.Fatalf("proc timeline %+v; want server samples", rep.ProcTimeline)
	}
	if rep.WindowStartSec <= 0 || len(rep.LatencyDist) < 2 {
		t.Errorf("window start %v s, %d distribution points; want > 0 and several", rep.WindowStartSec, len(rep.LatencyDist))
	}
	for id, want := range map[string]int{"distribution": 1, "cpu": 2, "rss": 2} {
		if n := strings.Count(chartSVG(page, id), "<polyline"); n != want {
			t.Errorf("chart %s has %d lines; want %d", id, n, want)
		}
	}
}

// TestReportedArgs checks what the report's metadata shows of a command
// line: every flag that was set, and no secret.
func TestReportedArgs(t *testing.T) {
	tests := []struct {
		args []string
		want []string
	}{
		{nil, []string{}},
		{[]string{"-clients", "5", "-json"}, []string{"-clients=5", "-json=true"}},
		{[]string{"-login", "bench:pa:ss"}, []string{"-login=bench:REDACTED"}},
		{[]string{"-jwt-secret", "k3y"}, []string{"-jwt-secret=REDACTED"}},
		{[]string{"-ticket", "t1ck"}, []string{"-ticket=REDACTED"}},
		{[]string{"-header", "X-B: 1", "-header", "Authorization: Bearer t0k"},
			[]string{"-header=Authorization: REDACTED", "-header=X-B: REDACTED"}},
		{[]string{"-url", "ws://u:pw@127.0.0.1:1/ws"}, []string{"-url=ws://u:xxxxx@127.0.0.1:1/ws"}},
		{[]string{"-max-conn-failures", "1%", "-max-p99", "50ms"}, []string{"-max-conn-failures=1%", "-max-p99=50ms"}},
	}
	for _, tt := range tests {
		o, err := parseArgs(tt.args, io.Discard)
		if err != nil {
			t.Errorf("parseArgs(%q): %v", tt.args, err)
			continue
		}
		if !slices.Equal(o.cfg.Args, tt.want) {
			t.Errorf("parseArgs(%q) reports %q; want %q", tt.args, o.cfg.Args, tt.want)
		}
	}
}

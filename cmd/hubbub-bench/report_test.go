package main

import (
	"bytes"
	"encoding/json"
	"math"
	"regexp"
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

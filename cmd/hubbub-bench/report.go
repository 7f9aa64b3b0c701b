package main

import (
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"math"
	"runtime"
	"slices"
	"strings"
	"time"

	hdrhistogram "github.com/HdrHistogram/hdrhistogram-go"
)

// Report is the result of one run (of one shard). Its JSON form is what
// -json prints; field names are stable for scripts.
type Report struct {
	Meta Meta `json:"meta"`

	Scenario      string  `json:"scenario"`
	URL           string  `json:"url"`
	Proto         string  `json:"proto"`
	Format        string  `json:"format"`
	Raw           bool    `json:"raw"` // Proto == "raw", kept for older scripts
	Shard         string  `json:"shard"`
	Clients       int     `json:"clients"`         // planned for this shard
	Senders       int     `json:"senders"`         // planned for this shard
	Rooms         int     `json:"rooms"`           // in the whole run
	RatePerSender float64 `json:"rate_per_sender"` // msg/s
	SizeBytes     int     `json:"size_bytes"`
	WindowSec     float64 `json:"window_sec"`
	WarmupSec     float64 `json:"warmup_sec"`
	// WindowStartSec is when the window opened, in seconds since the run
	// started (the time axis of ProcTimeline); 0 if it never opened.
	WindowStartSec float64 `json:"window_start_sec"`

	ConnOK int64 `json:"conn_ok"`
	// ConnFailed counts failed dials, churn redials included.
	ConnFailed int64 `json:"conn_failed"`
	// NotAttempted counts planned connections never dialled, because the
	// connect phase stopped early (open-file limit, interrupt).
	NotAttempted int64 `json:"not_attempted"`
	// ConnFailures is what -max-conn-failures limits: ConnFailed plus
	// NotAttempted plus all UnexpectedCloses.
	ConnFailures    int64  `json:"conn_failures"`
	FirstConnError  string `json:"first_conn_error,omitempty"`
	FileLimit       uint64 `json:"file_limit"`
	FileLimitHit    bool   `json:"file_limit_hit"`
	Reconnects      int64  `json:"reconnects,omitempty"`
	ReconnectFailed int64  `json:"reconnect_failed,omitempty"`

	Sent         int64 `json:"sent"`          // all messages written, warmup included
	SentMeasured int64 `json:"sent_measured"` // written inside the window
	WriteErrors  int64 `json:"write_errors"`
	// Expected is the sum over measured messages of the room's members (in
	// this process) when the message was sent.
	Expected int64 `json:"expected"`
	// Received is unique measured deliveries of this shard's own messages,
	// the counterpart of Expected.
	Received int64 `json:"received"`
	// ReceivedAll adds measured messages from other shards' senders.
	ReceivedAll      int64   `json:"received_all"`
	DeliveryRatio    float64 `json:"delivery_ratio"`
	Duplicates       int64   `json:"duplicates"`
	DeliveriesPerSec float64 `json:"deliveries_per_sec"`

	Latency LatencyStats `json:"latency"`
	// LatencyDist is the latency at a series of percentiles, for the
	// distribution chart; see latencyDist.
	LatencyDist []DistPoint `json:"latency_distribution"`

	Frames        int64   `json:"frames"`         // data frames received
	MessageFrames int64   `json:"message_frames"` // frames holding benchmark messages
	Messages      int64   `json:"messages"`       // benchmark messages in them
	Coalescing    float64 `json:"coalescing"`     // messages per message frame

	UnexpectedCloses map[string]int64 `json:"unexpected_closes"`
	ServerErrors     map[string]int64 `json:"server_errors"`

	Server *ProcStats `json:"server,omitempty"`
	Tool   *ProcStats `json:"tool,omitempty"`

	Timeline []Point `json:"timeline"`
	// ProcTimeline samples the server's and the tool's CPU and RSS about
	// once a second over the whole run, connect phase included.
	ProcTimeline []ProcPoint `json:"proc_timeline"`

	// Interrupted is set when a signal ended the run before its drain.
	Interrupted bool `json:"interrupted"`
	// Checks are the thresholds' verdicts (see judge); Pass is true when
	// all of them passed, and the tool then exits 0.
	Checks []Check `json:"checks"`
	Pass   bool    `json:"pass"`
}

// Meta says which tool made a report, when, how and against what.
type Meta struct {
	Version   string    `json:"version"`
	GoVersion string    `json:"go_version"`
	Started   time.Time `json:"started"`
	Target    string    `json:"target"`
	// Flags is the command line as given, with secrets redacted.
	Flags []string `json:"flags"`
}

// DistPoint is the latency at one percentile.
type DistPoint struct {
	Percentile float64 `json:"percentile"`
	Ms         float64 `json:"ms"`
}

// LatencyStats summarises the latency histogram, in milliseconds.
type LatencyStats struct {
	Count int64   `json:"count"`
	P50   float64 `json:"p50_ms"`
	P90   float64 `json:"p90_ms"`
	P99   float64 `json:"p99_ms"`
	P999  float64 `json:"p999_ms"`
	Max   float64 `json:"max_ms"`
	Mean  float64 `json:"mean_ms"`
}

// ProcStats is what /proc said about a process over the run.
type ProcStats struct {
	PID        string  `json:"pid"`
	RSSStartKB int64   `json:"rss_start_kb"`
	RSSEndKB   int64   `json:"rss_end_kb"`
	Conns      int64   `json:"conns"` // connections open at the end sample
	PerConnB   float64 `json:"rss_per_conn_bytes"`
	CPUPercent float64 `json:"cpu_percent"` // of one core, over the window
}

// report assembles the Report after the run and judges it. It must be
// called after the sampler stopped (it reads the Recorder's totals and
// procs).
func (b *Bench) report(srv, self procProbe, procs *procTimeline, connsAtEnd int64, interrupted bool) *Report {
	cfg := &b.cfg
	r := &Report{
		Meta: Meta{
			Version:   toolVersion(),
			GoVersion: runtime.Version(),
			Started:   procs.start,
			Target:    b.base.Redacted(),
			Flags:     cfg.Args,
		},
		Scenario:      cfg.Scenario,
		URL:           b.base.Redacted(),
		Proto:         cfg.Proto,
		Format:        cfg.Format,
		Raw:           cfg.Raw,
		Shard:         cfg.Shard.String(),
		Clients:       len(b.slots),
		Senders:       len(b.senders),
		Rooms:         cfg.Rooms,
		RatePerSender: cfg.Rate,
		SizeBytes:     cfg.Size,
		WindowSec:     cfg.Duration.Seconds(),
		WarmupSec:     cfg.Warmup.Seconds(),

		ConnOK:          b.connOK.Load(),
		ConnFailed:      b.connFailed.Load(),
		FileLimit:       b.fileLimit,
		FileLimitHit:    b.fdLimit.Load(),
		Reconnects:      b.reconnects.Load(),
		ReconnectFailed: b.reconFail.Load(),

		Sent:         b.sent.Load(),
		SentMeasured: b.sentMeasured.Load(),
		WriteErrors:  b.writeErrors.Load(),
		Expected:     b.expected.Load(),
		Received:     b.rec.measuredOwn.Load(),
		ReceivedAll:  b.rec.measured.Load(),
		Duplicates:   b.rec.duplicates.Load(),

		Frames:        b.rec.frames.Load(),
		MessageFrames: b.rec.msgFrames.Load(),
		Messages:      b.rec.markers.Load(),
		Timeline:      b.rec.timeline,
		ProcTimeline:  procs.points,
		Interrupted:   interrupted,
	}
	if r.Meta.Flags == nil {
		r.Meta.Flags = []string{}
	}
	if r.ProcTimeline == nil {
		r.ProcTimeline = []ProcPoint{}
	}
	if w := b.win.Load(); w != nil {
		r.WindowStartSec = time.Unix(0, w.start).Sub(procs.start).Seconds()
	}
	r.FirstConnError = b.firstDialError()
	// Only own-shard deliveries have a matching expectation; see Received.
	r.DeliveryRatio = ratio(r.Received, r.Expected)
	r.Coalescing = ratio(r.Messages, r.MessageFrames)
	// Per second of window: late arrivals during drain belong to messages
	// sent inside it, so they count toward its rate.
	r.DeliveriesPerSec = float64(r.ReceivedAll) / cfg.Duration.Seconds()
	r.Latency = latencyStats(b.rec)
	r.LatencyDist = latencyDist(b.rec.total)
	r.ServerErrors, r.UnexpectedCloses = b.rec.counts()
	if r.Timeline == nil {
		r.Timeline = []Point{}
	}
	if st, ok := procStats(&srv, connsAtEnd); ok {
		r.Server = st
	}
	if st, ok := procStats(&self, connsAtEnd); ok {
		r.Tool = st
	}
	r.finish(cfg.Thresholds)
	return r
}

// finish derives the failure counts from the raw counters and judges r
// against th, setting Checks and Pass.
func (r *Report) finish(th Thresholds) {
	// ConnFailed includes churn's failed redials; those slots were
	// attempted in the connect phase already.
	r.NotAttempted = max(int64(r.Clients)-r.ConnOK-(r.ConnFailed-r.ReconnectFailed), 0)
	r.ConnFailures = r.ConnFailed + r.NotAttempted + sumCounts(r.UnexpectedCloses)
	r.Checks = judge(r, th)
	r.Pass = allPass(r.Checks)
}

// procStats turns a probe into ProcStats, with the RSS growth spread over
// the connections open at the end.
func procStats(p *procProbe, conns int64) (*ProcStats, bool) {
	first, last, cpu, err := p.stats()
	if err != nil {
		return nil, false
	}
	return &ProcStats{
		PID:        p.pid,
		RSSStartKB: first.RSSKB,
		RSSEndKB:   last.RSSKB,
		Conns:      conns,
		PerConnB:   perConnBytes(first.RSSKB, last.RSSKB, int(conns)),
		CPUPercent: cpu,
	}, true
}

// latencyStats reads the percentiles from the Recorder's total histogram.
func latencyStats(rec *Recorder) LatencyStats {
	h := rec.total
	if h.TotalCount() == 0 {
		return LatencyStats{}
	}
	return LatencyStats{
		Count: h.TotalCount(),
		P50:   usToMs(h.ValueAtQuantile(50)),
		P90:   usToMs(h.ValueAtQuantile(90)),
		P99:   usToMs(h.ValueAtQuantile(99)),
		P999:  usToMs(h.ValueAtQuantile(99.9)),
		Max:   usToMs(h.Max()),
		Mean:  h.Mean() / 1000,
	}
}

// distSteps is how many points latencyDist takes per "nine" (90%, 99%,
// 99.9%, …), and distNines the most nines it goes to.
const (
	distSteps = 10
	distNines = 6
)

// latencyDist reads h at percentiles spaced evenly on a log scale of the
// tail, 100*(1 - 10^(-k/distSteps)): ten points from 0% to 90%, ten more
// to 99%, and so on, as far as the sample count resolves (1000 samples
// reach 99.9%). That is where latency distributions differ; a linear
// axis would squeeze the whole tail into its last pixel.
func latencyDist(h *hdrhistogram.Histogram) []DistPoint {
	n := h.TotalCount()
	out := []DistPoint{}
	if n == 0 {
		return out
	}
	for k := 0; k <= distNines*distSteps; k++ {
		tail := math.Pow(10, -float64(k)/distSteps) // 1 - quantile
		if k > 0 && tail*float64(n) < 1-1e-9 {
			break
		}
		p := 100 * (1 - tail)
		out = append(out, DistPoint{Percentile: p, Ms: usToMs(h.ValueAtQuantile(p))})
	}
	return out
}

// ratio is a/b, or 0 when b is 0 (nothing expected is not "all delivered").
func ratio(a, b int64) float64 {
	if b == 0 {
		return 0
	}
	return float64(a) / float64(b)
}

// writeJSON prints r as indented JSON.
func (r *Report) writeJSON(w io.Writer) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	if err := enc.Encode(r); err != nil {
		return fmt.Errorf("encode report: %w", err)
	}
	return nil
}

// mode names the protocol and format for the report's heading.
func (r *Report) mode() string {
	switch {
	case r.Raw:
		return "raw text"
	case r.Proto == protoCentrifugo:
		return "centrifugo json"
	}
	return r.Format
}

// writeText prints r for a person.
func (r *Report) writeText(w io.Writer) error {
	var b strings.Builder
	p := func(format string, args ...any) { fmt.Fprintf(&b, format+"\n", args...) }
	p("hubbub-bench %s against %s (%s, shard %s)", r.Scenario, r.URL, r.mode(), r.Shard)
	p("  plan         %d clients, %d senders x %g msg/s, %d room(s), %d-byte messages, %gs window after %gs warmup",
		r.Clients, r.Senders, r.RatePerSender, r.Rooms, r.SizeBytes, r.WindowSec, r.WarmupSec)
	notTried := ""
	if r.NotAttempted > 0 {
		notTried = fmt.Sprintf(", %d not attempted", r.NotAttempted)
	}
	p("  connections  %d ok, %d failed%s (open-file limit %d)", r.ConnOK, r.ConnFailed, notTried, r.FileLimit)
	if r.FirstConnError != "" {
		p("               first error: %s", r.FirstConnError)
	}
	if r.FileLimitHit {
		p("               hit the open-file limit (%d): run several processes with -shard", r.FileLimit)
	}
	if r.Reconnects > 0 || r.ReconnectFailed > 0 {
		p("  churn        %d reconnects, %d failed", r.Reconnects, r.ReconnectFailed)
	}
	if r.Senders > 0 {
		p("  messages     %d sent (%d in window), %d write errors", r.Sent, r.SentMeasured, r.WriteErrors)
		p("  deliveries   %d of %d expected, ratio %.4f, %d duplicates", r.Received, r.Expected, r.DeliveryRatio, r.Duplicates)
		if r.ReceivedAll != r.Received {
			p("               %d including other shards' senders", r.ReceivedAll)
		}
		p("  throughput   %.0f deliveries/s", r.DeliveriesPerSec)
		l := r.Latency
		p("  latency ms   p50 %.3f  p90 %.3f  p99 %.3f  p99.9 %.3f  max %.3f  (mean %.3f, n=%d)",
			l.P50, l.P90, l.P99, l.P999, l.Max, l.Mean, l.Count)
		p("  frames       %d received, %d with messages, %.2f messages per frame", r.Frames, r.MessageFrames, r.Coalescing)
	}
	p("  closes       %s", formatCounts(r.UnexpectedCloses, "no unexpected closes"))
	if len(r.ServerErrors) > 0 {
		p("  server errs  %s", formatCounts(r.ServerErrors, ""))
	}
	for _, ps := range []struct {
		name string
		st   *ProcStats
	}{{"server", r.Server}, {"tool", r.Tool}} {
		if ps.st == nil {
			continue
		}
		p("  %-6s       pid %s: RSS %d -> %d KiB, %.0f B per connection (%d conns), CPU %.1f%% of a core",
			ps.name, ps.st.PID, ps.st.RSSStartKB, ps.st.RSSEndKB, ps.st.PerConnB, ps.st.Conns, ps.st.CPUPercent)
	}
	label := "checks"
	for _, c := range r.Checks {
		p("  %-12s %-4s  %s", label, checkStatus(c), c.Detail)
		label = ""
	}
	p("  verdict      %s", verdictWord(r.Pass))
	_, err := io.WriteString(w, b.String())
	return err
}

// checkStatus is the one-word state of c for the text and HTML reports.
func checkStatus(c Check) string {
	switch {
	case !c.Enabled:
		return "off"
	case c.Pass:
		return "ok"
	}
	return "FAIL"
}

// verdictWord names the outcome of the run.
func verdictWord(pass bool) string {
	if pass {
		return "PASS"
	}
	return "FAIL"
}

// formatCounts prints a count map sorted by key, or none if empty.
func formatCounts(m map[string]int64, none string) string {
	if len(m) == 0 {
		return none
	}
	var parts []string
	for _, k := range slices.Sorted(maps.Keys(m)) {
		parts = append(parts, fmt.Sprintf("%s: %d", k, m[k]))
	}
	return strings.Join(parts, ", ")
}

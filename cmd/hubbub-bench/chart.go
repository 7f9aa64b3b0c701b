package main

import (
	"fmt"
	"html/template"
	"io"
	"math"
	"strconv"
	"strings"
	"time"
)

// The -report page is plain HTML with inline SVG: no script, no CDN, so it
// opens offline and in any browser, and diffs as text.

// series is one line of a chart.
type series struct {
	Name   string
	Color  string
	Values []float64
	// Xs, if not nil, are this series' own x values, for a series with
	// gaps; otherwise it uses the chart's.
	Xs []float64
}

// Chart geometry in SVG user units.
const (
	chartW, chartH = 1100, 320
	padL, padR     = 70, 20
	padT, padB     = 36, 44
)

// niceStep rounds span/target up to 1, 2 or 5 times a power of ten, so axis
// ticks land on readable numbers.
func niceStep(span float64, target int) float64 {
	if span <= 0 || target < 1 {
		return 1
	}
	raw := span / float64(target)
	mag := math.Pow(10, math.Floor(math.Log10(raw)))
	for _, m := range []float64{1, 2, 5, 10} {
		if raw <= m*mag {
			return m * mag
		}
	}
	return 10 * mag
}

// fmtNum prints an axis value without noise digits.
func fmtNum(v float64) string {
	switch {
	case v == 0:
		return "0"
	case math.Abs(v) >= 1e6:
		return strconv.FormatFloat(v/1e6, 'f', -1, 64) + "M"
	case math.Abs(v) >= 1e4:
		return strconv.FormatFloat(v/1e3, 'f', -1, 64) + "k"
	}
	return strconv.FormatFloat(v, 'g', 4, 64)
}

// lineChart is one chart of the report: series over shared x values,
// with axes from zero, grid and legend.
type lineChart struct {
	Title, XLabel, YLabel string
	Xs                    []float64
	Series                []series
	// XTick, if set, labels the x ticks, which then fall on whole
	// numbers; otherwise they are plain numbers at a nice step.
	XTick func(x float64) string
	// Band, if Band[1] > Band[0], shades that x range, labelled
	// BandLabel (the measurement window on a whole-run axis).
	Band      [2]float64
	BandLabel string
}

// svgLineChart draws series over xs (seconds since measurement start).
func svgLineChart(title, yLabel string, xs []float64, ss []series) string {
	return lineChart{Title: title, XLabel: "seconds since measurement start", YLabel: yLabel, Xs: xs, Series: ss}.svg()
}

// svg renders the chart. All text is escaped; the result is safe to
// embed as template.HTML.
func (c lineChart) svg() string {
	var b strings.Builder
	esc := template.HTMLEscapeString
	fmt.Fprintf(&b, `<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 %d %d" width="%d" height="%d" font-family="sans-serif" font-size="13">`,
		chartW, chartH, chartW, chartH)
	fmt.Fprintf(&b, `<rect width="%d" height="%d" fill="#fff"/>`, chartW, chartH)
	fmt.Fprintf(&b, `<text x="%d" y="22" font-size="16" font-weight="bold">%s</text>`, padL, esc(c.Title))

	xMax, yMax := 1.0, 0.0
	for _, x := range c.Xs {
		xMax = math.Max(xMax, x)
	}
	for _, s := range c.Series {
		for _, v := range s.Values {
			yMax = math.Max(yMax, v)
		}
		for _, x := range s.Xs {
			xMax = math.Max(xMax, x)
		}
	}
	// Axes start at zero: a latency chart whose floor floats exaggerates
	// jitter. The top is rounded up to a whole tick.
	yStep := niceStep(yMax, 5)
	yTop := math.Max(yStep, math.Ceil(yMax/yStep)*yStep)
	xStep := niceStep(xMax, 10)
	xLabel := fmtNum
	if c.XTick != nil {
		xStep, xLabel = math.Max(1, math.Round(xStep)), c.XTick
	}
	xTop := math.Ceil(xMax/xStep) * xStep
	plotW, plotH := float64(chartW-padL-padR), float64(chartH-padT-padB)
	px := func(x float64) float64 { return padL + x/xTop*plotW }
	py := func(y float64) float64 { return padT + plotH - y/yTop*plotH }

	if lo, hi := math.Max(c.Band[0], 0), math.Min(c.Band[1], xTop); hi > lo {
		fmt.Fprintf(&b, `<rect class="band" x="%.1f" y="%d" width="%.1f" height="%.0f" fill="#eef4fb"/>`, px(lo), padT, px(hi)-px(lo), plotH)
		fmt.Fprintf(&b, `<text x="%.1f" y="%d" fill="#5a7ca8">%s</text>`, px(lo)+4, padT+14, esc(c.BandLabel))
	}
	for y := 0.0; y <= yTop+yStep/2; y += yStep {
		fmt.Fprintf(&b, `<line x1="%d" x2="%d" y1="%.1f" y2="%.1f" stroke="#e3e3e3"/>`, padL, chartW-padR, py(y), py(y))
		fmt.Fprintf(&b, `<text x="%d" y="%.1f" text-anchor="end" fill="#444">%s</text>`, padL-6, py(y)+4, fmtNum(y))
	}
	for x := 0.0; x <= xTop+xStep/2; x += xStep {
		fmt.Fprintf(&b, `<line x1="%.1f" x2="%.1f" y1="%d" y2="%d" stroke="#f0f0f0"/>`, px(x), px(x), padT, chartH-padB)
		// A label centred on the right edge would be cut off by the frame.
		anchor := "middle"
		if px(x)+30 > chartW {
			anchor = "end"
		}
		fmt.Fprintf(&b, `<text x="%.1f" y="%d" text-anchor="%s" fill="#444">%s</text>`, px(x), chartH-padB+18, anchor, esc(xLabel(x)))
	}
	fmt.Fprintf(&b, `<rect x="%d" y="%d" width="%.0f" height="%.0f" fill="none" stroke="#888"/>`, padL, padT, plotW, plotH)
	fmt.Fprintf(&b, `<text x="%.0f" y="%d" text-anchor="middle" fill="#444">%s</text>`,
		padL+plotW/2, chartH-6, esc(c.XLabel))
	fmt.Fprintf(&b, `<text transform="translate(16 %.0f) rotate(-90)" text-anchor="middle" fill="#444">%s</text>`,
		padT+plotH/2, esc(c.YLabel))

	for i, s := range c.Series {
		xs := c.Xs
		if s.Xs != nil {
			xs = s.Xs
		}
		var pts []string
		for j, v := range s.Values {
			if j < len(xs) {
				pts = append(pts, fmt.Sprintf("%.1f,%.1f", px(xs[j]), py(v)))
			}
		}
		if len(pts) == 1 {
			// A single point would draw nothing as a polyline.
			fmt.Fprintf(&b, `<circle cx="%s" cy="%s" r="3" fill="%s"/>`,
				strings.Split(pts[0], ",")[0], strings.Split(pts[0], ",")[1], esc(s.Color))
		}
		fmt.Fprintf(&b, `<polyline fill="none" stroke="%s" stroke-width="2" points="%s"/>`,
			esc(s.Color), strings.Join(pts, " "))
		// Legend entries sit right-aligned above the plot, one per series.
		lx := chartW - padR - 150*(len(c.Series)-i)
		fmt.Fprintf(&b, `<rect x="%d" y="12" width="18" height="4" fill="%s"/><text x="%d" y="19">%s</text>`,
			lx, esc(s.Color), lx+24, esc(s.Name))
	}
	b.WriteString(`</svg>`)
	return b.String()
}

// ninesLabel names a position on the distribution chart's x axis, which
// counts nines: 0 is 0%, 1 is 90%, 2 is 99%, 3 is 99.9%.
func ninesLabel(x float64) string {
	n := int(math.Round(x))
	if n <= 0 {
		return "0%"
	}
	if n == 1 {
		return "90%"
	}
	return strings.TrimSuffix("99."+strings.Repeat("9", n-2), ".") + "%"
}

// reportPage is the -report template. It uses only inline CSS and SVG.
var reportPage = template.Must(template.New("report").Parse(`<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<title>hubbub-bench {{.R.Scenario}}: {{.Verdict}}</title>
<style>
body{font-family:sans-serif;margin:20px;color:#222;background:#fafafa}
h1{font-size:20px;margin:0 0 6px}
h2{font-size:16px;margin:14px 0 6px}
.meta{color:#555;margin-bottom:12px}
table{border-collapse:collapse;margin-bottom:14px;background:#fff}
td{border:1px solid #ddd;padding:3px 10px}
td.n{text-align:right;font-variant-numeric:tabular-nums}
.PASS,.ok{color:#1e7b45;font-weight:bold}
.FAIL{color:#b3261e;font-weight:bold}
.off{color:#888}
.chart{margin-bottom:10px}
.empty{color:#777;font-style:italic}
</style></head><body>
<h1>hubbub-bench: {{.R.Scenario}} <span class="{{.Verdict}}">{{.Verdict}}</span></h1>
<div class="meta">{{.R.URL}} &middot; {{.Mode}} &middot; shard {{.R.Shard}} &middot; {{.R.Clients}} clients,
{{.R.Senders}} senders &times; {{.R.RatePerSender}} msg/s, {{.R.Rooms}} room(s), {{.R.SizeBytes}}-byte messages,
{{.R.WindowSec}}s window</div>
<section id="run"><h2>Run</h2>
<table>
<tr><td>hubbub-bench</td><td>{{.R.Meta.Version}}, built with {{.R.Meta.GoVersion}}</td></tr>
<tr><td>started</td><td>{{.Started}}</td></tr>
<tr><td>target</td><td>{{.R.Meta.Target}}</td></tr>
<tr><td>flags</td><td><code>{{range .R.Meta.Flags}}{{.}} {{else}}(defaults){{end}}</code></td></tr>
</table></section>
<section id="checks"><h2>Verdict: <span class="{{.Verdict}}">{{.Verdict}}</span></h2>
<table>
{{range .Checks}}<tr><td class="{{.Status}}">{{.Status}}</td><td>{{.Detail}}</td></tr>
{{end}}</table></section>
<section id="numbers"><h2>Numbers</h2>
<table>
<tr><td>connections ok / failed</td><td class="n">{{.R.ConnOK}} / {{.R.ConnFailed}}</td>
<td>delivered / expected</td><td class="n">{{.R.Received}} / {{.R.Expected}}</td>
<td>delivery ratio</td><td class="n">{{printf "%.4f" .R.DeliveryRatio}}</td></tr>
<tr><td>deliveries/s</td><td class="n">{{printf "%.0f" .R.DeliveriesPerSec}}</td>
<td>duplicates</td><td class="n">{{.R.Duplicates}}</td>
<td>messages per frame</td><td class="n">{{printf "%.2f" .R.Coalescing}}</td></tr>
<tr><td>latency p50 / p90 ms</td><td class="n">{{printf "%.3f" .R.Latency.P50}} / {{printf "%.3f" .R.Latency.P90}}</td>
<td>p99 / p99.9 ms</td><td class="n">{{printf "%.3f" .R.Latency.P99}} / {{printf "%.3f" .R.Latency.P999}}</td>
<td>max ms</td><td class="n">{{printf "%.3f" .R.Latency.Max}}</td></tr>
</table></section>
{{range .Charts}}<div class="chart" id="chart-{{.ID}}">{{if .SVG}}{{.SVG}}{{end}}{{if .Note}}<p class="empty">{{.Note}}</p>{{end}}</div>
{{end}}</body></html>
`))

// htmlChart is one chart of the page: the SVG, or a note saying why it
// is missing or incomplete, or both.
type htmlChart struct {
	ID   string
	SVG  template.HTML // made by lineChart.svg, which escapes what it embeds
	Note string
}

// writeHTML renders r as a self-contained HTML page: the run's metadata,
// the verdict, the numbers, and charts of latency and deliveries per
// second, the latency distribution, and CPU and RSS of the server and the
// tool over the whole run.
func (r *Report) writeHTML(w io.Writer) error {
	xs := make([]float64, len(r.Timeline))
	var p50, p99, mx, rate []float64
	for i, p := range r.Timeline {
		xs[i] = p.T
		p50 = append(p50, p.P50ms)
		p99 = append(p99, p.P99ms)
		mx = append(mx, p.Maxms)
		rate = append(rate, p.PerSec)
	}
	type checkRow struct{ Status, Detail string }
	var checks []checkRow
	for _, c := range r.Checks {
		checks = append(checks, checkRow{checkStatus(c), c.Detail})
	}
	data := struct {
		R       *Report
		Mode    string
		Verdict string
		Started string
		Checks  []checkRow
		Charts  []htmlChart
	}{
		R:       r,
		Mode:    r.mode(),
		Verdict: verdictWord(r.Pass),
		Started: r.Meta.Started.Format(time.RFC3339),
		Checks:  checks,
		Charts: []htmlChart{
			{ID: "latency", SVG: template.HTML(svgLineChart("Latency per second", "milliseconds", xs, []series{
				{Name: "p50", Color: "#2b7bba", Values: p50}, {Name: "p99", Color: "#e6851e", Values: p99},
				{Name: "max", Color: "#c0392b", Values: mx},
			}))},
			{ID: "rate", SVG: template.HTML(svgLineChart("Deliveries per second", "deliveries/s", xs, []series{
				{Name: "deliveries/s", Color: "#27935a", Values: rate},
			}))},
			r.distChart(),
		},
	}
	data.Charts = append(data.Charts, r.procCharts()...)
	if err := reportPage.Execute(w, data); err != nil {
		return fmt.Errorf("render report: %w", err)
	}
	return nil
}

// distChart draws LatencyDist: latency against percentile, on an axis
// that gives each nine (90%, 99%, 99.9%) the same width.
func (r *Report) distChart() htmlChart {
	c := htmlChart{ID: "distribution"}
	if len(r.LatencyDist) == 0 {
		c.Note = "Latency distribution: no latency was measured."
		return c
	}
	var xs, ms []float64
	for _, d := range r.LatencyDist {
		xs = append(xs, -math.Log10(1-d.Percentile/100))
		ms = append(ms, d.Ms)
	}
	c.SVG = template.HTML(lineChart{
		Title: fmt.Sprintf("Latency distribution (%d messages)", r.Latency.Count), XLabel: "percentile",
		YLabel: "milliseconds", Xs: xs, XTick: ninesLabel,
		Series: []series{{Name: "latency", Color: "#7b4bb3", Values: ms}},
	}.svg())
	return c
}

// procCharts draws ProcTimeline: CPU and RSS of the server and the tool
// over the whole run, with the measurement window shaded.
func (r *Report) procCharts() []htmlChart {
	cpu, rss := htmlChart{ID: "cpu"}, htmlChart{ID: "rss"}
	if len(r.ProcTimeline) == 0 {
		cpu.Note = "CPU: no process samples."
		rss.Note = "RSS: no process samples."
		return []htmlChart{cpu, rss}
	}
	var srvT, srvCPU, srvRSS, toolT, toolCPU, toolRSS []float64
	for _, p := range r.ProcTimeline {
		if s := p.Server; s != nil {
			srvT, srvCPU, srvRSS = append(srvT, p.T), append(srvCPU, s.CPUPercent), append(srvRSS, float64(s.RSSKB)/1024)
		}
		if s := p.Tool; s != nil {
			toolT, toolCPU, toolRSS = append(toolT, p.T), append(toolCPU, s.CPUPercent), append(toolRSS, float64(s.RSSKB)/1024)
		}
	}
	var cpuS, rssS []series
	if srvT != nil {
		cpuS = append(cpuS, series{Name: "server", Color: "#c0392b", Values: srvCPU, Xs: srvT})
		rssS = append(rssS, series{Name: "server", Color: "#c0392b", Values: srvRSS, Xs: srvT})
	} else {
		cpu.Note = "The server was not sampled: pass -server-pid to chart its CPU and RSS."
		rss.Note = cpu.Note
	}
	if toolT != nil {
		cpuS = append(cpuS, series{Name: "hubbub-bench", Color: "#2b7bba", Values: toolCPU, Xs: toolT})
		rssS = append(rssS, series{Name: "hubbub-bench", Color: "#2b7bba", Values: toolRSS, Xs: toolT})
	}
	band := [2]float64{r.WindowStartSec, r.WindowStartSec + r.WindowSec}
	if r.WindowStartSec == 0 {
		band = [2]float64{} // the window never opened
	}
	const xLabel = "seconds since the run started"
	cpu.SVG = template.HTML(lineChart{Title: "CPU", XLabel: xLabel, YLabel: "% of one core", Series: cpuS,
		Band: band, BandLabel: "measured"}.svg())
	rss.SVG = template.HTML(lineChart{Title: "Resident memory (RSS)", XLabel: xLabel, YLabel: "MiB", Series: rssS,
		Band: band, BandLabel: "measured"}.svg())
	return []htmlChart{cpu, rss}
}

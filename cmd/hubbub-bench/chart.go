package main

import (
	"fmt"
	"html/template"
	"io"
	"math"
	"strconv"
	"strings"
)

// The -report page is plain HTML with inline SVG: no script, no CDN, so it
// opens offline and in any browser, and diffs as text.

// series is one line of a chart.
type series struct {
	Name   string
	Color  string
	Values []float64
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

// svgLineChart draws series over xs (seconds) with axes, grid and legend.
// All text is escaped; the result is safe to embed as template.HTML.
func svgLineChart(title, yLabel string, xs []float64, ss []series) string {
	var b strings.Builder
	esc := template.HTMLEscapeString
	fmt.Fprintf(&b, `<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 %d %d" width="%d" height="%d" font-family="sans-serif" font-size="13">`,
		chartW, chartH, chartW, chartH)
	fmt.Fprintf(&b, `<rect width="%d" height="%d" fill="#fff"/>`, chartW, chartH)
	fmt.Fprintf(&b, `<text x="%d" y="22" font-size="16" font-weight="bold">%s</text>`, padL, esc(title))

	xMax, yMax := 1.0, 0.0
	for _, x := range xs {
		xMax = math.Max(xMax, x)
	}
	for _, s := range ss {
		for _, v := range s.Values {
			yMax = math.Max(yMax, v)
		}
	}
	// Axes start at zero: a latency chart whose floor floats exaggerates
	// jitter. The top is rounded up to a whole tick.
	yStep := niceStep(yMax, 5)
	yTop := math.Max(yStep, math.Ceil(yMax/yStep)*yStep)
	xStep := niceStep(xMax, 10)
	xTop := math.Ceil(xMax/xStep) * xStep
	plotW, plotH := float64(chartW-padL-padR), float64(chartH-padT-padB)
	px := func(x float64) float64 { return padL + x/xTop*plotW }
	py := func(y float64) float64 { return padT + plotH - y/yTop*plotH }

	for y := 0.0; y <= yTop+yStep/2; y += yStep {
		fmt.Fprintf(&b, `<line x1="%d" x2="%d" y1="%.1f" y2="%.1f" stroke="#e3e3e3"/>`, padL, chartW-padR, py(y), py(y))
		fmt.Fprintf(&b, `<text x="%d" y="%.1f" text-anchor="end" fill="#444">%s</text>`, padL-6, py(y)+4, fmtNum(y))
	}
	for x := 0.0; x <= xTop+xStep/2; x += xStep {
		fmt.Fprintf(&b, `<line x1="%.1f" x2="%.1f" y1="%d" y2="%d" stroke="#f0f0f0"/>`, px(x), px(x), padT, chartH-padB)
		fmt.Fprintf(&b, `<text x="%.1f" y="%d" text-anchor="middle" fill="#444">%s</text>`, px(x), chartH-padB+18, fmtNum(x))
	}
	fmt.Fprintf(&b, `<rect x="%d" y="%d" width="%.0f" height="%.0f" fill="none" stroke="#888"/>`, padL, padT, plotW, plotH)
	fmt.Fprintf(&b, `<text x="%.0f" y="%d" text-anchor="middle" fill="#444">seconds since measurement start</text>`,
		padL+plotW/2, chartH-6)
	fmt.Fprintf(&b, `<text transform="translate(16 %.0f) rotate(-90)" text-anchor="middle" fill="#444">%s</text>`,
		padT+plotH/2, esc(yLabel))

	for i, s := range ss {
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
		lx := chartW - padR - 150*(len(ss)-i)
		fmt.Fprintf(&b, `<rect x="%d" y="12" width="18" height="4" fill="%s"/><text x="%d" y="19">%s</text>`,
			lx, esc(s.Color), lx+24, esc(s.Name))
	}
	b.WriteString(`</svg>`)
	return b.String()
}

// reportPage is the -report template. It uses only inline CSS and SVG.
var reportPage = template.Must(template.New("report").Parse(`<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<title>hubbub-bench {{.R.Scenario}}</title>
<style>
body{font-family:sans-serif;margin:20px;color:#222;background:#fafafa}
h1{font-size:20px;margin:0 0 6px}
.meta{color:#555;margin-bottom:12px}
table{border-collapse:collapse;margin-bottom:14px;background:#fff}
td{border:1px solid #ddd;padding:3px 10px}
td.n{text-align:right;font-variant-numeric:tabular-nums}
.chart{margin-bottom:10px}
</style></head><body>
<h1>hubbub-bench: {{.R.Scenario}}</h1>
<div class="meta">{{.R.URL}} &middot; {{.Mode}} &middot; shard {{.R.Shard}} &middot; {{.R.Clients}} clients,
{{.R.Senders}} senders &times; {{.R.RatePerSender}} msg/s, {{.R.Rooms}} room(s), {{.R.SizeBytes}}-byte messages,
{{.R.WindowSec}}s window</div>
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
</table>
<div class="chart">{{.Latency}}</div>
<div class="chart">{{.Rate}}</div>
</body></html>
`))

// writeHTML renders r as a self-contained HTML page with two charts:
// per-second latency percentiles and deliveries per second.
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
	data := struct {
		R             *Report
		Mode          string
		Latency, Rate template.HTML
	}{
		R:    r,
		Mode: r.mode(),
		// svgLineChart escapes every string it embeds.
		Latency: template.HTML(svgLineChart("Latency per second", "milliseconds", xs, []series{
			{"p50", "#2b7bba", p50}, {"p99", "#e6851e", p99}, {"max", "#c0392b", mx},
		})),
		Rate: template.HTML(svgLineChart("Deliveries per second", "deliveries/s", xs, []series{
			{"deliveries/s", "#27935a", rate},
		})),
	}
	if err := reportPage.Execute(w, data); err != nil {
		return fmt.Errorf("render report: %w", err)
	}
	return nil
}

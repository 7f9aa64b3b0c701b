package main

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/gorilla/websocket"
	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"hubbub/internal/wsconn"
)

// scrape is one parsed /metrics exposition: sample value by series key,
// written the way Prometheus prints it, e.g.
// hubbub_clients_dropped_total{reason="too_big"}. Histograms appear as
// their _count and _sum series.
type scrape map[string]float64

// scrapeMetrics fetches and parses the server's /metrics.
func (s *testServer) scrapeMetrics(t testing.TB) scrape {
	t.Helper()
	resp, err := http.Get(s.ts.URL + "/metrics")
	if err != nil {
		t.Fatalf("GET /metrics: %v", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET /metrics: %s", resp.Status)
	}
	parser := expfmt.NewTextParser(model.UTF8Validation)
	families, err := parser.TextToMetricFamilies(resp.Body)
	if err != nil {
		t.Fatalf("parse /metrics: %v", err)
	}
	out := scrape{}
	for name, f := range families {
		for _, m := range f.GetMetric() {
			labels := seriesLabels(m)
			switch f.GetType() {
			case dto.MetricType_COUNTER:
				out[name+labels] = m.GetCounter().GetValue()
			case dto.MetricType_GAUGE:
				out[name+labels] = m.GetGauge().GetValue()
			case dto.MetricType_HISTOGRAM:
				out[name+"_count"+labels] = float64(m.GetHistogram().GetSampleCount())
				out[name+"_sum"+labels] = m.GetHistogram().GetSampleSum()
			}
		}
	}
	return out
}

// seriesLabels formats m's labels as {k="v",…}, sorted, or "" if none.
func seriesLabels(m *dto.Metric) string {
	var parts []string
	for _, l := range m.GetLabel() {
		parts = append(parts, fmt.Sprintf("%s=%q", l.GetName(), l.GetValue()))
	}
	if len(parts) == 0 {
		return ""
	}
	slices.Sort(parts)
	return "{" + strings.Join(parts, ",") + "}"
}

// waitMetric scrapes until series key has value want and returns that
// scrape.
func (s *testServer) waitMetric(t testing.TB, key string, want float64) scrape {
	t.Helper()
	return s.waitSeries(t, map[string]float64{key: want})
}

// waitSeries scrapes until every series in want has its value and returns
// that scrape, failing after 10s with the differences. Waiting is needed
// because the server's goroutines count after they act: a client can see
// an event a moment before it is counted.
func (s *testServer) waitSeries(t testing.TB, want map[string]float64) scrape {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		got := s.scrapeMetrics(t)
		diff := seriesDiff(got, want)
		if len(diff) == 0 {
			return got
		}
		if time.Now().After(deadline) {
			t.Fatalf("metrics differ:\n%s", strings.Join(diff, "\n"))
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// seriesDiff describes every series in want whose value in got differs.
func seriesDiff(got scrape, want map[string]float64) []string {
	var diff []string
	for k, w := range want {
		if v, ok := got[k]; !ok || v != w {
			diff = append(diff, fmt.Sprintf("%s = %v (present %v); want %v", k, v, ok, w))
		}
	}
	slices.Sort(diff)
	return diff
}

// checkSeries fails for every series in want whose value in got differs.
func checkSeries(t testing.TB, got scrape, want map[string]float64) {
	t.Helper()
	for _, d := range seriesDiff(got, want) {
		t.Error(d)
	}
}

func TestMetricsExportedAtZero(t *testing.T) {
	s := newTestServer(t, Config{})
	got := s.scrapeMetrics(t)
	want := map[string]float64{
		"hubbub_connections":                             0,
		"hubbub_connections_total":                       0,
		"hubbub_rooms":                                   0,
		`hubbub_messages_received_total{source="json"}`:  0,
		`hubbub_messages_received_total{source="text"}`:  0,
		`hubbub_messages_received_total{source="api"}`:   0,
		`hubbub_messages_delivered_total{format="json"}`: 0,
		`hubbub_frames_written_total{format="text"}`:     0,
		`hubbub_messages_per_write_count{format="json"}`: 0,
		"hubbub_send_queue_depth_at_drop_count":          0,
		"hubbub_hub_request_seconds_count":               0,
	}
	for _, l := range dropLabels {
		want[`hubbub_clients_dropped_total{reason="`+l+`"}`] = 0
	}
	checkSeries(t, got, want)
	if _, ok := got["go_goroutines"]; !ok {
		t.Error("go runtime metrics missing")
	}
}

// TestMetricsFollowTraffic connects clients, exchanges a message and
// disconnects, checking the counters after each step. The expected event
// counts follow from the protocol: a joiner gets room_changed (and, in JSON,
// a history event, empty here), the members already there get a presence
// event, and a message goes to everyone in the room including its sender.
func TestMetricsFollowTraffic(t *testing.T) {
	s := newTestServer(t, deployed(Config{}))
	a, _ := s.joined(t, "room", "r1", "name", "a")
	b := s.dial(t, "room", "r1", "name", "b", "format", "text")
	b.lineWith("you are b")
	a.expect("presence")
	c, _ := s.joined(t, "room", "r2", "name", "c")
	s.waitSeries(t, map[string]float64{
		`hubbub_messages_delivered_total{format="json"}`: 5,
		`hubbub_messages_delivered_total{format="text"}`: 1,
		"hubbub_connections":                             3,
		"hubbub_connections_total":                       3,
		"hubbub_rooms":                                   2,
	})

	a.say("hi")
	a.expect("new_message")
	b.lineWith("a: hi")
	got := s.waitSeries(t, map[string]float64{
		`hubbub_messages_delivered_total{format="text"}`: 2,
		`hubbub_messages_delivered_total{format="json"}`: 6,
		`hubbub_messages_received_total{source="json"}`:  1,
		`hubbub_messages_received_total{source="text"}`:  0,
		// Text clients get one frame per event.
		`hubbub_frames_written_total{format="text"}`:   2,
		`hubbub_messages_per_write_sum{format="text"}`: 2,
		`hubbub_messages_per_write_sum{format="json"}`: 6,
		"hubbub_hub_request_seconds_count":             1,
	})
	// JSON clients may get several events in one frame, but never more
	// frames than events, and each write is observed once.
	jf := got[`hubbub_frames_written_total{format="json"}`]
	if jf < 1 || jf > 6 || got[`hubbub_messages_per_write_count{format="json"}`] != jf {
		t.Errorf("json frames %v, writes observed %v; want equal, between 1 and 6",
			jf, got[`hubbub_messages_per_write_count{format="json"}`])
	}

	c.conn.WriteControl(websocket.CloseMessage, websocket.FormatCloseMessage(websocket.CloseNormalClosure, ""), time.Now().Add(time.Second))
	got = s.waitSeries(t, map[string]float64{"hubbub_connections": 2, "hubbub_rooms": 1})
	// Leaving of one's own accord is not a drop; the hub counts a drop
	// before it updates the gauges, so none can be pending here.
	checkSeries(t, got, map[string]float64{
		`hubbub_clients_dropped_total{reason="pong_timeout"}`: 0,
		"hubbub_send_queue_depth_at_drop_count":               0,
	})
}

// TestMetricsCountDrops provokes each reason the server has to close a
// connection (disconnect.go) and checks that exactly that reason is
// counted, with the queue depth observed once per dropped client, and that
// the client was sent the close code and reason of the table.
func TestMetricsCountDrops(t *testing.T) {
	pad := strings.Repeat("z", 390)
	tests := []struct {
		label     string
		cfg       Config
		small     bool // serve with small socket send buffers
		want      float64
		wantClose int // close code the provoked client sees; 0: not checked
		wantText  string
		provoke   func(t *testing.T, s *testServer) *peer
	}{
		{"too_big", Config{}, false, 1, 1009, "message over 512 bytes", func(t *testing.T, s *testServer) *peer {
			p, _ := s.joined(t)
			p.sendRaw(strings.Repeat("x", 600))
			return p
		}},
		{"pong_timeout", Config{PongWait: 300 * time.Millisecond, PingPeriod: 100 * time.Millisecond}, false,
			1, 0, "", func(t *testing.T, s *testServer) *peer {
				// A client that never reads never answers pings either.
				s.dial(t)
				return nil
			}},
		{"shutdown", Config{}, false, 2, 0, "", func(t *testing.T, s *testServer) *peer {
			s.joined(t, "name", "x")
			s.joined(t, "name", "y")
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			if err := s.Shutdown(ctx); err != nil {
				t.Fatal(err)
			}
			return nil
		}},
		{"slow_consumer", Config{SendQueue: 4, APIKey: "k"}, false, 1, 0, "", func(t *testing.T, s *testServer) *peer {
			s.dial(t, "room", "slow") // never reads
			// Publish until its socket buffers and then its queue are full:
			// until the room, which has only it, disappears. The dial
			// returns before the hub has it in the room, so first wait
			// for the room to appear.
			seen := false
			for i := 0; ; i++ {
				if i == 100000 {
					t.Fatal("slow client never dropped")
				}
				_, body := s.api(t, "POST", "/api/rooms/slow/messages", "k", `{"message":"`+pad+`"}`)
				here := strings.Contains(body, `"recipients":1`)
				if seen && !here {
					return nil
				}
				seen = seen || here
			}
		}},
		{"rate_limited", Config{MsgRate: 1, MsgBurst: 1}, false, 1, 1008, "flooding: too many messages refused",
			func(t *testing.T, s *testServer) *peer {
				p, _ := s.joined(t)
				for range floodStrikes + 1 {
					p.say("again")
				}
				return p
			}},
		{"write_timeout", Config{WriteWait: 300 * time.Millisecond, SendQueue: 100000}, true,
			1, 0, "", func(t *testing.T, s *testServer) *peer {
				// A client with a tiny receive buffer that never reads: its
				// writer blocks on a full socket long before its queue fills.
				s.dialTinyBuffer(t, "room", "stuck", "name", "stuck")
				a, _ := s.joined(t, "room", "stuck", "name", "alice")
				go func() { // alice reads, so only stuck's writes block
					for {
						if _, _, err := a.conn.ReadMessage(); err != nil {
							return
						}
					}
				}()
				for i := range 2000 {
					a.sendRaw(fmt.Sprintf(`{"type":"send_message","payload":{"message":"%d %s"}}`, i, pad))
				}
				return nil
			}},
		{"protocol_error", Config{}, false, 1, 1002, "protocol error: client frames must be masked",
			func(t *testing.T, s *testServer) *peer {
				p, _ := s.joined(t)
				p.conn.NetConn().Write([]byte{0x81, 0x02, 'h', 'i'}) // unmasked
				return p
			}},
		{"internal_error", Config{}, false, 1, 1011, "internal error", func(t *testing.T, s *testServer) *peer {
			p, _ := s.joined(t, "name", "boom")
			p.say("this message panics the reader")
			return p
		}},
	}
	for _, tt := range tests {
		t.Run(tt.label, func(t *testing.T) {
			if tt.label == "internal_error" {
				t.Cleanup(func() { panicHook = nil }) // after the server's Shutdown
				panicHook = func(c *Client) {
					if c.wantName == "boom" {
						panic("test panic")
					}
				}
			}
			var wrap func(net.Listener) net.Listener
			if tt.small {
				wrap = func(l net.Listener) net.Listener { return sendBufferListener{l, 8192} }
			}
			s := newServerWith(t, tt.cfg, testLogger(t), wrap)
			p := tt.provoke(t, s)
			if p != nil && tt.wantClose != 0 {
				code, text := p.closeFrame(10 * time.Second)
				if code != tt.wantClose || text != tt.wantText {
					t.Errorf("close frame %d %q; want %d %q", code, text, tt.wantClose, tt.wantText)
				}
			}
			key := `hubbub_clients_dropped_total{reason="` + tt.label + `"}`
			got := s.waitMetric(t, key, tt.want)
			for _, l := range dropLabels {
				if l != tt.label {
					checkSeries(t, got, map[string]float64{`hubbub_clients_dropped_total{reason="` + l + `"}`: 0})
				}
			}
			checkSeries(t, got, map[string]float64{"hubbub_send_queue_depth_at_drop_count": tt.want})
			if tt.label == "slow_consumer" && got["hubbub_send_queue_depth_at_drop_sum"] != float64(tt.cfg.SendQueue) {
				t.Errorf("slow consumer dropped with queue depth %v; want a full queue, %d",
					got["hubbub_send_queue_depth_at_drop_sum"], tt.cfg.SendQueue)
			}
		})
	}
}

// sendBufferListener gives every accepted socket a fixed send buffer, which
// turns off the kernel's autotuning: a server write to a peer that does not
// read then blocks after kilobytes rather than megabytes.
type sendBufferListener struct {
	net.Listener
	size int
}

func (l sendBufferListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if tc, ok := c.(*net.TCPConn); ok {
		tc.SetWriteBuffer(l.size)
	}
	return c, err
}

// TestDropLabelsCoverEveryReason checks the table's promise: every reason
// the server can close a connection for is counted under a label that is
// exported, and the README's metrics table names each label.
func TestDropLabelsCoverEveryReason(t *testing.T) {
	cc := connConfig(Config{}.withDefaults(), formatJSON, newMetrics())
	reasons := []wsconn.Disconnect{dcFlooding, dcShutdown, dcSlowConsumer(1),
		cc.TooBig, cc.PongTimeout, cc.WriteTimeout, cc.Protocol, cc.Internal,
		dcKicked("lobby", "mo", "spam"), dcBanned(modRecord{Room: "lobby", By: "mo", Until: time.Now()})}
	readme, err := os.ReadFile("README.md")
	if err != nil {
		t.Fatal(err)
	}
	for _, d := range reasons {
		if !slices.Contains(dropLabels, d.Label) {
			t.Errorf("reason %q is counted as %q, which dropLabels lacks", d.Reason, d.Label)
		}
		if d.Code != 0 && d.Reason == "" {
			t.Errorf("reason labelled %q sends code %d with no text", d.Label, d.Code)
		}
	}
	for _, l := range dropLabels {
		if !strings.Contains(string(readme), "`"+l+"`") {
			t.Errorf("README does not mention drop label %q", l)
		}
	}
	if dcBye.Label != "" {
		t.Errorf("/quit is counted as a drop (%q); the client asked to leave", dcBye.Label)
	}
}

// TestMetricsPerServer checks that two servers in one process count
// independently: each has its own registry.
func TestMetricsPerServer(t *testing.T) {
	s1 := newTestServer(t, Config{})
	s2 := newTestServer(t, Config{})
	s1.joined(t)
	s1.waitMetric(t, "hubbub_connections", 1)
	if v := s2.scrapeMetrics(t)["hubbub_connections_total"]; v != 0 {
		t.Errorf("second server counts %v connections; want 0", v)
	}
}

// TestCountingAllocatesNothing pins the promise that the hot-path counting
// (once per socket write, once per hub event) costs no allocation.
func TestCountingAllocatesNothing(t *testing.T) {
	m := newMetrics()
	at := time.Now()
	tests := []struct {
		name string
		f    func()
	}{
		{"wrote", func() { m.wrote(formatJSON, 7, 1) }},
		{"received", func() { m.received[formatText].Inc() }},
		{"handled", func() { m.handled(at) }},
		{"drop", func() { m.drop("slow_consumer", 256) }},
		{"gauges", func() { m.connections.Set(3); m.rooms.Set(2) }},
	}
	for _, tt := range tests {
		if n := testing.AllocsPerRun(100, tt.f); n != 0 {
			t.Errorf("%s allocates %v times per call; want 0", tt.name, n)
		}
	}
}

// BenchmarkCountWrite measures the per-write cost a client's writer pays
// for metrics.
func BenchmarkCountWrite(b *testing.B) {
	m := newMetrics()
	b.ReportAllocs()
	for b.Loop() {
		m.wrote(formatJSON, 16, 1)
	}
}

// TestMetricsPlacement serves the real serve loop with /metrics in each of
// its places and fetches it over HTTP: on the public port by default, on a
// listener of its own with -metrics-addr, and beside pprof when
// -metrics-addr equals -debug-addr. Where /metrics is not, it must be 404.
func TestMetricsPlacement(t *testing.T) {
	tests := []struct {
		name string
		cfg  Config
		// where /metrics must answer: "public", or the log message whose
		// addr names its listener.
		metricsOn string
		pprofOn   string // the same for /debug/pprof/; "" for nowhere
	}{
		{"public port by default", Config{}, "public", ""},
		{"own listener", Config{MetricsAddr: "127.0.0.1:0"}, "metrics listening", ""},
		{"beside pprof", Config{MetricsAddr: "127.0.0.1:0", DebugAddr: "127.0.0.1:0"}, "metrics listening", "pprof listening"},
		{"apart from pprof", Config{MetricsAddr: "127.0.0.1:0", DebugAddr: "localhost:0"}, "metrics listening", "pprof listening"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			srv := startServe(t, tt.cfg)
			where := func(msg string) string {
				if msg == "public" {
					return srv.public
				}
				return "http://" + srv.logAddr(t, msg)
			}
			metricsBase := where(tt.metricsOn)
			if status, body := httpGet(t, metricsBase+"/metrics"); status != 200 || !strings.Contains(body, "hubbub_connections ") {
				t.Errorf("GET %s/metrics = %d, body lacks hubbub_connections", metricsBase, status)
			}
			if tt.metricsOn != "public" {
				if status, _ := httpGet(t, srv.public+"/metrics"); status != 404 {
					t.Errorf("GET /metrics on the public port = %d; want 404 when -metrics-addr is set", status)
				}
			}
			if tt.pprofOn != "" {
				base := where(tt.pprofOn)
				if status, _ := httpGet(t, base+"/debug/pprof/"); status != 200 {
					t.Errorf("GET %s/debug/pprof/ = %d; want 200", base, status)
				}
				if (base == metricsBase) != (tt.cfg.DebugAddr == tt.cfg.MetricsAddr) {
					t.Errorf("pprof at %s, metrics at %s: want one listener exactly when the addresses are equal", base, metricsBase)
				}
			} else if tt.metricsOn != "public" {
				if status, _ := httpGet(t, metricsBase+"/debug/pprof/"); status != 404 {
					t.Errorf("GET /debug/pprof/ on the metrics listener = %d; want 404 without -debug-addr", status)
				}
			}
			for _, p := range []string{"/healthz", "/readyz"} {
				if status, _ := httpGet(t, srv.public+p); status != 200 {
					t.Errorf("GET %s on the public port = %d; want 200 wherever /metrics is", p, status)
				}
			}
		})
	}
}

// TestMetricsAddrRefused checks the -metrics-addr settings that cannot
// work: the public address itself, and one that cannot be listened on.
func TestMetricsAddrRefused(t *testing.T) {
	if err := (Config{Addr: ":9100", MetricsAddr: ":9100"}).withDefaults().validate(); err == nil ||
		!strings.Contains(err.Error(), "-metrics-addr :9100 is the public -addr") {
		t.Errorf("validate(metrics-addr = addr) = %v; want it refused, naming both", err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	cfg := Config{MetricsAddr: "127.0.0.1:notaport"}.withDefaults()
	err = serve(context.Background(), cfg, testLogger(t), ln)
	if err == nil || !strings.Contains(err.Error(), "metrics listen") {
		t.Errorf("serve with a bad metrics address = %v; want a metrics listen error", err)
	}
	if _, err := net.Dial("tcp", ln.Addr().String()); err == nil {
		t.Error("main listener left open after serve failed")
	}
}

// servedNode is the real serve loop running on loopback for one test.
type servedNode struct {
	public string        // http://host:port of the public listener
	logs   *lockedBuffer // everything it logged, as text
}

// startServe runs serve for cfg on a loopback port until the test ends,
// then cancels it and requires a clean return.
func startServe(t *testing.T, cfg Config) *servedNode {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	logs := &lockedBuffer{}
	log := slog.New(slog.NewTextHandler(io.MultiWriter(logs, tWriter{t}), nil))
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	if cfg.ShutdownTimeout == 0 {
		cfg.ShutdownTimeout = 5 * time.Second
	}
	go func() { done <- serve(ctx, cfg.withDefaults(), log, ln) }()
	t.Cleanup(func() {
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("serve returned %v", err)
			}
		case <-time.After(10 * time.Second):
			t.Error("serve did not return after cancel")
		}
	})
	n := &servedNode{public: "http://" + ln.Addr().String(), logs: logs}
	n.logAddr(t, "hubbub listening")
	return n
}

// logAddr waits for the log line with message msg and returns its addr.
func (n *servedNode) logAddr(t *testing.T, msg string) string {
	t.Helper()
	re := regexp.MustCompile(`msg="` + regexp.QuoteMeta(msg) + `" addr=(\S+)`)
	for deadline := time.Now().Add(5 * time.Second); ; {
		if m := re.FindStringSubmatch(n.logs.String()); m != nil {
			return m[1]
		}
		if time.Now().After(deadline) {
			t.Fatalf("no %q line in the log:\n%s", msg, n.logs.String())
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// httpGet fetches url on a fresh connection and returns status and body.
func httpGet(t *testing.T, url string) (int, string) {
	t.Helper()
	client := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{DisableKeepAlives: true}}
	resp, err := client.Get(url)
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(body)
}

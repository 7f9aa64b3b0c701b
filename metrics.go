package main

import (
	"net/http"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// metrics is one server's Prometheus instruments, in a registry of its own:
// tests run many servers in one process, and the global default registry
// would make them collide.
//
// Everything here is safe for concurrent use (the client library uses
// atomics), and the per-label children are resolved once, here, so the hot
// paths do no map look-up and no allocation. Counting is batched: a
// connection's writer counts once per socket write and the hub once per event, never once per
// delivered message.
type metrics struct {
	reg *prometheus.Registry

	connections    prometheus.Gauge   // set by Hub.run: clients in h.clients
	connectsTotal  prometheus.Counter // incremented by Hub.run on register
	rooms          prometheus.Gauge   // set by Hub.run: len(h.rooms)
	received       [3]prometheus.Counter
	delivered      [2]prometheus.Counter // by recipient format
	frames         [2]prometheus.Counter // by recipient format
	perWrite       [2]prometheus.Observer
	dropped        map[string]prometheus.Counter // by label (disconnect.go); read-only after newMetrics
	moderation     map[string]prometheus.Counter // by action (moderation.go); read-only after newMetrics
	modEntries     map[string]prometheus.Gauge   // by record kind, set by modState; read-only after newMetrics
	queueAtDrop    prometheus.Observer
	requestSeconds prometheus.Observer
}

// sourceAPI indexes received for messages posted through the HTTP API; the
// other indexes are the sender's format.
const sourceAPI = 2

// newMetrics creates and registers every instrument in a fresh registry,
// together with the Go runtime and process collectors.
func newMetrics() *metrics {
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	f := factory{reg}
	m := &metrics{
		reg: reg,
		connections: f.gauge("hubbub_connections",
			"WebSocket clients connected and in a room."),
		connectsTotal: f.counter("hubbub_connections_total",
			"WebSocket clients accepted since start."),
		rooms: f.gauge("hubbub_rooms",
			"Rooms with at least one member."),
		queueAtDrop: f.histogram("hubbub_send_queue_depth_at_drop",
			"Events waiting in a client's send queue when the server dropped it.",
			[]float64{0, 1, 4, 16, 64, 128, 256, 512, 1024}),
		requestSeconds: f.histogram("hubbub_hub_request_seconds",
			"Time from a request's submission to the hub until the hub has handled it: "+
				"queueing behind earlier events plus the handling itself, fan-out included.",
			prometheus.ExponentialBuckets(5e-6, 4, 10)), // 5µs … ~1.3s
		dropped: make(map[string]prometheus.Counter, len(dropLabels)),
	}
	received := f.counterVec("hubbub_messages_received_total",
		"Chat messages accepted by the hub, by source: the sender's format, or api.", "source")
	m.received = [3]prometheus.Counter{
		formatJSON: received.WithLabelValues("json"),
		formatText: received.WithLabelValues("text"),
		sourceAPI:  received.WithLabelValues("api"),
	}
	delivered := f.counterVec("hubbub_messages_delivered_total",
		"Events written to clients (chat, presence, replies), by the recipient's format.", "format")
	frames := f.counterVec("hubbub_frames_written_total",
		"WebSocket data frames written, by the recipient's format.", "format")
	perWrite := prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Name: "hubbub_messages_per_write",
		Help: "Events carried by one socket write to a client, by the recipient's format: " +
			"the coalescing factor. A JSON client gets them as one frame, a text client as one frame each.",
		Buckets: []float64{1, 2, 4, 8, 16, 32, 64, 128, 256},
	}, []string{"format"})
	reg.MustRegister(perWrite)
	for _, ft := range []format{formatJSON, formatText} {
		m.delivered[ft] = delivered.WithLabelValues(ft.String())
		m.frames[ft] = frames.WithLabelValues(ft.String())
		m.perWrite[ft] = perWrite.WithLabelValues(ft.String())
	}
	dropped := f.counterVec("hubbub_clients_dropped_total",
		"Clients the server disconnected, by reason. Clients that leave on their own are not counted.", "reason")
	for _, l := range dropLabels {
		m.dropped[l] = dropped.WithLabelValues(l)
	}
	actions := f.counterVec("hubbub_moderation_actions_total",
		"Moderation actions carried out on this node's request, by action.", "action")
	m.moderation = make(map[string]prometheus.Counter, len(actionNames))
	for _, a := range actionNames[1:] {
		m.moderation[a] = actions.WithLabelValues(a)
	}
	entries := prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "hubbub_moderation_entries",
		Help: "Moderation entries this node holds, by kind: bans and mutes in force, rooms in slow mode, deleted messages still replayable."},
		[]string{"kind"})
	reg.MustRegister(entries)
	m.modEntries = make(map[string]prometheus.Gauge)
	for _, k := range []string{recBan, recMute, recSlow, recTomb} {
		m.modEntries[k] = entries.WithLabelValues(k)
	}
	return m
}

// wrote records one batch write of n events in frames frames to a client
// of format f. Called by the client's writer once per write. The delivered counter
// goes last, so whoever sees it move also sees the other two.
func (m *metrics) wrote(f format, n, frames int) {
	m.perWrite[f].Observe(float64(n))
	m.frames[f].Add(float64(frames))
	m.delivered[f].Add(float64(n))
}

// drop records that a client was disconnected for the reason labelled
// label, with depth events still queued for it. The counter goes last, as
// in wrote.
func (m *metrics) drop(label string, depth int) {
	m.queueAtDrop.Observe(float64(depth))
	m.dropped[label].Inc()
}

// handled records the age of a hub request submitted at t, now that the
// hub has handled it. A zero t (a request built outside submit) is skipped.
func (m *metrics) handled(t time.Time) {
	if !t.IsZero() {
		m.requestSeconds.Observe(time.Since(t).Seconds())
	}
}

// metricsHandler serves the server's metrics, on the public port or on the
// listener MetricsAddr names.
func (s *Server) metricsHandler() http.Handler {
	return s.hub.m.handler()
}

// handler serves the registry in the Prometheus exposition format.
func (m *metrics) handler() http.Handler {
	return promhttp.HandlerFor(m.reg, promhttp.HandlerOpts{Registry: m.reg})
}

// factory creates instruments and registers them in reg.
type factory struct{ reg *prometheus.Registry }

func (f factory) gauge(name, help string) prometheus.Gauge {
	g := prometheus.NewGauge(prometheus.GaugeOpts{Name: name, Help: help})
	f.reg.MustRegister(g)
	return g
}

func (f factory) counter(name, help string) prometheus.Counter {
	c := prometheus.NewCounter(prometheus.CounterOpts{Name: name, Help: help})
	f.reg.MustRegister(c)
	return c
}

func (f factory) counterVec(name, help, label string) *prometheus.CounterVec {
	c := prometheus.NewCounterVec(prometheus.CounterOpts{Name: name, Help: help}, []string{label})
	f.reg.MustRegister(c)
	return c
}

func (f factory) histogram(name, help string, buckets []float64) prometheus.Histogram {
	h := prometheus.NewHistogram(prometheus.HistogramOpts{Name: name, Help: help, Buckets: buckets})
	f.reg.MustRegister(h)
	return h
}

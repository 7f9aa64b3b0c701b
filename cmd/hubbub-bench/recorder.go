package main

import (
	"sync"
	"sync/atomic"
	"time"

	hdrhistogram "github.com/HdrHistogram/hdrhistogram-go"
)

// Latency histogram range, in microseconds: 1µs to 60s at 3 significant
// digits, so p99.9 of a loopback run is exact to 0.1%.
const (
	histMin     = 1
	histMax     = 60_000_000
	histSigFigs = 3
)

// newHist returns an empty latency histogram in microseconds.
func newHist() *hdrhistogram.Histogram {
	return hdrhistogram.New(histMin, histMax, histSigFigs)
}

// recordShards spreads receivers over this many locks; HDR histograms are not
// safe for concurrent use, and one lock for 10k readers would be contended.
const recordShards = 8

// recShard is one lock's worth of receive-side statistics.
type recShard struct {
	mu sync.Mutex
	// Guarded by mu; sec is drained into the totals by Recorder.tick.
	sec          *hdrhistogram.Histogram
	secMeasured  int64
	serverErrors map[string]int64
	closes       map[string]int64
}

// Recorder collects receive-side statistics from all reader goroutines and
// turns them into per-second samples and totals.
//
// record, closed and the atomic counters may be called from any goroutine;
// tick and totals must only be called by the one goroutine that owns the
// Recorder's timeline (the sampler in Bench.run).
type Recorder struct {
	shards [recordShards]recShard

	// Counters updated by readers with atomics.
	frames      atomic.Int64 // data frames received
	msgFrames   atomic.Int64 // frames with at least one benchmark message
	markers     atomic.Int64 // benchmark messages received, any time
	measured    atomic.Int64 // ... sent inside the window
	measuredOwn atomic.Int64 // ... and sent by this shard's senders
	duplicates  atomic.Int64 // measured messages a receiver had seen before

	// Owned by the sampler goroutine (tick/totals).
	total    *hdrhistogram.Histogram
	merged   *hdrhistogram.Histogram
	timeline []Point
	lastT    float64 // T of the previous tick
}

// minPointSec is the shortest sample kept in the timeline. The final flush
// after draining is usually a sliver of a second whose rate and percentiles
// would only be noise; its deliveries still count in the totals.
const minPointSec = 0.25

// newRecorder returns an empty Recorder.
func newRecorder() *Recorder {
	r := &Recorder{total: newHist(), merged: newHist()}
	for i := range r.shards {
		r.shards[i].sec = newHist()
		r.shards[i].serverErrors = map[string]int64{}
		r.shards[i].closes = map[string]int64{}
	}
	return r
}

// shard returns the shard for a client index.
func (r *Recorder) shard(i int) *recShard { return &r.shards[i%recordShards] }

// recordFrame adds one received frame: lat holds the latencies (µs) of its
// measured messages, st what splitFrame found in it.
func (r *Recorder) recordFrame(sh *recShard, lat []int64, st frameStats) {
	r.frames.Add(1)
	if st.Markers > 0 {
		r.msgFrames.Add(1)
		r.markers.Add(int64(st.Markers))
	}
	if len(lat) == 0 && len(st.ServerErrors) == 0 {
		return
	}
	sh.mu.Lock()
	for _, v := range lat {
		// A clock step can make a latency negative; clamp instead of failing.
		_ = sh.sec.RecordValue(min(max(v, 0), histMax))
	}
	sh.secMeasured += int64(len(lat))
	for code, n := range st.ServerErrors {
		sh.serverErrors[code] += int64(n)
	}
	sh.mu.Unlock()
}

// recordClose counts one unexpected close under its reason (a close code, or
// "1006 abnormal" when the connection just dropped).
func (r *Recorder) recordClose(sh *recShard, reason string) {
	sh.mu.Lock()
	sh.closes[reason]++
	sh.mu.Unlock()
}

// Point is one second of the measurement window.
type Point struct {
	// T is seconds since the window opened, at the end of this sample.
	T float64 `json:"t"`
	// Deliveries is measured messages received during this sample.
	Deliveries int64 `json:"deliveries"`
	// PerSec is Deliveries divided by the sample's real length.
	PerSec float64 `json:"per_sec"`
	// Latencies in milliseconds; zero when nothing arrived.
	P50ms float64 `json:"p50_ms"`
	P99ms float64 `json:"p99_ms"`
	Maxms float64 `json:"max_ms"`
}

// tick drains the per-second histograms into the totals. If inWindow, it
// appends a Point at t seconds (t counts from the window's start). It
// returns the sample, also for the progress line.
func (r *Recorder) tick(t float64, inWindow bool) Point {
	r.merged.Reset()
	var n int64
	for i := range r.shards {
		sh := &r.shards[i]
		sh.mu.Lock()
		r.merged.Merge(sh.sec)
		sh.sec.Reset()
		n += sh.secMeasured
		sh.secMeasured = 0
		sh.mu.Unlock()
	}
	r.total.Merge(r.merged)
	p := Point{T: t, Deliveries: n}
	if r.merged.TotalCount() > 0 {
		p.P50ms = usToMs(r.merged.ValueAtQuantile(50))
		p.P99ms = usToMs(r.merged.ValueAtQuantile(99))
		p.Maxms = usToMs(r.merged.Max())
	}
	if !inWindow {
		return p
	}
	span := t - max(r.lastT, 0)
	r.lastT = t
	if span >= minPointSec {
		p.PerSec = float64(n) / span
		r.timeline = append(r.timeline, p)
	}
	return p
}

// totalP99 is the p99 of everything measured so far, in ms. Owner only.
func (r *Recorder) totalP99() float64 {
	if r.total.TotalCount() == 0 {
		return 0
	}
	return usToMs(r.total.ValueAtQuantile(99))
}

// counts sums the maps of all shards.
func (r *Recorder) counts() (serverErrors, closes map[string]int64) {
	serverErrors, closes = map[string]int64{}, map[string]int64{}
	for i := range r.shards {
		sh := &r.shards[i]
		sh.mu.Lock()
		for k, v := range sh.serverErrors {
			serverErrors[k] += v
		}
		for k, v := range sh.closes {
			closes[k] += v
		}
		sh.mu.Unlock()
	}
	return serverErrors, closes
}

// usToMs converts microseconds to milliseconds.
func usToMs(us int64) float64 { return float64(us) / 1000 }

// latencyUs is the latency of a message sent at sentNano and received at
// recvNano, in microseconds.
func latencyUs(sentNano, recvNano int64) int64 {
	return (recvNano - sentNano) / int64(time.Microsecond)
}

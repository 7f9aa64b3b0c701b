package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math"
	"net/url"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/gorilla/websocket"
)

// window is the measurement window in unix nanoseconds, [start, end). A
// message counts when its send time (from its marker) falls inside.
type window struct{ start, end int64 }

// contains reports whether a message sent at t is measured. A nil window
// (not yet opened) measures nothing.
func (w *window) contains(t int64) bool {
	return w != nil && t >= w.start && t < w.end
}

// Bench is one run. run owns it; the goroutines it starts (readers, pacers,
// churn, sampler) all end before run returns.
type Bench struct {
	cfg     Config
	log     *slog.Logger
	base    *url.URL
	auth    *auth
	dialers []*websocket.Dialer
	rec     *Recorder
	rooms   []*room
	slots   []*slot // this shard's slots
	senders []*slot // the sending subset of slots

	// win is set once, when the connect phase is over.
	win atomic.Pointer[window]

	// Connection counters, updated by dialling goroutines and readers.
	connOK, connFailed    atomic.Int64
	connected             atomic.Int64 // open right now
	reconnects, reconFail atomic.Int64
	fdLimit               atomic.Bool
	fileLimit             uint64

	// Sender counters, updated by pacers.
	sent, sentMeasured, expected, writeErrors atomic.Int64

	// readers counts running readLoops.
	readers sync.WaitGroup

	mu sync.Mutex
	// Guarded by mu.
	live     map[*client]struct{} // clients whose readLoop runs
	firstErr string               // first failed dial
}

// newBench plans the run: rooms, this shard's slots and senders, dialers.
func newBench(cfg Config, log *slog.Logger) (*Bench, error) {
	if err := cfg.normalize(); err != nil {
		return nil, err
	}
	base, err := cfg.baseURL()
	if err != nil {
		return nil, err
	}
	if !isLoopbackHost(base.Hostname()) {
		// normalize let it through, so AllowRemote is set.
		log.Warn(fmt.Sprintf("-allow-remote: %s is not loopback; point hubbub-bench only at servers you own", base.Hostname()))
	}
	b := &Bench{
		cfg:     cfg,
		log:     log,
		base:    base,
		auth:    newAuth(&cfg, base),
		dialers: newDialers(&cfg),
		rec:     newRecorder(),
		live:    map[*client]struct{}{},
	}
	b.rooms, b.slots = planSlots(&cfg)
	if cfg.Ticket != "" && cfg.Proto == protoHubbub && (len(b.slots) > 1 || cfg.Scenario == scenarioChurn) {
		log.Warn("-ticket: a hubbub login ticket lets one connection in, and the others will be refused; " +
			"-login user:password fetches one per connection, -jwt-secret mints one")
	}
	for _, s := range b.slots {
		if s.sender {
			b.senders = append(b.senders, s)
		}
	}
	return b, nil
}

// roomName is the room of client index i. Names are the same in every shard
// so that shards of one run share their rooms.
func roomName(cfg *Config, i int) string {
	if cfg.Rooms == 1 {
		return "bench"
	}
	return "bench-" + strconv.Itoa(i%cfg.Rooms)
}

// isSender reports whether client index i sends: the first Senders clients
// for fanout, the first Senders clients of each room for rooms and churn.
func isSender(cfg *Config, i int) bool {
	switch cfg.Scenario {
	case scenarioFanout:
		return i < cfg.Senders
	case scenarioRooms, scenarioChurn:
		return i/cfg.Rooms < cfg.Senders
	}
	return false
}

// planSlots lays out all rooms and the slots this shard owns: client index i
// is in room i%Rooms.
func planSlots(cfg *Config) ([]*room, []*slot) {
	rooms := make([]*room, cfg.Rooms)
	for r := range rooms {
		rooms[r] = &room{name: roomName(cfg, r)}
	}
	var slots []*slot
	for i := 0; i < cfg.Clients; i++ {
		if !cfg.Shard.owns(i) {
			continue
		}
		slots = append(slots, &slot{idx: i, room: rooms[i%cfg.Rooms], sender: isSender(cfg, i)})
	}
	return rooms, slots
}

// dial opens a connection for s, installs it in the slot and starts its
// reader. Must only be called by the slot's current dialling owner.
func (b *Bench) dial(ctx context.Context, s *slot) error {
	name := fmt.Sprintf("hb%d-%d", s.idx, s.gen)
	s.gen++
	ticket, err := b.auth.credential(ctx, name)
	if err != nil {
		return err
	}
	u := b.cfg.clientURL(b.base, s.room.name, name, ticket)
	// Errors show the URL without the credential: tickets and tokens must
	// not end up in logs and reports.
	shown := u
	if ticket != "" {
		shown = b.cfg.clientURL(b.base, s.room.name, name, "REDACTED")
	}
	d := b.dialers[s.idx%len(b.dialers)]
	conn, resp, err := d.DialContext(ctx, u, b.cfg.Header)
	if err != nil {
		if resp != nil {
			return fmt.Errorf("dial %s: %w (HTTP %s%s)", shown, err, resp.Status, bodyHint(resp.Body))
		}
		return fmt.Errorf("dial %s: %w", shown, err)
	}
	conn.SetReadLimit(readLimit)
	c := &client{slot: s, conn: conn, done: make(chan struct{})}
	if b.cfg.Proto == protoCentrifugo {
		// Nothing else is sent before the connect reply; readLoop takes it
		// from there (see centrifugoStep).
		c.cmdID.Store(centrifugoSubscribeID)
		if err := c.write(centrifugoConnect); err != nil {
			conn.Close()
			return fmt.Errorf("centrifugo connect command to %s: %w", shown, err)
		}
	}
	b.mu.Lock()
	b.live[c] = struct{}{}
	b.mu.Unlock()
	b.connected.Add(1)
	if b.cfg.Proto == protoRaw {
		// A plain relay has no join confirmation: the handshake is all we get.
		c.join()
	}
	s.cur.Store(c)
	b.readers.Add(1)
	go b.readLoop(c)
	return nil
}

// bodyHint is ": " and the first line of an HTTP error body (at most 200
// bytes), or "" if there is none. Servers say there why they refused, e.g.
// hubbub's "ticket unknown, expired or already used".
func bodyHint(body io.Reader) string {
	if body == nil {
		return ""
	}
	b, _ := io.ReadAll(io.LimitReader(body, 200))
	line, _, _ := strings.Cut(string(b), "\n")
	if line = strings.TrimSpace(line); line == "" {
		return ""
	}
	return ": " + line
}

// unregister forgets c once its reader has ended.
func (b *Bench) unregister(c *client) {
	b.connected.Add(-1)
	c.slot.cur.CompareAndSwap(c, nil)
	b.mu.Lock()
	delete(b.live, c)
	b.mu.Unlock()
}

// noteDialError counts a failed dial and keeps the first error. On the
// open-file limit it says what to do and stops further ramping.
func (b *Bench) noteDialError(err error) {
	b.connFailed.Add(1)
	b.mu.Lock()
	if b.firstErr == "" {
		b.firstErr = err.Error()
	}
	b.mu.Unlock()
	if isFileLimit(err) {
		b.stopAtFileLimit(err)
	}
}

// firstDialError is the first failed dial's error, or "".
func (b *Bench) firstDialError() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.firstErr
}

// fdReserve is how many descriptors the connect phase leaves free: the
// tool still needs a few for /proc reads, the report file and the runtime.
const fdReserve = 32

// stopAtFileLimit stops further dials and says once why, and what to do.
func (b *Bench) stopAtFileLimit(err error) {
	if b.fdLimit.CompareAndSwap(false, true) {
		b.log.Error(fmt.Sprintf("hit the open-file limit (%d): run several processes with -shard", b.fileLimit),
			"connected", b.connected.Load(), "err", err)
	}
}

// giveUpAfter is how many dials must fail, with none succeeding, before
// the connect phase gives up: a server that refused the first ten will
// refuse the rest, and dialling them at -ramp could take minutes.
const giveUpAfter = 10

// connectAll dials every slot at the configured ramp, at most
// DialConcurrency at a time, and returns when all dials have finished. It
// stops early on ctx, at the open-file limit, or once the first
// giveUpAfter dials (all of them, if fewer) failed and none succeeded;
// each dial takes at most DialTimeout, so that takes about as long.
func (b *Bench) connectAll(ctx context.Context) {
	// Dials in flight finish under ctx; phaseCtx only stops new ones.
	phaseCtx, giveUp := context.WithCancel(ctx)
	defer giveUp()
	hopeless := int64(min(giveUpAfter, len(b.slots)))
	sem := make(chan struct{}, b.cfg.DialConcurrency)
	var wg sync.WaitGroup
	start := time.Now()
	for i, s := range b.slots {
		if b.fdLimit.Load() || phaseCtx.Err() != nil {
			break
		}
		// Dials in flight (len(sem)) hold a descriptor each, too.
		if b.fileLimit > 0 && uint64(b.connected.Load())+uint64(len(sem))+fdReserve >= b.fileLimit {
			b.stopAtFileLimit(nil)
			break
		}
		if b.cfg.Ramp > 0 {
			at := start.Add(time.Duration(float64(i) / b.cfg.Ramp * float64(time.Second)))
			if !sleepCtx(phaseCtx, time.Until(at)) {
				break
			}
		}
		select {
		case sem <- struct{}{}:
		case <-phaseCtx.Done():
		}
		if phaseCtx.Err() != nil {
			break
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			if err := b.dial(ctx, s); err != nil {
				b.noteDialError(err)
				if b.connOK.Load() == 0 && b.connFailed.Load() >= hopeless {
					giveUp()
				}
				return
			}
			b.connOK.Add(1)
		}()
	}
	wg.Wait()
}

// awaitJoins waits, bounded by limit, until every open connection is a room
// member. In hubbub mode that is the first frame, for Centrifugo the
// subscribe reply; a server that sends neither (use -raw for it) makes us
// wait the whole limit, so say so.
func (b *Bench) awaitJoins(ctx context.Context, limit time.Duration) {
	deadline := time.Now().Add(limit)
	for {
		var members int64
		for _, r := range b.rooms {
			members += r.members.Load()
		}
		open := b.connected.Load()
		if members >= open {
			return
		}
		if time.Now().After(deadline) {
			msg := "some clients got no welcome frame; is this hubbub? use -raw for plain relays"
			if b.cfg.Proto == protoCentrifugo {
				msg = "some clients got no subscribe reply; is this Centrifugo's /connection/websocket?"
			}
			b.log.Warn(msg, "waiting", open-members)
			return
		}
		if !sleepCtx(ctx, 20*time.Millisecond) {
			return
		}
	}
}

// pace sends for its senders at cfg.Rate messages per second each, spread
// evenly over time, until stop or ctx. It is the only data writer of its
// senders' connections and owns their seq.
func (b *Bench) pace(ctx context.Context, stop <-chan struct{}, senders []*slot, phase time.Duration) {
	if !sleepCtx(ctx, phase) {
		return
	}
	// One send per tick spreads messages evenly; at high rates ticks of
	// 1ms carry several sends instead, as finer timers cost more than
	// they smooth.
	perSec := b.cfg.Rate * float64(len(senders))
	tick := time.Duration(float64(time.Second) / perSec)
	tick = max(tick, time.Millisecond)
	t := time.NewTicker(tick)
	defer t.Stop()
	buf := make([]byte, 0, maxFrame)
	next, owed, last := 0, 0.0, time.Now()
	for {
		select {
		case <-ctx.Done():
			return
		case <-stop:
			return
		case now := <-t.C:
			// Pay for the time that really passed, so ticker jitter and
			// missed ticks are made up, but by at most one extra round, so
			// a stall does not end in a burst.
			owed = math.Min(owed+now.Sub(last).Seconds()*perSec, float64(2*len(senders)))
			last = now
			for ; owed >= 1; owed-- {
				buf = b.send(senders[next], buf)
				next = (next + 1) % len(senders)
			}
		}
	}
}

// send writes the next message of s if its connection is in the room, and
// counts it. buf is scratch space, returned for reuse.
func (b *Bench) send(s *slot, buf []byte) []byte {
	c := s.cur.Load()
	if c == nil || c.state.Load() != stateMember || c.closing.Load() {
		return buf
	}
	s.seq++
	now := time.Now().UnixNano()
	m := marker{Sender: uint32(s.idx), Seq: s.seq, SentNano: now}
	if b.cfg.Proto == protoCentrifugo {
		buf = appendCentrifugoPublish(buf[:0], c.cmdID.Add(1), s.room.name, m, b.cfg.Size)
	} else {
		buf = appendFrame(buf[:0], b.cfg.Format, m, b.cfg.Size)
	}
	measured := b.win.Load().contains(now)
	// Everyone in the room when the message leaves, sender included (the
	// server echoes it back as confirmation), should receive it.
	members := s.room.members.Load()
	if err := c.write(buf); err != nil {
		b.writeErrors.Add(1)
		b.log.Debug("write failed", "client", s.idx, "err", err)
		return buf
	}
	b.sent.Add(1)
	if measured {
		b.sentMeasured.Add(1)
		b.expected.Add(members)
	}
	return buf
}

// churn hangs up and redials one non-sending slot per 1/ChurnRate, round
// robin, until stop or ctx. It owns the dialling of those slots meanwhile.
func (b *Bench) churn(ctx context.Context, stop <-chan struct{}) {
	var pool []*slot
	for _, s := range b.slots {
		if !s.sender {
			pool = append(pool, s)
		}
	}
	if len(pool) == 0 {
		return
	}
	t := time.NewTicker(time.Duration(float64(time.Second) / b.cfg.ChurnRate))
	defer t.Stop()
	for next := 0; ; next = (next + 1) % len(pool) {
		select {
		case <-ctx.Done():
			return
		case <-stop:
			return
		case <-t.C:
		}
		// Hang up first, then redial the same slot under a new name: the
		// server may not have dropped the old name yet.
		s := pool[next]
		if c := s.cur.Load(); c != nil {
			c.hangUp(websocket.CloseNormalClosure, "churn")
			s.cur.CompareAndSwap(c, nil)
		}
		if b.fdLimit.Load() {
			continue
		}
		if err := b.dial(ctx, s); err != nil {
			b.reconFail.Add(1)
			b.noteDialError(err)
			continue
		}
		b.reconnects.Add(1)
	}
}

// closeAll ends every connection with a close frame, waits up to timeout for
// the readers, then closes what is left hard and waits for those readers.
func (b *Bench) closeAll(timeout time.Duration) {
	b.mu.Lock()
	clients := make([]*client, 0, len(b.live))
	for c := range b.live {
		clients = append(clients, c)
	}
	b.mu.Unlock()

	// A few workers write the close frames; 10k sequential writes of a few
	// microseconds are fine, but one stuck socket must not hold up the rest.
	work := make(chan *client)
	var wg sync.WaitGroup
	for range min(16, len(clients)) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for c := range work {
				c.hangUp(websocket.CloseNormalClosure, "bench done")
			}
		}()
	}
	for _, c := range clients {
		work <- c
	}
	close(work)
	wg.Wait()

	done := make(chan struct{})
	go func() {
		b.readers.Wait()
		close(done)
	}()
	select {
	case <-done:
		return
	case <-time.After(timeout):
	}
	b.mu.Lock()
	for c := range b.live {
		c.conn.Close()
	}
	b.mu.Unlock()
	<-done
}

// sleepCtx sleeps for d and reports whether ctx is still alive.
func sleepCtx(ctx context.Context, d time.Duration) bool {
	if d <= 0 {
		return ctx.Err() == nil
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
		return false
	}
}

// numPacers is how many goroutines drive the senders: enough to keep both
// cores writing, few enough that 10k senders don't mean 10k tickers.
func numPacers(senders int) int {
	return min(senders, 2*runtime.GOMAXPROCS(0))
}

// run executes the whole benchmark and returns its report. Phases: connect,
// wait for joins, warm up with senders running, measure for Duration,
// drain, close. Cancelling ctx skips ahead to closing and still reports;
// so does a connect phase that opened no connection at all.
func (b *Bench) run(ctx context.Context) (*Report, error) {
	var err error
	if b.fileLimit, err = raiseFileLimit(); err != nil {
		b.log.Warn("could not raise open-file limit", "err", err)
	}
	if need := uint64(len(b.slots)) + 64; b.fileLimit > 0 && need > b.fileLimit {
		b.log.Warn(fmt.Sprintf("%d clients need more than the open-file limit (%d): run several processes with -shard",
			len(b.slots), b.fileLimit))
	}
	var srv procProbe
	if b.cfg.ServerPID > 0 {
		srv = procProbe{pid: strconv.Itoa(b.cfg.ServerPID), log: b.log}
	}
	self := procProbe{pid: "self", log: b.log}
	srv.sample()
	self.sample()

	// The sampler owns the Recorder's timeline and procs until it is told
	// to stop.
	procs := newProcTimeline(b.cfg.ServerPID, time.Now())
	phase := &atomic.Value{}
	phase.Store("connecting")
	stopSampler := make(chan struct{})
	samplerDone := make(chan struct{})
	go func() {
		defer close(samplerDone)
		b.sample(stopSampler, phase, procs)
	}()

	// Phase 1: connect. Senders wait, so that dials do not compete with
	// traffic and every sender's room is full when it starts.
	b.connectAll(ctx)
	var connsAtEnd int64
	if b.connOK.Load() == 0 {
		// Without a connection there is nothing to measure: waiting out
		// warmup, window and drain would only delay the verdict.
		b.log.Error("no connection opened, so there is nothing to measure; stopping", "url", b.base.Redacted(),
			"failed", b.connFailed.Load(), "first_err", b.firstDialError())
		srv.sample()
		self.sample()
	} else {
		if b.cfg.Proto != protoRaw {
			b.awaitJoins(ctx, b.cfg.DialTimeout)
		}
		b.log.Info("connected", "ok", b.connOK.Load(), "failed", b.connFailed.Load())
		connsAtEnd = b.traffic(ctx, phase, &srv, &self)
	}
	// A signal at any point so far cut a phase short.
	interrupted := ctx.Err() != nil
	close(stopSampler)
	<-samplerDone
	// The sampler is gone: this goroutine owns the timelines now.
	if w := b.win.Load(); w != nil {
		b.rec.tick(float64(time.Now().UnixNano()-w.start)/1e9, true)
	}
	procs.tick(time.Now())

	// Phase 5: close politely, bounded, so the server sees normal closes and
	// no goroutine of ours outlives run.
	phase.Store("closing")
	b.closeAll(b.cfg.CloseTimeout)
	b.auth.close()
	return b.report(srv, self, procs, connsAtEnd, interrupted), nil
}

// traffic runs phases 2 to 4: it opens the window, runs the senders (and
// churn) through warmup and measurement, then drains. It samples the
// probes at the window's edges and returns the connections open at its end.
func (b *Bench) traffic(ctx context.Context, phase *atomic.Value, srv, self *procProbe) int64 {
	// Phase 2: fix the window before the first message leaves, so that
	// senders and receivers classify every message the same way: by the
	// send time in its marker.
	start := time.Now().Add(b.cfg.Warmup)
	end := start.Add(b.cfg.Duration)
	b.win.Store(&window{start: start.UnixNano(), end: end.UnixNano()})

	stopSend := make(chan struct{})
	var workers sync.WaitGroup
	if n := numPacers(len(b.senders)); n > 0 {
		for p := range n {
			var mine []*slot
			for j := p; j < len(b.senders); j += n {
				mine = append(mine, b.senders[j])
			}
			// Stagger pacers across one send interval so their ticks
			// don't line up into bursts.
			offset := time.Duration(float64(p) / float64(n) * float64(time.Second) / (b.cfg.Rate * float64(len(mine))))
			workers.Add(1)
			go func() {
				defer workers.Done()
				b.pace(ctx, stopSend, mine, offset)
			}()
		}
	}
	if b.cfg.Scenario == scenarioChurn {
		workers.Add(1)
		go func() {
			defer workers.Done()
			b.churn(ctx, stopSend)
		}()
	}

	// Phase 3: warm up (caches, GC, the server's queues), then measure.
	// /proc is read at the window's edges, while every client is connected.
	phase.Store("warmup")
	if sleepCtx(ctx, time.Until(start)) {
		srv.mark()
		self.mark()
		phase.Store("measuring")
		sleepCtx(ctx, time.Until(end))
	}
	close(stopSend)
	workers.Wait()
	srv.sample()
	self.sample()
	connsAtEnd := b.connected.Load()

	// Phase 4: drain. Messages sent just before the window closed are still
	// on their way; stop early once everything expected has arrived.
	phase.Store("draining")
	drainEnd := time.Now().Add(b.cfg.Drain)
	for time.Now().Before(drainEnd) && b.rec.measuredOwn.Load() < b.expected.Load() {
		if !sleepCtx(ctx, 20*time.Millisecond) {
			break
		}
	}
	return connsAtEnd
}

// sample ticks the Recorder and procs once a second until stop, and draws
// the progress line if cfg.Progress is set. It runs in its own goroutine.
func (b *Bench) sample(stop <-chan struct{}, phase *atomic.Value, procs *procTimeline) {
	t := time.NewTicker(time.Second)
	defer t.Stop()
	var lastMarkers int64
	for {
		select {
		case <-stop:
			if b.cfg.Progress != nil {
				fmt.Fprintln(b.cfg.Progress)
			}
			return
		case now := <-t.C:
			w := b.win.Load()
			inWindow := w != nil && now.UnixNano() > w.start
			var t float64
			if w != nil {
				t = float64(now.UnixNano()-w.start) / 1e9
			}
			p := b.rec.tick(t, inWindow)
			procs.tick(now)
			m := b.rec.markers.Load()
			if b.cfg.Progress != nil {
				fmt.Fprintf(b.cfg.Progress, "\r%-10s conns %d/%d failed %d | deliveries/s %d | p99 %.2fms (1s) %.2fms (so far)\x1b[K",
					phase.Load(), b.connected.Load(), len(b.slots), b.connFailed.Load(), m-lastMarkers, p.P99ms, b.rec.totalP99())
			}
			lastMarkers = m
		}
	}
}

// procProbe samples one process (the server or the tool itself) at the
// start, when the window opens (mark) and at the end. A zero probe (no pid)
// does nothing; a failing read is logged once and disables the probe.
type procProbe struct {
	pid     string
	log     *slog.Logger
	samples []procSample // start, then end
	window  *procSample  // when the window opened
	failed  bool
}

// sample appends a reading.
func (p *procProbe) sample() {
	if s, ok := p.read(); ok {
		p.samples = append(p.samples, s)
	}
}

// mark records the reading at the window's start, for CPU% over the window.
func (p *procProbe) mark() {
	if s, ok := p.read(); ok {
		p.window = &s
	}
}

// read takes one sample, logging the first failure.
func (p *procProbe) read() (procSample, bool) {
	if p.pid == "" || p.failed {
		return procSample{}, false
	}
	s, err := readProc(p.pid)
	if err != nil {
		p.failed = true
		p.log.Warn("cannot read process stats", "pid", p.pid, "err", err)
		return s, false
	}
	return s, true
}

// errNoProbe is returned by stats of a probe without two samples.
var errNoProbe = errors.New("no samples")

// stats returns start and end readings and CPU% over the window (or over the
// whole run when the window never opened).
func (p *procProbe) stats() (first, last procSample, cpu float64, err error) {
	if len(p.samples) < 2 || p.failed {
		return first, last, 0, errNoProbe
	}
	first, last = p.samples[0], p.samples[len(p.samples)-1]
	from := first
	if p.window != nil {
		from = *p.window
	}
	return first, last, cpuPercent(from, last), nil
}

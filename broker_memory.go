package main

import (
	"cmp"
	"fmt"
	"maps"
	"slices"
	"sync"
	"sync/atomic"
	"time"
)

var _ Broker = (*memoryBroker)(nil)

// maxMemoryQueue bounds the deliveries waiting for one memoryBroker's
// goroutine. A publish that would overflow a subscriber's queue is refused
// as a whole (errBrokerBusy), so no subscriber silently misses a message.
const maxMemoryQueue = 1 << 16

// memoryBus is an in-process cluster: the nodes attached to it. A hubbub
// process without NATS has one bus with one node; tests put several nodes
// on one bus to check the broker contract without a network. The bus keeps
// no log: it is not sequenced, and the hub numbers messages itself. It
// keeps the records, for as long as the process lives.
type memoryBus struct {
	mu      sync.Mutex
	nodes   map[*memoryBroker]struct{} // guarded by mu
	records map[string]Record          // guarded by mu
	rev     uint64                     // the newest revision given; guarded by mu
	// signalWait is how long a signal waits for nodes that do not answer.
	// Set before the bus is used.
	signalWait time.Duration
}

// newMemoryBus returns an empty bus.
func newMemoryBus() *memoryBus {
	return &memoryBus{nodes: make(map[*memoryBroker]struct{}), records: make(map[string]Record),
		signalWait: defaultSignalWait}
}

// memoryBroker is one node on a memoryBus. Its deliveries go through a
// queue drained by its own goroutine, run: Publish only appends to queues,
// so a hub publishing from its own goroutine can never wait for itself.
// run starts with the first queued delivery, so a broker that is never
// used (a hub in a unit test) has no goroutine to stop.
type memoryBroker struct {
	bus  *memoryBus
	node string

	// Guarded by bus.mu.
	subs     map[string]*memorySub
	presence map[string]PresenceUpdate // room -> this node's members
	watch    func(PresenceUpdate)
	recWatch func(RecordUpdate)
	sigWatch func(Signal, func(int))
	queue    []func()
	closed   bool
	started  bool // run has been started (by the first enqueue)

	wake      chan struct{} // buffered (1): queue is not empty
	done      chan struct{} // closed by Close
	exited    chan struct{} // closed when run returns
	closeOnce sync.Once
}

// memorySub is one room subscription. stopped is set by Unsubscribe so that
// deliveries already queued are dropped.
type memorySub struct {
	fn      func(Delivery)
	stopped atomic.Bool
}

// newMemoryBroker returns a one-node broker on a private bus: the default
// when hubbub runs without NATS.
func newMemoryBroker() *memoryBroker {
	return newMemoryBus().node("local")
}

// node attaches a new broker called name to the bus. Close detaches it and
// stops its goroutine.
func (bus *memoryBus) node(name string) *memoryBroker {
	b := &memoryBroker{
		bus:      bus,
		node:     name,
		subs:     make(map[string]*memorySub),
		presence: make(map[string]PresenceUpdate),
		wake:     make(chan struct{}, 1),
		done:     make(chan struct{}),
		exited:   make(chan struct{}),
	}
	bus.mu.Lock()
	bus.nodes[b] = struct{}{}
	bus.mu.Unlock()
	return b
}

// start runs b's delivery goroutine now rather than on first use. The hub
// calls it as run begins, so that a server's goroutines are all there from
// its start (leak checks compare counts) while a broker that is never run
// starts none.
func (b *memoryBroker) start() {
	b.bus.mu.Lock()
	defer b.bus.mu.Unlock()
	if !b.started && !b.closed {
		b.started = true
		go b.run()
		if len(b.queue) > 0 { // what queueQuiet queued before
			select {
			case b.wake <- struct{}{}:
			default:
			}
		}
	}
}

// run calls queued deliveries in order until Close.
func (b *memoryBroker) run() {
	defer close(b.exited)
	for {
		select {
		case <-b.done:
			return
		case <-b.wake:
		}
		b.bus.mu.Lock()
		jobs := b.queue
		b.queue = nil
		b.bus.mu.Unlock()
		for _, job := range jobs {
			select {
			case <-b.done:
				return
			default:
			}
			job()
		}
	}
}

// queueQuiet adds job to b's queue without starting its goroutine: the
// next enqueue or start runs it. WatchRecords uses it, so that a hub that
// is made and never run (benchmarks) leaves no goroutine behind. The
// caller holds bus.mu.
func (b *memoryBroker) queueQuiet(job func()) {
	if b.closed {
		return
	}
	if b.started {
		b.enqueue(job)
		return
	}
	b.queue = append(b.queue, job)
}

// enqueue adds job to b's queue. The caller holds bus.mu.
func (b *memoryBroker) enqueue(job func()) {
	if b.closed {
		return
	}
	if !b.started {
		b.started = true
		go b.run()
	}
	b.queue = append(b.queue, job)
	select {
	case b.wake <- struct{}{}:
	default:
	}
}

// Sequenced implements Broker: the bus keeps no log.
func (b *memoryBroker) Sequenced() bool { return false }

// Publish implements Broker. It queues m for every subscribed node, under
// the bus lock so that every node sees publishes in the same order, and
// done behind m's delivery on the publisher's own queue.
func (b *memoryBroker) Publish(m Envelope, done func(Published)) error {
	bus := b.bus
	bus.mu.Lock()
	defer bus.mu.Unlock()
	if b.closed {
		return errBrokerClosed
	}
	var targets []*memorySub
	var nodes []*memoryBroker
	for n := range bus.nodes {
		if s := n.subs[m.Room]; s != nil {
			if len(n.queue) >= maxMemoryQueue {
				return fmt.Errorf("publish to %q: node %s: %w", m.Room, n.node, errBrokerBusy)
			}
			targets, nodes = append(targets, s), append(nodes, n)
		}
	}
	for i, n := range nodes {
		s := targets[i]
		n.enqueue(func() { s.deliver(Delivery{Kind: DeliverMessage, Msg: m}) })
	}
	if done != nil {
		b.enqueue(func() { done(Published{}) })
	}
	return nil
}

// deliver calls the subscription's callback unless it has been stopped.
func (s *memorySub) deliver(d Delivery) {
	if !s.stopped.Load() {
		s.fn(d)
	}
}

// Subscribe implements Broker. With no log there is nothing to replay:
// the synced marker is the first delivery.
func (b *memoryBroker) Subscribe(room string, fn func(Delivery)) error {
	bus := b.bus
	bus.mu.Lock()
	defer bus.mu.Unlock()
	if b.closed {
		return errBrokerClosed
	}
	if b.subs[room] != nil {
		return fmt.Errorf("subscribe %q: already subscribed", room)
	}
	s := &memorySub{fn: fn}
	b.subs[room] = s
	b.enqueue(func() { s.deliver(Delivery{Kind: DeliverSynced}) })
	return nil
}

// Unsubscribe implements Broker.
func (b *memoryBroker) Unsubscribe(room string) {
	b.bus.mu.Lock()
	defer b.bus.mu.Unlock()
	if s := b.subs[room]; s != nil {
		s.stopped.Store(true)
		delete(b.subs, room)
	}
}

// SetPresence implements Broker.
func (b *memoryBroker) SetPresence(room string, names []string, count int, gone map[string]LeaveMark) {
	bus := b.bus
	bus.mu.Lock()
	defer bus.mu.Unlock()
	if b.closed {
		return
	}
	u := PresenceUpdate{Node: b.node, Room: room}
	if count > 0 {
		u.Names, u.Count = slices.Clone(names), count
		b.presence[room] = u
	} else {
		delete(b.presence, room)
	}
	u.Gone = maps.Clone(gone) // this announcement only: not what b.presence keeps
	b.announce(u)
}

// announce queues a presence update about b for every other watching node.
// The caller holds bus.mu.
func (b *memoryBroker) announce(u PresenceUpdate) {
	for n := range b.bus.nodes {
		if n != b && n.watch != nil {
			watch := n.watch
			n.enqueue(func() { watch(u) })
		}
	}
}

// WatchPresence implements Broker. The callback first hears the current
// members of every other node.
func (b *memoryBroker) WatchPresence(fn func(PresenceUpdate)) {
	bus := b.bus
	bus.mu.Lock()
	defer bus.mu.Unlock()
	b.watch = fn
	for n := range bus.nodes {
		for _, u := range n.presence {
			if n != b {
				b.enqueue(func() { fn(u) })
			}
		}
	}
}

// PutRecord implements Broker.
func (b *memoryBroker) PutRecord(key string, value []byte, done func(uint64, error)) error {
	if !validRecordKey(key) {
		return fmt.Errorf("put %q: %w", key, errBadRecordKey)
	}
	bus := b.bus
	bus.mu.Lock()
	defer bus.mu.Unlock()
	if b.closed {
		return errBrokerClosed
	}
	bus.rev++
	r := Record{Key: key, Value: slices.Clone(value), Rev: bus.rev}
	bus.records[key] = r
	bus.announceRecord(RecordUpdate{Kind: RecordPut, Record: r, Live: true})
	if done != nil {
		b.enqueue(func() { done(r.Rev, nil) })
	}
	return nil
}

// DeleteRecord implements Broker.
func (b *memoryBroker) DeleteRecord(key string, rev uint64, done func(error)) error {
	bus := b.bus
	bus.mu.Lock()
	defer bus.mu.Unlock()
	if b.closed {
		return errBrokerClosed
	}
	var err error
	switch r, ok := bus.records[key]; {
	case !ok:
		// Nothing to remove: a delete of a missing key changes nothing.
	case rev != 0 && r.Rev != rev:
		err = fmt.Errorf("delete %q at revision %d (now %d): %w", key, rev, r.Rev, errRecordChanged)
	default:
		delete(bus.records, key)
		bus.rev++
		bus.announceRecord(RecordUpdate{Kind: RecordDeleted, Record: Record{Key: key, Rev: bus.rev}, Live: true})
	}
	if done != nil {
		b.enqueue(func() { done(err) })
	}
	return nil
}

// announceRecord queues u for every node that watches records. The caller
// holds bus.mu.
func (bus *memoryBus) announceRecord(u RecordUpdate) {
	for n := range bus.nodes {
		if watch := n.recWatch; watch != nil {
			n.enqueue(func() { watch(u) })
		}
	}
}

// WatchRecords implements Broker: the records there are, oldest revision
// first, then the synced marker, then each change.
func (b *memoryBroker) WatchRecords(fn func(RecordUpdate)) {
	bus := b.bus
	bus.mu.Lock()
	defer bus.mu.Unlock()
	b.recWatch = fn
	all := make([]Record, 0, len(bus.records))
	for _, r := range bus.records {
		all = append(all, r)
	}
	slices.SortFunc(all, func(x, y Record) int { return cmp.Compare(x.Rev, y.Rev) })
	for _, r := range all {
		b.queueQuiet(func() { fn(RecordUpdate{Kind: RecordPut, Record: r}) })
	}
	b.queueQuiet(func() { fn(RecordUpdate{Kind: RecordsSynced}) })
}

// gathering is one signal's answers, on their way to its done callback.
// Guarded by bus.mu.
type gathering struct {
	want, got, sum int
	finished       bool
	timer          *time.Timer
	from           *memoryBroker // whose queue done runs on
	done           func(sum, answered int)
}

// finish hands the answers so far to done, once. The caller holds bus.mu.
func (g *gathering) finish() {
	if g.finished {
		return
	}
	g.finished = true
	if g.timer != nil {
		g.timer.Stop()
	}
	sum, got, done := g.sum, g.got, g.done
	g.from.enqueue(func() { done(sum, got) })
}

// Signal implements Broker: every watching node, this one included, gets s;
// done hears once they have all answered, or after the bus's signal wait.
func (b *memoryBroker) Signal(s Signal, done func(sum, answered int)) error {
	bus := b.bus
	bus.mu.Lock()
	defer bus.mu.Unlock()
	if b.closed {
		return errBrokerClosed
	}
	var g *gathering
	if done != nil {
		g = &gathering{from: b, done: done}
	}
	for n := range bus.nodes {
		watch := n.sigWatch
		if watch == nil {
			// A node that watches no signals has no connections to act
			// on: it answers 0 at once, as a NATS node does.
			if g != nil {
				g.want++
				g.got++
			}
			continue
		}
		answer := func(int) {}
		if g != nil {
			g.want++
			var once sync.Once
			answer = func(k int) {
				once.Do(func() {
					bus.mu.Lock()
					defer bus.mu.Unlock()
					if g.finished {
						return
					}
					g.got++
					g.sum += k
					if g.got == g.want {
						g.finish()
					}
				})
			}
		}
		n.enqueue(func() { watch(s, answer) })
	}
	if g != nil {
		if g.got == g.want {
			g.finish()
		} else {
			g.timer = time.AfterFunc(bus.signalWait, func() {
				bus.mu.Lock()
				defer bus.mu.Unlock()
				g.finish()
			})
		}
	}
	return nil
}

// WatchSignals implements Broker.
func (b *memoryBroker) WatchSignals(fn func(Signal, func(int))) {
	b.bus.mu.Lock()
	defer b.bus.mu.Unlock()
	b.sigWatch = fn
}

// Ready implements Broker: an in-process bus is always reachable.
func (b *memoryBroker) Ready() error { return nil }

// Close implements Broker. Other nodes hear that b's members are gone.
func (b *memoryBroker) Close() error {
	b.closeOnce.Do(func() {
		bus := b.bus
		bus.mu.Lock()
		b.closed = true
		delete(bus.nodes, b)
		for room := range b.presence {
			b.announce(PresenceUpdate{Node: b.node, Room: room})
		}
		started := b.started
		bus.mu.Unlock()
		close(b.done)
		if started {
			<-b.exited
		}
	})
	return nil
}

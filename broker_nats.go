package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

var _ Broker = (*natsBroker)(nil)

// natsOptions configures a natsBroker. Zero fields take the defaults named.
type natsOptions struct {
	URL     string // server URL(s), comma-separated
	Prefix  string // first token of every subject and stream name; default "hubbub"
	Node    string // this node's name in presence; default a random id
	History int    // messages replayed to a new subscription (at least 1)
	// Retain is how many messages each room stream keeps: far more than
	// History, so that a burst cannot push messages out of the stream
	// before a consumer that is a little behind has fetched them.
	// Default max(History, 10000).
	Retain   int
	Interval time.Duration // presence heartbeat period; default 2s
	// Misses is how many heartbeats a node may miss before its members are
	// dropped. Default 3.
	Misses int
	// ReconnectWait is the pause between reconnect attempts (nats.go adds
	// jitter). Default 500ms.
	ReconnectWait time.Duration
	// DedupeWindow is how long a room stream remembers message ids, so
	// that a message resent with the same MsgID is logged once (the
	// stream's Duplicates window). Default 2m.
	DedupeWindow time.Duration
	// SignalWait bounds how long a signal's sender waits for nodes that
	// have not answered. Default defaultSignalWait.
	SignalWait time.Duration
	// Replicas is how many JetStream servers keep each stream and the
	// moderation bucket; 0: chosen on connect (see replicas).
	Replicas int
	Log      *slog.Logger
}

// Queue sizes of the publish path. A publish that finds pubQueue full is
// refused with errBrokerBusy rather than blocking the hub.
const (
	pubQueue   = 4096
	ackQueue   = 4096
	ackTimeout = 5 * time.Second // a publish not acknowledged by then fails
	setupWait  = 5 * time.Second // bound on one stream or consumer request
	maxBackoff = 5 * time.Second // longest pause between subscription attempts
)

// natsBroker is a Broker over NATS JetStream. Each room is one stream,
// <prefix>_room_<token>, capturing the subject <prefix>.room.<token> and
// keeping the last Retain messages: the stream sequence is the room's
// cluster-wide seq, and the stream's creation time is its epoch. A node
// follows a room with an ordered consumer that replays the newest History
// messages and then stays live. Presence is plain NATS on <prefix>.presence.
//
// Goroutines, each ended by Close: publishLoop (hands messages to
// JetStream), ackLoop (waits for their acknowledgements), presenceLoop
// (heartbeats, remote members, expiry) and one follow per subscribed room.
type natsBroker struct {
	opt natsOptions
	log *slog.Logger
	nc  *nats.Conn
	js  jetstream.JetStream

	pubs chan pubJob     // Publish -> publishLoop
	acks chan pendingAck // publishLoop -> ackLoop

	// streams remembers rooms whose stream is known to exist, so that only
	// the first publish to a room pays for creating it.
	streams  sync.Map // room -> its stream's epoch (string)
	checking sync.Map // rooms whose stream recheckStream is looking at

	mu       sync.Mutex
	follows  map[string]context.CancelFunc   // room -> its follow; guarded by mu
	local    map[string]PresenceUpdate       // room -> our members; guarded by mu
	dirty    map[string]struct{}             // rooms whose names changed; guarded by mu
	gone     map[string]map[string]LeaveMark // room -> marked leaves not yet published; guarded by mu
	changed  chan struct{}                   // buffered (1): dirty is not empty
	watchers chan func(PresenceUpdate)       // WatchPresence -> presenceLoop
	presence chan *nats.Msg                  // presence subject -> presenceLoop
	peers    atomic.Int32                    // other nodes presenceLoop knows of

	// Moderation records and signals (see recordLoop, Signal).
	recs      chan recJob                             // PutRecord, DeleteRecord -> recordLoop
	kv        jetstream.KeyValue                      // the bucket once made; guarded by mu
	recSynced chan struct{}                           // closed when the initial records are delivered; nil: no watcher; guarded by mu
	replMu    sync.Mutex                              // guards repl, replShort and replAt
	repl      int                                     // replicas chosen (see replicas); 0: not yet
	replShort bool                                    // repl is 1 because JetStream could not place 3
	replAt    time.Time                               // when JetStream last said so
	sigFn     atomic.Pointer[func(Signal, func(int))] // set by WatchSignals; nil: answer 0
	inbox     string                                  // prefix of the reply subjects of our signals
	sigMu     sync.Mutex                              // guards pending and nextSig
	pending   map[uint64]*natsGathering
	nextSig   uint64

	wg        sync.WaitGroup
	done      chan struct{} // closed by Close
	closeOnce sync.Once
	// callbacksDone is closed when nats.go has run its last handler.
	callbacksDone chan struct{}
}

// pubJob is one message waiting to be handed to JetStream.
type pubJob struct {
	m    Envelope
	done func(Published)
}

// pendingAck is a message handed to JetStream, waiting for its ack.
type pendingAck struct {
	f   jetstream.PubAckFuture
	job pubJob
}

// presenceMsg is what nodes tell each other on the presence subject: a
// change in one room, a full heartbeat of every room, or goodbye.
type presenceMsg struct {
	Node  string                    `json:"node"`
	Kind  string                    `json:"kind"` // "room", "full" or "bye"
	Room  PresenceUpdate            `json:"room,omitzero"`
	Rooms map[string]PresenceUpdate `json:"rooms,omitempty"`
}

// remoteNode is what presenceLoop knows of another node.
type remoteNode struct {
	seen  time.Time
	rooms map[string]PresenceUpdate
}

// newNATSBroker connects to opt.URL and starts the broker's goroutines. The
// server need not be up yet: the connection keeps retrying in the
// background, and the broker reports not ready until it is connected.
func newNATSBroker(opt natsOptions) (*natsBroker, error) {
	if opt.Prefix == "" {
		opt.Prefix = "hubbub"
	}
	if !validPrefix(opt.Prefix) {
		return nil, fmt.Errorf("nats prefix %q: want 1-32 characters from A-Z a-z 0-9 _ -", opt.Prefix)
	}
	if opt.Node == "" {
		opt.Node = defaultNodeName()
	}
	if opt.Interval <= 0 {
		opt.Interval = 2 * time.Second
	}
	if opt.Misses <= 0 {
		opt.Misses = 3
	}
	if opt.ReconnectWait <= 0 {
		opt.ReconnectWait = 500 * time.Millisecond
	}
	opt.History = max(opt.History, 1)
	if opt.DedupeWindow <= 0 {
		opt.DedupeWindow = 2 * time.Minute
	}
	if opt.Retain <= 0 {
		opt.Retain = max(opt.History, 10000)
	}
	if opt.SignalWait <= 0 {
		opt.SignalWait = defaultSignalWait
	}
	if opt.Log == nil {
		opt.Log = slog.New(slog.DiscardHandler)
	}
	log := opt.Log.With("broker", "nats", "node", opt.Node)
	// nats.go runs the handlers below on a goroutine of its own; the last
	// it runs is ClosedHandler, so Close waits for it, and no handler logs
	// after Close has returned.
	callbacksDone := make(chan struct{})
	nc, err := nats.Connect(opt.URL,
		nats.ClosedHandler(func(*nats.Conn) { close(callbacksDone) }),
		nats.Name("hubbub "+opt.Node),
		nats.MaxReconnects(-1),
		nats.ReconnectWait(opt.ReconnectWait),
		nats.RetryOnFailedConnect(true),
		// No reconnect buffer: a publish while disconnected fails at once
		// and its sender is told, instead of waiting in a buffer.
		nats.ReconnectBufSize(-1),
		nats.DisconnectErrHandler(func(_ *nats.Conn, err error) {
			if err == nil {
				return // we closed it
			}
			log.Warn("nats disconnected; messages cannot be shared until it is back", "err", err)
		}),
		nats.ReconnectHandler(func(c *nats.Conn) {
			log.Info("nats reconnected", "url", c.ConnectedUrlRedacted())
		}),
		nats.ConnectHandler(func(c *nats.Conn) {
			log.Info("nats connected", "url", c.ConnectedUrlRedacted())
		}),
		nats.ErrorHandler(func(_ *nats.Conn, sub *nats.Subscription, err error) {
			subj := ""
			if sub != nil {
				subj = sub.Subject
			}
			log.Warn("nats error", "subject", subj, "err", err)
		}),
	)
	if err != nil {
		return nil, fmt.Errorf("nats connect %s: %w", opt.URL, err)
	}
	js, err := jetstream.New(nc,
		jetstream.WithPublishAsyncMaxPending(ackQueue),
		jetstream.WithPublishAsyncTimeout(ackTimeout),
		jetstream.WithDefaultTimeout(setupWait))
	if err != nil {
		closeConn(nc, callbacksDone)
		return nil, fmt.Errorf("jetstream: %w", err)
	}
	if err := requireJetStream(nc); err != nil { // jetstream.go
		closeConn(nc, callbacksDone)
		return nil, err
	}
	b := &natsBroker{
		opt:           opt,
		log:           log,
		nc:            nc,
		callbacksDone: callbacksDone,
		js:            js,
		pubs:          make(chan pubJob, pubQueue),
		acks:          make(chan pendingAck, ackQueue),
		follows:       make(map[string]context.CancelFunc),
		local:         make(map[string]PresenceUpdate),
		dirty:         make(map[string]struct{}),
		gone:          make(map[string]map[string]LeaveMark),
		changed:       make(chan struct{}, 1),
		watchers:      make(chan func(PresenceUpdate)),
		presence:      make(chan *nats.Msg, 1024),
		recs:          make(chan recJob, recordQueue),
		inbox:         nc.NewInbox(),
		pending:       make(map[uint64]*natsGathering),
		done:          make(chan struct{}),
	}
	// A channel subscription is renewed by nats.go after a reconnect. If
	// presenceLoop falls behind, nats.go drops presence messages rather
	// than blocking; the next heartbeat repairs what was lost.
	psub, err := nc.ChanSubscribe(b.presenceSubject(), b.presence)
	if err != nil {
		closeConn(nc, callbacksDone)
		return nil, fmt.Errorf("subscribe to presence: %w", err)
	}
	// Answers to our signals: one subscription for all of them, renewed
	// by nats.go after a reconnect.
	if _, err := nc.Subscribe(b.inbox+".*", b.onAnswer); err != nil {
		closeConn(nc, callbacksDone)
		return nil, fmt.Errorf("subscribe to signal answers: %w", err)
	}
	// Signals from every node. The subscription is made before the first
	// heartbeat goes out on the same connection, so a node that has heard
	// of this one can count on its answer; until WatchSignals installs a
	// handler the answer is 0 (no connections here yet).
	if _, err := nc.Subscribe(b.signalSubject(), b.onSignal); err != nil {
		closeConn(nc, callbacksDone)
		return nil, fmt.Errorf("subscribe to signals: %w", err)
	}
	b.wg.Add(4)
	go b.publishLoop()
	go b.ackLoop()
	go b.presenceLoop(psub)
	go b.recordLoop()
	return b, nil
}

// roomSubject returns the subject of room's messages.
func (b *natsBroker) roomSubject(room string) (string, error) {
	tok, err := subjectToken(room)
	if err != nil {
		return "", err
	}
	return b.opt.Prefix + ".room." + tok, nil
}

// streamName returns the name of room's stream. Tokens are already valid
// stream-name characters.
func (b *natsBroker) streamName(room string) (string, error) {
	tok, err := subjectToken(room)
	if err != nil {
		return "", err
	}
	return b.opt.Prefix + "_room_" + tok, nil
}

// presenceSubject is where nodes exchange presence.
func (b *natsBroker) presenceSubject() string { return b.opt.Prefix + ".presence" }

// ensureStream returns room's stream, creating it if it does not exist
// and updating it if its settings differ from this node's (replicas as
// raiseReplicas says). A stream that is as it should be costs one info
// request, which JetStream answers without a cluster-wide proposal.
// Idempotent across nodes.
func (b *natsBroker) ensureStream(ctx context.Context, room string) (jetstream.Stream, error) {
	name, err := b.streamName(room)
	if err != nil {
		return nil, err
	}
	subj, _ := b.roomSubject(room)
	ctx, cancel := context.WithTimeout(ctx, setupWait)
	defer cancel()
	want := jetstream.StreamConfig{
		Name:        name,
		Description: "hubbub room " + room,
		Subjects:    []string{subj},
		MaxMsgs:     int64(b.opt.Retain),
		Discard:     jetstream.DiscardOld,
		Storage:     jetstream.FileStorage,
		Duplicates:  b.opt.DedupeWindow,
	}
	n, nerr := b.replicas(ctx)
	st, err := b.js.Stream(ctx, name)
	if errors.Is(err, jetstream.ErrStreamNotFound) {
		if nerr != nil {
			return nil, fmt.Errorf("stream for %q: %w", room, nerr)
		}
		want.Replicas = n
		st, err = b.js.CreateStream(ctx, want)
		if errors.Is(err, jetstream.ErrStreamNameAlreadyInUse) {
			st, err = b.js.Stream(ctx, name) // another node made it meanwhile
		}
	}
	if err != nil {
		return nil, fmt.Errorf("stream for %q: %w", room, err)
	}
	have := st.CachedInfo().Config
	want.Replicas = have.Replicas
	if nerr == nil && b.raiseReplicas(have.Replicas, n) {
		want.Replicas = n
	}
	if have.MaxMsgs != want.MaxMsgs || have.Duplicates != want.Duplicates || have.Discard != want.Discard ||
		have.Replicas != want.Replicas || !slices.Equal(have.Subjects, want.Subjects) {
		if st, err = b.js.UpdateStream(ctx, want); err != nil {
			return nil, fmt.Errorf("update stream for %q: %w", room, err)
		}
	}
	b.streams.Store(room, streamEpoch(st.CachedInfo()))
	return st, nil
}

// streamEpoch is a room's epoch: its stream's creation time, so that it
// changes only when the stream is deleted and made again.
func streamEpoch(info *jetstream.StreamInfo) string {
	return strconv.FormatInt(info.Created.UnixNano(), 36)
}

// finish reports the outcome of a publish to its done callback, if any.
func (j pubJob) finish(p Published) {
	if j.done != nil {
		j.done(p)
	}
}

// Publish implements Broker. While NATS is unreachable it fails at once
// with errBrokerDown, so the sender learns immediately.
func (b *natsBroker) Publish(m Envelope, done func(Published)) error {
	select {
	case <-b.done:
		return errBrokerClosed
	default:
	}
	if !b.nc.IsConnected() {
		return errBrokerDown
	}
	select {
	case b.pubs <- pubJob{m: m, done: done}:
		return nil
	default:
		return errBrokerBusy
	}
}

// publishLoop hands queued messages to JetStream in order, so one sender's
// messages keep their order in the stream.
func (b *natsBroker) publishLoop() {
	defer b.wg.Done()
	for {
		select {
		case <-b.done:
			return
		case j := <-b.pubs:
			if err := b.send(j); err != nil {
				j.finish(Published{Err: fmt.Errorf("publish to %q: %w", j.m.Room, err)})
			}
		}
	}
}

// send publishes one message asynchronously and queues its ack future.
func (b *natsBroker) send(j pubJob) error {
	if _, ok := b.streams.Load(j.m.Room); !ok {
		if _, err := b.ensureStream(context.Background(), j.m.Room); err != nil {
			return err
		}
	}
	subj, err := b.roomSubject(j.m.Room)
	if err != nil {
		return err
	}
	stream, _ := b.streamName(j.m.Room)
	data, err := json.Marshal(j.m)
	if err != nil {
		return fmt.Errorf("encode: %w", err)
	}
	msg := &nats.Msg{Subject: subj, Data: data}
	if j.m.MsgID != "" {
		// JetStream drops a message whose id it has logged within the
		// stream's Duplicates window, and acks it with the first one's seq.
		msg.Header = nats.Header{jetstream.MsgIDHeader: []string{j.m.MsgID}}
	}
	f, err := b.js.PublishMsgAsync(msg, jetstream.WithExpectStream(stream))
	if err != nil {
		return err
	}
	select {
	case b.acks <- pendingAck{f: f, job: j}:
	case <-b.done:
	}
	return nil
}

// ackLoop waits for each publish's acknowledgement and reports failures.
// A publish that nobody answered has its stream looked at again, off the
// publish path (recheckStream).
func (b *natsBroker) ackLoop() {
	defer b.wg.Done()
	for {
		var p pendingAck
		select {
		case <-b.done:
			return
		case p = <-b.acks:
		}
		select {
		case <-b.done:
			return
		case ack := <-p.f.Ok():
			epoch, _ := b.streams.Load(p.job.m.Room)
			e, _ := epoch.(string)
			p.job.finish(Published{Seq: ack.Sequence, Epoch: e, Duplicate: ack.Duplicate})
		case err := <-p.f.Err():
			if errors.Is(err, jetstream.ErrNoStreamResponse) || errors.Is(err, nats.ErrNoResponders) {
				b.recheckStream(p.job.m.Room)
			}
			p.job.finish(Published{Err: fmt.Errorf("publish to %q: %w", p.job.m.Room, err)})
		}
	}
}

// recheckStream looks again at the stream of a room whose publish nobody
// answered: the stream has no leader (JetStream is electing one, which
// resolves by itself) or it was deleted (it is made again, with a new
// epoch). It runs on a goroutine of its own, so that the publish loop does
// not wait the seconds an election can take, and publishes meanwhile fail
// fast with not_delivered. One check per room runs at a time.
func (b *natsBroker) recheckStream(room string) {
	if _, running := b.checking.LoadOrStore(room, struct{}{}); running {
		return
	}
	b.wg.Add(1) // from ackLoop, itself counted: Close is still waiting
	go func() {
		defer b.wg.Done()
		defer b.checking.Delete(room)
		ctx, cancel := context.WithCancel(context.Background())
		defer cancel()
		go func() {
			select {
			case <-b.done:
				cancel()
			case <-ctx.Done():
			}
		}()
		if _, err := b.ensureStream(ctx, room); err != nil && ctx.Err() == nil {
			b.log.Warn("room stream unavailable; its messages fail until JetStream answers", "room", room, "err", err)
		}
	}()
}

// Sequenced implements Broker: room streams number the messages.
func (b *natsBroker) Sequenced() bool { return true }

// Subscribe implements Broker: it starts a follow goroutine for room.
func (b *natsBroker) Subscribe(room string, fn func(Delivery)) error {
	if _, err := subjectToken(room); err != nil {
		return fmt.Errorf("subscribe %q: %w", room, err)
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	select {
	case <-b.done:
		return errBrokerClosed
	default:
	}
	if b.follows[room] != nil {
		return fmt.Errorf("subscribe %q: already subscribed", room)
	}
	ctx, cancel := context.WithCancel(context.Background())
	b.follows[room] = cancel
	b.wg.Add(1)
	go b.follow(ctx, room, fn)
	return nil
}

// Unsubscribe implements Broker.
func (b *natsBroker) Unsubscribe(room string) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if cancel := b.follows[room]; cancel != nil {
		cancel()
		delete(b.follows, room)
	}
}

// follow keeps room's consumer running until ctx ends, retrying its setup
// with backoff while NATS is unreachable.
func (b *natsBroker) follow(ctx context.Context, room string, fn func(Delivery)) {
	defer b.wg.Done()
	wait := b.opt.ReconnectWait
	for {
		cc, err := b.consume(ctx, room, fn)
		if err == nil {
			<-ctx.Done()
			cc.Stop()
			return
		}
		if ctx.Err() != nil {
			return
		}
		b.log.Warn("cannot follow room; retrying", "room", room, "err", err, "retry_in", wait)
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return
		case <-t.C:
		}
		wait = min(2*wait, maxBackoff)
	}
}

// consume makes sure room's stream exists and starts an ordered consumer
// that replays it and stays live. The synced marker is sent when the
// replay reaches the stream's last sequence as it was before the consumer
// started. The ordered consumer recreates itself after a reconnect and
// resumes after the last sequence it delivered, so nothing repeats.
func (b *natsBroker) consume(ctx context.Context, room string, fn func(Delivery)) (jetstream.ConsumeContext, error) {
	if synced := b.recordsSynced(); synced != nil {
		// A replay must meet the deleted messages' tombstones: they come
		// with the records, so the records go first.
		select {
		case <-synced:
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
	st, err := b.ensureStream(ctx, room)
	if err != nil {
		return nil, err
	}
	info := st.CachedInfo()
	epoch := streamEpoch(info)
	last := info.State.LastSeq
	cctx, cancel := context.WithTimeout(ctx, setupWait)
	defer cancel()
	cfg := jetstream.OrderedConsumerConfig{InactiveThreshold: time.Minute}
	if h := uint64(b.opt.History); last > h {
		// Replay only the newest History messages.
		cfg.DeliverPolicy, cfg.OptStartSeq = jetstream.DeliverByStartSequencePolicy, last-h+1
	}
	cons, err := st.OrderedConsumer(cctx, cfg)
	if err != nil {
		return nil, fmt.Errorf("consumer for %q: %w", room, err)
	}
	synced := info.State.Msgs == 0
	b.log.Debug("following room", "room", room, "epoch", epoch, "last", last)
	if synced {
		fn(Delivery{Kind: DeliverSynced, Epoch: epoch, Last: last})
	}
	return cons.Consume(func(msg jetstream.Msg) {
		md, err := msg.Metadata()
		if err != nil {
			b.log.Warn("message without metadata", "room", room, "err", err)
			return
		}
		var m Envelope
		if err := json.Unmarshal(msg.Data(), &m); err != nil {
			b.log.Warn("undecodable message", "room", room, "seq", md.Sequence.Stream, "err", err)
		}
		m.Room, m.Seq = room, md.Sequence.Stream
		if ctx.Err() != nil {
			return
		}
		fn(Delivery{Kind: DeliverMessage, Msg: m, Epoch: epoch})
		if !synced && m.Seq >= last {
			synced = true
			fn(Delivery{Kind: DeliverSynced, Epoch: epoch, Last: last})
		}
	}, jetstream.ConsumeErrHandler(func(_ jetstream.ConsumeContext, err error) {
		b.log.Warn("consumer", "room", room, "err", err)
	}))
}

// SetPresence implements Broker: presenceLoop publishes the change.
func (b *natsBroker) SetPresence(room string, names []string, count int, gone map[string]LeaveMark) {
	b.mu.Lock()
	if len(gone) > 0 {
		// Kept until publishChanges sends them: changes coalesce, marks
		// must not be lost with them.
		if b.gone[room] == nil {
			b.gone[room] = make(map[string]LeaveMark)
		}
		maps.Copy(b.gone[room], gone)
	}
	if count <= 0 {
		delete(b.local, room)
	} else {
		b.local[room] = PresenceUpdate{Room: room, Names: slices.Clone(names), Count: count}
	}
	b.dirty[room] = struct{}{}
	b.mu.Unlock()
	select {
	case b.changed <- struct{}{}:
	default:
	}
}

// WatchPresence implements Broker.
func (b *natsBroker) WatchPresence(fn func(PresenceUpdate)) {
	select {
	case b.watchers <- fn:
	case <-b.done:
	}
}

// presenceLoop owns what this node knows of the others. It publishes our
// changes as they happen and a full heartbeat every Interval, applies the
// other nodes' messages, and drops a node that has been silent for Misses
// heartbeats. On Close it says goodbye so the others need not wait.
func (b *natsBroker) presenceLoop(sub *nats.Subscription) {
	defer b.wg.Done()
	remote := make(map[string]*remoteNode)
	var watch func(PresenceUpdate)
	emit := func(node string, u PresenceUpdate) {
		if watch != nil {
			u.Node = node
			watch(u)
		}
	}
	tick := time.NewTicker(b.opt.Interval)
	defer tick.Stop()
	b.heartbeat("full")
	for {
		select {
		case <-b.done:
			b.heartbeat("bye")
			sub.Unsubscribe()
			return
		case fn := <-b.watchers:
			watch = fn
			for node, r := range remote {
				for _, u := range r.rooms {
					emit(node, u)
				}
			}
		case <-b.changed:
			b.publishChanges()
		case <-tick.C:
			b.heartbeat("full")
			limit := time.Duration(b.opt.Misses) * b.opt.Interval
			for node, r := range remote {
				if time.Since(r.seen) > limit {
					b.log.Info("node silent; dropping its members", "peer", node, "silent_for", time.Since(r.seen).Round(time.Millisecond))
					delete(remote, node)
					b.peers.Store(int32(len(remote)))
					for room := range r.rooms {
						emit(node, PresenceUpdate{Room: room})
					}
				}
			}
		case msg := <-b.presence:
			var pm presenceMsg
			if err := json.Unmarshal(msg.Data, &pm); err != nil || pm.Node == "" {
				b.log.Warn("bad presence message", "err", err)
				continue
			}
			if pm.Node == b.opt.Node {
				continue
			}
			r := remote[pm.Node]
			if r == nil {
				if pm.Kind == "bye" {
					continue
				}
				r = &remoteNode{rooms: make(map[string]PresenceUpdate)}
				remote[pm.Node] = r
				b.peers.Store(int32(len(remote)))
				b.log.Info("node joined the cluster", "peer", pm.Node)
				// Answer a newcomer at once rather than at our next tick,
				// so that it knows every node (and waits for their
				// answers to its signals: a DM from a node that has just
				// started must not miss a recipient elsewhere).
				b.heartbeat("full")
			}
			r.seen = time.Now()
			switch pm.Kind {
			case "room":
				if r.set(pm.Room) {
					emit(pm.Node, pm.Room)
				}
			case "full":
				for room := range r.rooms {
					if _, ok := pm.Rooms[room]; !ok {
						delete(r.rooms, room)
						emit(pm.Node, PresenceUpdate{Room: room})
					}
				}
				for room, u := range pm.Rooms {
					u.Room = room
					if r.set(u) {
						emit(pm.Node, u)
					}
				}
			case "bye":
				b.log.Info("node left the cluster", "peer", pm.Node)
				delete(remote, pm.Node)
				b.peers.Store(int32(len(remote)))
				for room := range r.rooms {
					emit(pm.Node, PresenceUpdate{Room: room})
				}
			}
		}
	}
}

// set records u and reports whether it changed anything.
func (r *remoteNode) set(u PresenceUpdate) bool {
	old, had := r.rooms[u.Room]
	if u.Count <= 0 {
		delete(r.rooms, u.Room)
		return had
	}
	u.Gone = nil // for the update that carried them only
	r.rooms[u.Room] = u
	return !had || old.Count != u.Count || !slices.Equal(old.Names, u.Names)
}

// publishChanges tells the cluster about every room whose local names
// changed since the last call.
func (b *natsBroker) publishChanges() {
	b.mu.Lock()
	msgs := make([]presenceMsg, 0, len(b.dirty))
	for room := range b.dirty {
		u := b.local[room]
		u.Room = room
		u.Gone = b.gone[room]
		msgs = append(msgs, presenceMsg{Node: b.opt.Node, Kind: "room", Room: u})
	}
	clear(b.dirty)
	clear(b.gone)
	b.mu.Unlock()
	for _, pm := range msgs {
		b.sendPresence(pm)
	}
}

// heartbeat publishes every local room's names ("full") or goodbye ("bye").
func (b *natsBroker) heartbeat(kind string) {
	// Changes not yet published go first, so that a heartbeat never
	// overtakes the change that carries marked leaves (SetPresence).
	b.publishChanges()
	pm := presenceMsg{Node: b.opt.Node, Kind: kind}
	if kind == "full" {
		b.mu.Lock()
		pm.Rooms = make(map[string]PresenceUpdate, len(b.local))
		for room, u := range b.local {
			u.Room = "" // the key says it
			pm.Rooms[room] = u
		}
		b.mu.Unlock()
	}
	b.sendPresence(pm)
}

// sendPresence publishes pm. While disconnected it fails, which is fine:
// the next heartbeat after reconnecting carries the full state.
func (b *natsBroker) sendPresence(pm presenceMsg) {
	data, err := json.Marshal(pm)
	if err != nil {
		return
	}
	if err := b.nc.Publish(b.presenceSubject(), data); err != nil && b.nc.IsConnected() {
		b.log.Warn("presence publish failed", "err", err)
	}
}

// Ready implements Broker: ready while connected to NATS, once the
// moderation records have been read.
func (b *natsBroker) Ready() error {
	if !b.nc.IsConnected() {
		return fmt.Errorf("nats %s: %w", b.nc.Status(), errBrokerDown)
	}
	if synced := b.recordsSynced(); synced != nil {
		select {
		case <-synced:
		default:
			return errRecordsLoading
		}
	}
	return nil
}

// Close implements Broker. It says goodbye, stops every goroutine and
// flushes and closes the connection.
func (b *natsBroker) Close() error {
	b.closeOnce.Do(func() {
		b.mu.Lock()
		for room, cancel := range b.follows {
			cancel()
			delete(b.follows, room)
		}
		close(b.done)
		b.mu.Unlock()
		b.wg.Wait()
		b.sigMu.Lock()
		for id, g := range b.pending {
			g.timer.Stop()
			delete(b.pending, id)
		}
		b.sigMu.Unlock()
		if b.nc.IsConnected() {
			b.nc.FlushTimeout(time.Second)
		}
		closeConn(b.nc, b.callbacksDone)
	})
	return nil
}

// closeConn closes nc and waits, for at most 5 s, until nats.go has run
// its last handler (done is closed by the ClosedHandler), so that none
// runs after the broker is gone.
func closeConn(nc *nats.Conn, done <-chan struct{}) {
	nc.Close()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
	}
}

// Moderation records live in one JetStream key-value bucket,
// <prefix>_moderation, keeping the newest value of each key on disk. Every
// node watches the whole bucket (recordsWatch); puts and deletes go
// through recordLoop, so that the hub never waits for JetStream. Signals
// are core NATS on <prefix>.signal: each node answers on the reply
// subject, and the sender gathers the answers (natsGathering).

// recordQueue bounds the puts and deletes waiting for recordLoop.
const recordQueue = 256

// recJob is one put (value set) or delete waiting for recordLoop.
type recJob struct {
	key     string
	value   []byte
	del     bool
	rev     uint64 // delete only this revision; 0: any
	putDone func(uint64, error)
	delDone func(error)
}

// bucketName is the name of the cluster's moderation bucket.
func (b *natsBroker) bucketName() string { return b.opt.Prefix + "_moderation" }

// signalSubject is where nodes exchange signals.
func (b *natsBroker) signalSubject() string { return b.opt.Prefix + ".signal" }

// bucket returns the moderation bucket, creating it on first use.
func (b *natsBroker) bucket(ctx context.Context) (jetstream.KeyValue, error) {
	b.mu.Lock()
	kv := b.kv
	b.mu.Unlock()
	if kv != nil {
		return kv, nil
	}
	n, err := b.replicas(ctx)
	if err != nil {
		return nil, fmt.Errorf("moderation bucket %s: %w", b.bucketName(), err)
	}
	kv, err = b.makeBucket(ctx, n)
	if err != nil {
		return nil, fmt.Errorf("moderation bucket %s: %w", b.bucketName(), err)
	}
	b.mu.Lock()
	b.kv = kv
	b.mu.Unlock()
	return kv, nil
}

// PutRecord implements Broker. While NATS is unreachable it fails at once.
func (b *natsBroker) PutRecord(key string, value []byte, done func(uint64, error)) error {
	if !validRecordKey(key) {
		return fmt.Errorf("put %q: %w", key, errBadRecordKey)
	}
	return b.queueRecord(recJob{key: key, value: slices.Clone(value), putDone: done})
}

// DeleteRecord implements Broker.
func (b *natsBroker) DeleteRecord(key string, rev uint64, done func(error)) error {
	if !validRecordKey(key) {
		return fmt.Errorf("delete %q: %w", key, errBadRecordKey)
	}
	return b.queueRecord(recJob{key: key, del: true, rev: rev, delDone: done})
}

// queueRecord hands j to recordLoop without blocking.
func (b *natsBroker) queueRecord(j recJob) error {
	select {
	case <-b.done:
		return errBrokerClosed
	default:
	}
	if !b.nc.IsConnected() {
		return errBrokerDown
	}
	select {
	case b.recs <- j:
		return nil
	default:
		return errBrokerBusy
	}
}

// recordLoop carries out puts and deletes in order, each bounded by
// setupWait, and reports each outcome.
func (b *natsBroker) recordLoop() {
	defer b.wg.Done()
	for {
		var j recJob
		select {
		case <-b.done:
			return
		case j = <-b.recs:
		}
		rev, err := b.applyRecord(j)
		switch {
		case j.del && j.delDone != nil:
			j.delDone(err)
		case !j.del && j.putDone != nil:
			j.putDone(rev, err)
		}
	}
}

// applyRecord carries out one put or delete, bounded by setupWait, and
// returns the put's revision.
func (b *natsBroker) applyRecord(j recJob) (uint64, error) {
	ctx, cancel := context.WithTimeout(context.Background(), setupWait)
	defer cancel()
	kv, err := b.bucket(ctx)
	if err != nil {
		return 0, err
	}
	if !j.del {
		rev, err := kv.Put(ctx, j.key, j.value)
		if err != nil {
			return 0, fmt.Errorf("put %q: %w", j.key, err)
		}
		return rev, nil
	}
	if j.rev == 0 {
		err = kv.Delete(ctx, j.key)
	} else if err = kv.Delete(ctx, j.key, jetstream.LastRevision(j.rev)); wrongRevision(err) {
		return 0, fmt.Errorf("delete %q at revision %d: %w", j.key, j.rev, errRecordChanged)
	}
	if err != nil {
		return 0, fmt.Errorf("delete %q: %w", j.key, err)
	}
	return 0, nil
}

// wrongRevision reports whether err is JetStream refusing a write because
// the key's revision was not the one expected.
func wrongRevision(err error) bool {
	var apiErr *jetstream.APIError
	return errors.As(err, &apiErr) && (apiErr.ErrorCode == jetstream.JSErrCodeStreamWrongLastSequence ||
		apiErr.ErrorCode == jetstream.JSErrCodeStreamWrongLastSequenceConstant)
}

// WatchRecords implements Broker: it starts recordsWatch, which follows
// the bucket for the rest of the broker's life.
func (b *natsBroker) WatchRecords(fn func(RecordUpdate)) {
	b.mu.Lock()
	defer b.mu.Unlock()
	select {
	case <-b.done:
		return
	default:
	}
	if b.recSynced != nil {
		return // one watcher per broker
	}
	b.recSynced = make(chan struct{})
	b.wg.Add(1)
	go b.recordsWatch(fn, b.recSynced)
}

// recordsWatch follows the bucket: the initial state, the synced marker
// (closing synced the first time), then every change. If the watch ends
// (its subscription was closed), it starts over with RecordsReset.
func (b *natsBroker) recordsWatch(fn func(RecordUpdate), synced chan struct{}) {
	defer b.wg.Done()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go func() { // ends the watch and any setup under way at Close
		select {
		case <-b.done:
		case <-ctx.Done():
		}
		cancel()
	}()
	wait := b.opt.ReconnectWait
	first := true
	for ctx.Err() == nil {
		w, err := b.watchBucket(ctx)
		if err != nil {
			b.log.Warn("cannot watch the moderation bucket; retrying", "err", err, "retry_in", wait)
			select {
			case <-ctx.Done():
				return
			case <-time.After(wait):
			}
			wait = min(2*wait, maxBackoff)
			continue
		}
		wait = b.opt.ReconnectWait
		if !first {
			fn(RecordUpdate{Kind: RecordsReset})
		}
		live := false
		for e := range w.Updates() {
			if ctx.Err() != nil {
				break
			}
			if e == nil {
				live = true
				fn(RecordUpdate{Kind: RecordsSynced})
				if first {
					close(synced)
					first = false
				}
				continue
			}
			r := Record{Key: e.Key(), Value: e.Value(), Rev: e.Revision()}
			switch e.Operation() {
			case jetstream.KeyValuePut:
				fn(RecordUpdate{Kind: RecordPut, Record: r, Live: live})
			default: // a delete or purge marker
				if live {
					fn(RecordUpdate{Kind: RecordDeleted, Record: Record{Key: r.Key, Rev: r.Rev}, Live: true})
				}
			}
		}
		w.Stop()
		if ctx.Err() == nil {
			b.log.Warn("moderation watch ended; starting over")
		}
	}
}

// watchBucket starts a watch of every key of the bucket, delete markers
// included.
func (b *natsBroker) watchBucket(ctx context.Context) (jetstream.KeyWatcher, error) {
	kv, err := b.bucket(ctx)
	if err != nil {
		return nil, err
	}
	return kv.WatchAll(ctx)
}

// recordsSynced returns the channel closed once the initial records have
// been delivered, or nil if nobody watches records.
func (b *natsBroker) recordsSynced() chan struct{} {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.recSynced
}

// natsGathering is one signal's answers on their way to its done
// callback. Guarded by sigMu.
type natsGathering struct {
	want, got, sum int
	timer          *time.Timer
	done           func(sum, answered int)
}

// Signal implements Broker. It waits for as many answers as there are
// nodes this one knows of (its presence peers, and itself).
func (b *natsBroker) Signal(s Signal, done func(sum, answered int)) error {
	select {
	case <-b.done:
		return errBrokerClosed
	default:
	}
	if !b.nc.IsConnected() {
		return errBrokerDown
	}
	data, err := json.Marshal(s)
	if err != nil {
		return fmt.Errorf("encode signal: %w", err)
	}
	msg := &nats.Msg{Subject: b.signalSubject(), Data: data}
	var id uint64
	if done != nil {
		b.sigMu.Lock()
		b.nextSig++
		id = b.nextSig
		g := &natsGathering{want: int(b.peers.Load()) + 1, done: done}
		g.timer = time.AfterFunc(b.opt.SignalWait, func() { b.finishSignal(id) })
		b.pending[id] = g
		b.sigMu.Unlock()
		msg.Reply = b.inbox + "." + strconv.FormatUint(id, 10)
	}
	if err := b.nc.PublishMsg(msg); err != nil {
		if done != nil {
			b.sigMu.Lock()
			if g := b.pending[id]; g != nil {
				g.timer.Stop()
				delete(b.pending, id)
			}
			b.sigMu.Unlock()
		}
		return fmt.Errorf("signal: %w", err)
	}
	return nil
}

// onAnswer counts one node's answer to a signal of ours. It runs on the
// reply subscription's goroutine.
func (b *natsBroker) onAnswer(m *nats.Msg) {
	_, idText, _ := strings.Cut(m.Subject[len(b.inbox):], ".")
	id, err := strconv.ParseUint(idText, 10, 64)
	n, nerr := strconv.Atoi(string(m.Data))
	if err != nil || nerr != nil {
		return
	}
	b.sigMu.Lock()
	g := b.pending[id]
	if g == nil {
		b.sigMu.Unlock()
		return // finished already
	}
	g.got++
	g.sum += n
	complete := g.got >= g.want
	b.sigMu.Unlock()
	if complete {
		b.finishSignal(id)
	}
}

// finishSignal hands a signal's answers so far to its done, once.
func (b *natsBroker) finishSignal(id uint64) {
	b.sigMu.Lock()
	g := b.pending[id]
	delete(b.pending, id)
	b.sigMu.Unlock()
	if g == nil {
		return
	}
	g.timer.Stop()
	g.done(g.sum, g.got)
}

// WatchSignals implements Broker: signals from every node reach fn on the
// signal subscription's goroutine, with an answer that replies to the
// sender, if it asked for answers. The first fn stays.
func (b *natsBroker) WatchSignals(fn func(Signal, func(int))) {
	b.sigFn.CompareAndSwap(nil, &fn)
}

// onSignal hands one signal to the installed handler, or answers 0 if
// there is none yet.
func (b *natsBroker) onSignal(m *nats.Msg) {
	var s Signal
	if err := json.Unmarshal(m.Data, &s); err != nil {
		b.log.Warn("bad signal", "err", err)
		return
	}
	reply := m.Reply
	answer := func(n int) {
		if reply != "" {
			b.nc.Publish(reply, []byte(strconv.Itoa(n)))
		}
	}
	fn := b.sigFn.Load()
	if fn == nil {
		answer(0)
		return
	}
	(*fn)(s, answer)
}

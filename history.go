package main

import (
	"bytes"
	"container/list"
	"crypto/rand"
	"errors"
	"fmt"
	"log/slog"
	"net/url"
	"strconv"
	"time"
)

// Room history and missed-message recovery.
//
// Every room has a log: an epoch (a random id naming this run of the room's
// history), the seq of its newest message, and a ring of its last
// Config.History messages. A client that knows (epoch, seq) of the last
// message it saw can reconnect with ?since=SEQ&epoch=EPOCH and be given
// exactly what came after, or be told precisely what it cannot have.
//
// A log outlives the room's membership: when the last member leaves, the
// log waits on an idle list for HistoryIdleTTL, and at most HistoryIdleRooms
// empty rooms keep theirs, so a lone client that drops and reconnects still
// recovers while memory stays bounded. With a data dir (store_bolt.go) the
// log is also written to disk and reloaded when the room is used again.

// resumePoint is where a reconnecting client says it left off.
type resumePoint struct {
	since uint64 // seq of the last message the client has
	epoch string // epoch that seq belongs to
}

// maxEpochLen bounds the epoch a client may send back; ours are 26.
const maxEpochLen = 64

// parseResume reads ?since= and ?epoch= from a connect URL. Both or
// neither must be given; since is a decimal seq (0: "I have nothing").
func parseResume(q url.Values) (*resumePoint, error) {
	since, epoch := q.Get("since"), q.Get("epoch")
	if since == "" && epoch == "" {
		return nil, nil
	}
	if since == "" || epoch == "" {
		return nil, errors.New("bad since/epoch: give both, or neither")
	}
	n, err := strconv.ParseUint(since, 10, 64)
	if err != nil {
		return nil, fmt.Errorf("bad since: %q is not a message seq", truncate(since, 30))
	}
	if !validIdent(epoch, maxEpochLen) {
		return nil, fmt.Errorf("bad epoch: %q is not an epoch id", truncate(epoch, 70))
	}
	return &resumePoint{since: n, epoch: epoch}, nil
}

// newEpoch returns a fresh random epoch id (26 characters, A-Z and 2-7).
func newEpoch() string {
	return rand.Text()
}

// sequencer assigns the seq of a room's next message on a single node.
// In a cluster the seq comes with the message instead (the JetStream
// sequence of the room's stream; cluster.go), and recordAt takes it as
// given.
type sequencer interface {
	next(l *roomLog) uint64
}

// localSequencer numbers messages inside this process: newest plus one.
type localSequencer struct{}

func (localSequencer) next(l *roomLog) uint64 { return max(l.last, l.assigned) + 1 }

// histEntry is one message kept in a room's ring.
type histEntry struct {
	seq uint64
	o   *outbound // the new_message as broadcast, shared, never re-encoded
	// line is the text-mode history line, built on first use.
	line []byte
}

// roomLog is one room's history. Owned by Hub.run through historyBook.
type roomLog struct {
	room  string
	epoch string
	last  uint64 // seq of the newest message kept; 0 before the first
	// assigned is the newest seq given to a message that is not kept yet:
	// with a store, a message joins the ring only once it is on disk.
	assigned uint64
	ring     []histEntry // circular once len reaches cap; grows lazily up to it
	head     int         // index of the oldest entry once the ring is full

	idleAt time.Time     // when the room last emptied
	idleEl *list.Element // place in historyBook.idle while empty, else nil
}

// count is how many messages the ring holds.
func (l *roomLog) count() int { return len(l.ring) }

// first is the seq of the oldest kept message, or last+1 when none is.
func (l *roomLog) first() uint64 { return l.last + 1 - uint64(len(l.ring)) }

// at returns the i-th kept message, oldest first.
func (l *roomLog) at(i int) *histEntry {
	return &l.ring[(l.head+i)%len(l.ring)]
}

// add records message seq. The ring must stay contiguous for recovery to
// be exact, so a seq that skips ahead (a hole, which a cluster sequencer
// could produce after a failure) clears it, and one already seen is ignored.
func (l *roomLog) add(seq uint64, o *outbound, size int) bool {
	switch {
	case seq <= l.last:
		return false
	case seq > l.last+1:
		l.ring, l.head = l.ring[:0], 0
	}
	l.last = seq
	if size == 0 {
		return true
	}
	e := histEntry{seq: seq, o: o}
	if len(l.ring) < size {
		l.ring = append(l.ring, e)
		return true
	}
	l.ring[l.head] = e
	l.head = (l.head + 1) % len(l.ring)
	return true
}

// historyBook holds every room's log. Owned by Hub.run: no other goroutine
// may call its methods (close excepted, once run has returned).
type historyBook struct {
	size    int           // messages kept per room; 0: history off
	onJoin  int           // messages replayed on an ordinary join
	idleMax int           // empty rooms whose log is kept
	idleTTL time.Duration // how long an empty room's log is kept
	seq     sequencer
	store   *boltStore // nil: memory only
	log     *slog.Logger
	now     func() time.Time

	logs map[string]*roomLog
	idle *list.List // of *roomLog, in the order their rooms emptied
	// held is, per room, the messages numbered but not yet on disk, in
	// seq order: the hub broadcasts and acks them once stored says so.
	held map[string][]heldMsg
	// sent remembers recent message ids for dedupe on a node without a
	// sequenced broker (ack.go).
	sent *sentLog
	// tombs is, per room, the deleted messages and who deleted them. A
	// message whose (epoch, seq) is here is kept, replayed and broadcast
	// as a tombstone, whenever it arrives: in a cluster the stream still
	// holds its text and replays it. moderation.go keeps it in step with
	// the tombstone records.
	tombs map[string]map[tombID]string
}

// tombID names one deleted message of a room.
type tombID struct {
	epoch string
	seq   uint64
}

// heldMsg is a numbered message waiting for the store.
type heldMsg struct {
	seq   uint64
	epoch string
	o     *outbound
	key   msgKey // zero: the sender gave no id
}

// recorded is what recordAt made of a message.
type recorded struct {
	o     *outbound // the new_message event; nil: the log had the message already
	seq   uint64
	epoch string
	held  bool // waiting for the store (see stored)
}

// newHistoryBook builds the history for cfg (defaults already applied),
// kept on disk in store if it is not nil.
func newHistoryBook(cfg Config, store *boltStore, log *slog.Logger) *historyBook {
	return &historyBook{
		size:    cfg.History,
		onJoin:  min(cfg.HistoryOnJoin, cfg.History),
		idleMax: cfg.HistoryIdleRooms,
		idleTTL: cfg.HistoryIdleTTL,
		seq:     localSequencer{},
		store:   store,
		log:     log,
		now:     time.Now,
		logs:    make(map[string]*roomLog),
		idle:    list.New(),
		held:    make(map[string][]heldMsg),
		sent:    newSentLog(cfg.DedupeWindow),
		tombs:   make(map[string]map[tombID]string),
	}
}

// record numbers a new message in room, keeps it and returns its
// new_message event. Must only be called from run.
func (b *historyBook) record(room string, id uint64, from, msg string, t time.Time, bot bool) *outbound {
	rec, _ := b.recordAt(room, "", id, Envelope{From: from, Message: msg, Time: t, Bot: bot}, msgKey{})
	return rec.o
}

// recordAt is record for a message m the broker may have placed already:
// m.Seq and epoch come from the cluster (0 and "": number it here); key is
// its dedupe key, if its sender gave an id. The result's event is nil for
// a message the log has already seen. With a store the message is held
// until it is on disk: it is kept, and may be broadcast and acked, only
// once stored returns it. err is set when the store could not even queue
// it: the message is lost. Must only be called from run.
func (b *historyBook) recordAt(room, epoch string, id uint64, m Envelope, key msgKey) (recorded, error) {
	l := b.get(room)
	seq := m.Seq
	if epoch != "" {
		b.adopt(room, epoch)
	}
	if seq == 0 {
		seq = b.seq.next(l)
	}
	if seq <= max(l.last, l.assigned) {
		return recorded{}, nil
	}
	rec := recorded{seq: seq, epoch: l.epoch}
	if by, ok := b.tombs[room][tombID{l.epoch, seq}]; ok {
		rec.o = encodeTombstone(room, l.epoch, seq, by) // deleted before it got here
	} else {
		rec.o = encodeMessage(messagePayload{ID: id, Seq: seq, Epoch: l.epoch, Room: room, From: m.From, Message: m.Message,
			Time: stamp(m.Time), Bot: m.Bot, Action: m.Action})
	}
	if b.store == nil {
		l.add(seq, rec.o, b.size)
		return rec, nil
	}
	l.assigned = seq
	if !b.store.appendMessage(room, seq, messagePayloadJSON(rec.o), key.msgID) {
		return recorded{}, errStoreBehind
	}
	b.held[room] = append(b.held[room], heldMsg{seq: seq, epoch: l.epoch, o: rec.o, key: key})
	rec.held = true
	return rec, nil
}

// stored takes room's held messages up to seq upto off the hold, now that
// the store has committed them (ok) or failed to (!ok), and returns them
// in order. Committed ones join the ring; failed ones never do: their seqs
// stay unused, which readers see as a gap. Must only be called from run.
func (b *historyBook) stored(room string, upto uint64, ok bool) []heldMsg {
	hs := b.held[room]
	n := 0 // held messages are in seq order
	for n < len(hs) && hs[n].seq <= upto {
		n++
	}
	done := hs[:n:n]
	if n == len(hs) {
		delete(b.held, room)
	} else {
		b.held[room] = hs[n:]
	}
	if ok && n > 0 {
		l := b.get(room)
		for i, m := range done {
			if by, deleted := b.tombs[room][tombID{m.epoch, m.seq}]; deleted {
				done[i].o = encodeTombstone(room, m.epoch, m.seq, by) // deleted while it was being written
			}
			l.add(m.seq, done[i].o, b.size)
		}
	}
	return done
}

// tombstone records that message seq of room's epoch was deleted by by:
// from now on it is a tombstone in the ring, on disk and whenever it is
// replayed. It reports whether this is news. Must only be called from run.
func (b *historyBook) tombstone(room, epoch string, seq uint64, by string) bool {
	t := b.tombs[room]
	if t == nil {
		t = make(map[tombID]string)
		b.tombs[room] = t
	}
	id := tombID{epoch, seq}
	if _, ok := t[id]; ok {
		return false
	}
	t[id] = by
	o := encodeTombstone(room, epoch, seq, by)
	if l := b.logs[room]; l != nil && l.epoch == epoch {
		for i := range l.count() {
			if e := l.at(i); e.seq == seq {
				e.o, e.line = o, nil
				break
			}
		}
	}
	if b.store != nil {
		b.store.rewriteMessage(room, seq, messagePayloadJSON(o))
	}
	return true
}

// deleted reports whether message seq of room's epoch is a tombstone.
func (b *historyBook) deleted(room, epoch string, seq uint64) bool {
	if _, ok := b.tombs[room][tombID{epoch, seq}]; ok {
		return true
	}
	// A tombstone read back from disk is in the ring only.
	l := b.logs[room]
	return l != nil && l.epoch == epoch && seq >= l.first() && seq <= l.last && l.count() > 0 &&
		isTombstone(l.at(int(seq-l.first())).o)
}

// isTombstone reports whether o is a deleted message's new_message. No
// message's text can pass for one: inside a JSON string every quote is
// escaped, so the field's bytes appear only as the field.
func isTombstone(o *outbound) bool { return bytes.Contains(o.json, []byte(`"deleted":true`)) }

// forgetTombstone drops a tombstone nobody can be replayed any more.
func (b *historyBook) forgetTombstone(room, epoch string, seq uint64) {
	if t := b.tombs[room]; t != nil {
		delete(t, tombID{epoch, seq})
		if len(t) == 0 {
			delete(b.tombs, room)
		}
	}
}

// moot reports whether message seq of room's epoch can no longer be
// replayed from this node: the room's log has moved to another epoch, or
// past the seq by more than it keeps. A room whose log this node does not
// hold may still be replayed later, so its tombstones are not moot.
func (b *historyBook) moot(room, epoch string, seq uint64) bool {
	l := b.logs[room]
	if l == nil {
		return false
	}
	return l.epoch != epoch || seq+uint64(b.size) <= l.last
}

// known returns room's log if this node has it, in memory or (with a
// store) on disk, without making one; nil if not. A log read from disk
// here belongs to an empty room, so it waits on the idle list like one.
// Must only be called from run.
func (b *historyBook) known(room string) *roomLog {
	if l := b.logs[room]; l != nil {
		return l
	}
	if b.store == nil || !b.store.hasRoom(room) {
		return nil
	}
	l := b.load(room)
	b.logs[room] = l
	l.idleAt = b.now()
	l.idleEl = b.idle.PushBack(l)
	b.prune()
	return b.logs[room]
}

// sentIn returns the dedupe memory for messages to room.
func (b *historyBook) sentIn(room string) *sentLog { return b.sent }

// adopt makes epoch room's epoch, forgetting the kept messages if it was
// another: the cluster's log for the room is a new one.
// Must only be called from run.
func (b *historyBook) adopt(room, epoch string) {
	l := b.get(room)
	if l.epoch != epoch {
		l.epoch, l.last, l.ring, l.head = epoch, 0, l.ring[:0], 0
	}
}

// get returns room's log, waking it from the idle list, loading it from the
// store or starting a new epoch. Must only be called from run.
func (b *historyBook) get(room string) *roomLog {
	if l := b.logs[room]; l != nil {
		if l.idleEl != nil {
			b.idle.Remove(l.idleEl)
			l.idleEl = nil
		}
		return l
	}
	l := b.load(room)
	b.logs[room] = l
	b.prune()
	return l
}

// load builds the log of a room that has none in memory.
func (b *historyBook) load(room string) *roomLog {
	l := &roomLog{room: room}
	if b.store != nil {
		epoch, msgs, err := b.store.load(room, b.size)
		if err != nil {
			b.log.Error("history load failed; starting the room afresh", "room", room, "err", err)
		}
		if epoch != "" && err == nil {
			l.epoch = epoch
			l.ring = make([]histEntry, 0, min(b.size, len(msgs)+16))
			now := b.now()
			for _, m := range msgs {
				m.Seq, m.Epoch, m.Room = m.seq, epoch, room
				l.add(m.seq, encodeMessage(m.messagePayload), b.size)
				b.remember(room, m, epoch, now)
			}
			return l
		}
	}
	l.epoch = newEpoch()
	if b.store != nil {
		b.store.resetRoom(room, l.epoch)
	}
	return l
}

// remember puts a message read back from the store into the dedupe
// memory, if it was sent with an id within the dedupe window, so that a
// client resending it after a restart gets a duplicate ack rather than a
// second copy.
func (b *historyBook) remember(room string, m storedMsg, epoch string, now time.Time) {
	if m.key == "" {
		return
	}
	t, err := time.Parse(timeLayout, m.Time)
	if err != nil || now.Sub(t) >= b.sent.window {
		return
	}
	s := b.sent.add(msgKey{room, m.key}, t)
	s.done, s.seq, s.epoch = true, m.seq, epoch
}

// emptied puts room's log on the idle list when its last member left.
// Must only be called from run.
func (b *historyBook) emptied(room string) {
	l := b.logs[room]
	if l == nil || l.idleEl != nil {
		return
	}
	l.idleAt = b.now()
	l.idleEl = b.idle.PushBack(l)
	b.prune()
}

// prune forgets the logs of rooms that have been empty longer than idleTTL
// and of the longest-empty rooms beyond idleMax. With a store, only the
// memory copy goes. Expiry is checked whenever a room empties or a log is
// created, which is enough to bound memory: both are what makes it grow.
func (b *historyBook) prune() {
	now := b.now()
	for e := b.idle.Front(); e != nil; e = b.idle.Front() {
		l := e.Value.(*roomLog)
		if b.idle.Len() <= b.idleMax && now.Sub(l.idleAt) < b.idleTTL {
			return
		}
		b.idle.Remove(e)
		delete(b.logs, l.room)
	}
}

// close flushes and closes the store, if any. Call only after run has
// returned. Safe to call more than once.
func (b *historyBook) close() error {
	if b.store == nil {
		return nil
	}
	return b.store.close()
}

// msgEventPrefix is how encodeMessage's JSON begins; the payload follows it
// up to the final '}'. history_test.go checks this stays true.
const msgEventPrefix = `{"type":"new_message","payload":`

// messagePayloadJSON returns the payload object inside a new_message
// event's JSON, without copying.
func messagePayloadJSON(o *outbound) []byte {
	return o.json[len(msgEventPrefix) : len(o.json)-1]
}

// recoveryPayload is the payload of recovery. See docs/PROTOCOL.md.
type recoveryPayload struct {
	Room      string `json:"room"`
	Recovered bool   `json:"recovered"`
	// Reset is set when since/epoch do not belong to the room's current
	// history (the epoch differs, or since is beyond its newest message).
	Reset      bool   `json:"reset,omitempty"`
	Replayed   int    `json:"replayed"`
	Missed     uint64 `json:"missed,omitempty"`
	MissedFrom uint64 `json:"missed_from,omitempty"`
	MissedTo   uint64 `json:"missed_to,omitempty"`
}

// replayHistory runs right after c joined room: it sends the recent history
// or, on a reconnect with since/epoch, what c missed and a recovery event.
// It runs inside the hub's handling of the join, so no broadcast can fall
// between the replay and the live messages that follow it.
// Must only be called from run.
func (h *Hub) replayHistory(c *Client, room string, connecting bool) {
	b := h.history
	l := b.get(room)
	if connecting && c.resume != nil {
		h.recoverMissed(c, l, *c.resume)
		return
	}
	if b.size > 0 {
		h.sendHistory(c, l, l.count()-min(b.onJoin, l.count()))
	}
}

// recoverMissed answers a reconnect: history from the message after
// rp.since (or everything kept, if that is gone or rp is from another
// epoch), then the recovery verdict. Must only be called from run.
func (h *Hub) recoverMissed(c *Client, l *roomLog, rp resumePoint) {
	first := l.first()
	rec := recoveryPayload{Room: l.room}
	from := 0 // index of the first kept message to send
	switch {
	case rp.epoch == l.epoch && rp.since <= l.last && rp.since+1 >= first:
		from = int(rp.since + 1 - first)
		rec.Recovered = true
	case rp.epoch == l.epoch && rp.since <= l.last:
		rec.MissedFrom, rec.MissedTo = rp.since+1, first-1
	default:
		rec.Reset = true
		if first > 1 {
			rec.MissedFrom, rec.MissedTo = 1, first-1
		}
	}
	if rec.MissedFrom > 0 {
		rec.Missed = rec.MissedTo - rec.MissedFrom + 1
	}
	rec.Replayed = l.count() - from
	if h.history.size > 0 {
		h.sendHistory(c, l, from)
	}
	h.deliver(c, recoveryEvent(rec))
}

// sendHistory sends c the kept messages of l from index from on: one
// history event to a JSON client, one marked line per message to a text
// client. The JSON event is assembled from the payload bytes already
// encoded for the broadcast. Must only be called from run.
func (h *Hub) sendHistory(c *Client, l *roomLog, from int) {
	if c.format == formatText {
		for i := from; i < l.count(); i++ {
			line := historyLine(l, l.at(i))
			if c.showSeq { // "[room #seq] (history) …", built for the few who moderate
				line = withSeq(line, l.at(i).seq)
			}
			h.deliver(c, textOnly(string(line)))
		}
		return
	}
	n := 64 + len(l.room) + len(l.epoch)
	for i := from; i < l.count(); i++ {
		n += len(l.at(i).o.json)
	}
	// Room names and epochs are drawn from [A-Za-z0-9_-], so quoting them
	// needs no escaping.
	buf := make([]byte, 0, n)
	buf = append(buf, `{"type":"history","payload":{"room":"`...)
	buf = append(buf, l.room...)
	buf = append(buf, `","epoch":"`...)
	buf = append(buf, l.epoch...)
	buf = append(buf, `","messages":[`...)
	for i := from; i < l.count(); i++ {
		if i > from {
			buf = append(buf, ',')
		}
		buf = append(buf, messagePayloadJSON(l.at(i).o)...)
	}
	buf = append(buf, "]}}"...)
	h.deliver(c, &outbound{json: buf})
}

// historyLine returns e's text line marked as history:
// "[room] (history) from: message". Built once per kept message.
func historyLine(l *roomLog, e *histEntry) []byte {
	if e.line == nil {
		live := e.o.text // "[room] from: message"
		prefix := "[" + l.room + "] "
		e.line = append([]byte(prefix+"(history) "), live[len(prefix):]...)
	}
	return e.line
}

// recoveryEvent builds recovery, with a notice line for text clients.
func recoveryEvent(r recoveryPayload) *outbound {
	var text string
	switch {
	case r.Recovered:
		text = fmt.Sprintf("* reconnected to %s: nothing lost (%d missed messages replayed)", r.Room, r.Replayed)
	case r.Reset && r.Missed > 0:
		text = fmt.Sprintf("* reconnected to %s: its history was reset, earlier messages are lost, and so are %d-%d of the new history",
			r.Room, r.MissedFrom, r.MissedTo)
	case r.Reset:
		text = fmt.Sprintf("* reconnected to %s: its history was reset; earlier messages are lost", r.Room)
	default:
		text = fmt.Sprintf("* reconnected to %s: %d messages missed (%d-%d) are no longer kept", r.Room, r.Missed, r.MissedFrom, r.MissedTo)
	}
	return newOutbound("recovery", r, text)
}

// validateHistory reports history settings that cannot work.
func (c Config) validateHistory() error {
	// A text client gets each replayed message as its own queued event,
	// so a full replay must leave room in the send queue for live traffic.
	if c.History > c.SendQueue/2 {
		return fmt.Errorf("history %d must be at most half the send queue %d: a text client's replay would overflow it",
			c.History, c.SendQueue)
	}
	if c.DataDir != "" && c.History == 0 {
		return errors.New("data dir needs history: -history is 0")
	}
	return nil
}

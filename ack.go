package main

import (
	"container/list"
	"errors"
	"time"
)

// Acknowledgements and dedupe.
//
// A client that sends a message with an id is told, with an ack, the seq
// and epoch the message got in its room's log, once it has them: once the
// broker has logged it (NATS: JetStream's PubAck), or, on a single node,
// once the hub has numbered it — and, with -data-dir, once it is on disk
// (history.go holds it back until the store has committed it). An HTTP
// API call is answered the same way. Without an id a message is sent as
// before, with no ack.
//
// A message sent again with the same id by the same sender to the same
// room within the dedupe window is not delivered again: the sender gets
// the first one's ack again, marked duplicate. The same holds across the
// nodes of a cluster, because the sender's identity and id travel as the
// message's MsgID and JetStream drops a repeat within the stream's
// Duplicates window. On a single node the hub remembers recent ids itself,
// in the room logs' sentLog, which a restart with -data-dir rebuilds from
// disk.

// msgKey names one message for dedupe.
type msgKey struct {
	room  string
	msgID string // sender identity and the sender's id; see msgIDOf
}

// msgIDOf is the MsgID of a message that sender gave id: unique per sender
// because sender identities ([A-Za-z0-9_-], or "api:" and a bot name)
// contain no '/'.
func msgIDOf(sender, id string) string { return sender + "/" + id }

// waiter is someone to tell how a message fared: a client's request (c
// and its id) or an HTTP API call.
type waiter struct {
	c   *Client
	id  string
	api *apiCall
	dup bool // this request repeated one already sent
}

// sentMsg is one remembered message id.
type sentMsg struct {
	key     msgKey
	at      time.Time // when it was first sent
	done    bool      // it has its seq (and is stored): seq and epoch are set
	seq     uint64
	epoch   string
	waiters []waiter // told when done; repeats that came while it was in flight included
	el      *list.Element
}

// Bounds of the dedupe memory: ids are remembered for the dedupe window
// (Config.DedupeWindow, at least this long is promised) and at most
// maxRemembered of them at once, the oldest forgotten first. An entry is
// about 260 bytes (measured), so the memory is at most about 26 MB.
const maxRemembered = 100_000

// sentLog remembers recently sent message ids on a node whose broker does
// not (the memory broker). Owned by Hub.run, through historyBook.
type sentLog struct {
	window time.Duration
	byKey  map[msgKey]*sentMsg
	order  list.List // of *sentMsg, oldest first
}

func newSentLog(window time.Duration) *sentLog {
	return &sentLog{window: window, byKey: make(map[msgKey]*sentMsg)}
}

// lookup returns the remembered message for key, or nil.
func (l *sentLog) lookup(key msgKey, now time.Time) *sentMsg {
	l.expire(now)
	return l.byKey[key]
}

// add remembers key, sent at, and returns its entry. A key already there
// is returned as it is.
func (l *sentLog) add(key msgKey, at time.Time) *sentMsg {
	if s := l.byKey[key]; s != nil {
		return s
	}
	l.expire(at)
	// Over the bound the oldest ids go first; ids in flight stay, since
	// their senders must still hear (and the broker's queue bounds them).
	for e := l.order.Front(); e != nil && l.order.Len() >= maxRemembered; {
		s := e.Value.(*sentMsg)
		e = e.Next()
		if s.done {
			l.forget(s)
		}
	}
	s := &sentMsg{key: key, at: at}
	s.el = l.order.PushBack(s)
	l.byKey[key] = s
	return s
}

// forget drops s.
func (l *sentLog) forget(s *sentMsg) {
	if l.byKey[s.key] == s {
		delete(l.byKey, s.key)
	}
	if s.el != nil {
		l.order.Remove(s.el)
		s.el = nil
	}
}

// expire forgets messages sent longer than the window before now. A
// message still in flight is kept whatever its age: its waiters must hear.
func (l *sentLog) expire(now time.Time) {
	for e := l.order.Front(); e != nil; {
		s := e.Value.(*sentMsg)
		if now.Sub(s.at) < l.window {
			return
		}
		e = e.Next()
		if s.done {
			l.forget(s)
		}
	}
}

// len is how many ids are remembered.
func (l *sentLog) len() int { return len(l.byKey) }

// ackPayload is the payload of ack.
type ackPayload struct {
	ID        string `json:"id"`
	Room      string `json:"room"`
	Seq       uint64 `json:"seq"`
	Epoch     string `json:"epoch"`
	Duplicate bool   `json:"duplicate,omitempty"`
}

// tell lets w know how its message fared in room. A client that has gone
// meanwhile hears nothing: it resends after reconnecting and gets the ack
// then, as a duplicate. Must only be called from run.
func (h *Hub) tell(w waiter, room string, p Published) {
	if w.api != nil {
		w.api.reply <- apiResult{ID: w.api.msgNum, Room: room, Seq: p.Seq, Epoch: p.Epoch,
			Duplicate: w.dup || p.Duplicate, Recipients: w.api.recipients, Err: p.Err}
		return
	}
	if w.c == nil || !w.c.active {
		return
	}
	if p.Err != nil {
		h.deliver(w.c, errorEvent(notDelivered(p.Err).withID(w.id)))
		return
	}
	h.deliver(w.c, newOutbound("ack", ackPayload{ID: w.id, Room: room, Seq: p.Seq, Epoch: p.Epoch,
		Duplicate: w.dup || p.Duplicate}, ""))
}

// sendOnce posts m to its room for w, at most once per m.MsgID: a
// repeat is acked with the first one's seq. Must only be called from run.
func (h *Hub) sendOnce(m Envelope, w waiter) {
	room := m.Room
	if h.broker.Sequenced() {
		// The broker's log dedupes (JetStream's Duplicates window) and its
		// PubAck says how the message fared.
		_, err := h.publishAs(m, func(p Published) {
			h.fromBrokerResult(publishedRequest{w: w, room: room, p: p})
		})
		if err != nil {
			h.tell(w, room, Published{Err: err})
		}
		return
	}
	now := time.Now()
	key := msgKey{room, m.MsgID}
	sent := h.history.sentIn(room)
	if s := sent.lookup(key, now); s != nil {
		w.dup = true
		if s.done {
			h.tell(w, room, Published{Seq: s.seq, Epoch: s.epoch})
		} else {
			s.waiters = append(s.waiters, w)
		}
		return
	}
	s := sent.add(key, now)
	s.waiters = append(s.waiters, w)
	num, err := h.publishAs(m, func(p Published) {
		if p.Err != nil {
			h.fromBrokerResult(sendFailed{key: key, err: p.Err})
		}
	})
	if w.api != nil {
		w.api.msgNum = num
	}
	if err != nil {
		h.unsent(key, err)
	}
}

// sequenced is called when the message keyed key has its seq in epoch and
// is stored: everyone waiting for it hears. Must only be called from run.
func (h *Hub) sequenced(key msgKey, seq uint64, epoch string) {
	s := h.history.sentIn(key.room).lookup(key, time.Now())
	if s == nil {
		return // sent before a restart, or forgotten
	}
	s.done, s.seq, s.epoch = true, seq, epoch
	ws := s.waiters
	s.waiters = nil
	for _, w := range ws {
		h.tell(w, key.room, Published{Seq: seq, Epoch: epoch})
	}
}

// unsent is called when the message keyed key was not delivered: its
// waiters hear why, and the id is forgotten so that a retry is a new
// attempt. Must only be called from run.
func (h *Hub) unsent(key msgKey, err error) {
	if key.msgID == "" {
		return
	}
	sent := h.history.sentIn(key.room)
	s := sent.lookup(key, time.Now())
	if s == nil || s.done {
		return
	}
	sent.forget(s)
	for _, w := range s.waiters {
		h.tell(w, key.room, Published{Err: err})
	}
}

// publishedRequest carries a sequenced broker's verdict on one publish to
// the hub.
type publishedRequest struct {
	w    waiter
	room string
	p    Published
}

func (r publishedRequest) handle(h *Hub) {
	if r.p.Err != nil {
		h.stats.undelivered.Add(1)
	}
	h.tell(r.w, r.room, r.p)
}

// sendFailed carries an unsequenced broker's late failure to the hub.
type sendFailed struct {
	key msgKey
	err error
}

func (r sendFailed) handle(h *Hub) {
	h.stats.undelivered.Add(1)
	h.unsent(r.key, r.err)
}

// storedRequest reports a store commit to the hub: for each room the
// newest seq the transaction held, and whether it committed.
type storedRequest struct {
	upto map[string]uint64
	ok   bool
}

// handle broadcasts and acks the messages now on disk, or tells their
// senders they were not kept.
func (r storedRequest) handle(h *Hub) {
	for room, seq := range r.upto {
		for _, m := range h.history.stored(room, seq, r.ok) {
			if !r.ok {
				h.unsent(m.key, errNotStored)
				continue
			}
			if rm := h.rooms[room]; rm != nil {
				if link := h.cl.links[room]; link == nil || link.synced {
					h.broadcast(rm, m.o, nil)
				}
			}
			if m.key.msgID != "" {
				h.sequenced(m.key, m.seq, m.epoch)
			}
		}
	}
}

// errNotStored is the failure of a message whose commit failed.
var errNotStored = errors.New("the message could not be written to disk")

// fromStore hands a commit report to the hub. It runs on the store's
// writer goroutine.
func (h *Hub) fromStore(upto map[string]uint64, ok bool) {
	select {
	case h.inbound <- queued{r: storedRequest{upto, ok}}:
	case <-h.done:
	}
}

// fromBrokerResult hands a publish outcome to the hub. It runs on a broker
// goroutine, never on run's.
func (h *Hub) fromBrokerResult(r request) {
	select {
	case h.inbound <- queued{r: r}:
	case <-h.done:
	}
}

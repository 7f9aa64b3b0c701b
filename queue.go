package main

import "sync"

// sendQueue holds the events waiting for one client's writePump. The hub is
// its only producer (push, close) and writePump its only consumer (take).
//
// Why not a buffered channel, as in the gorilla chat example: a channel
// allocates all of its slots up front, and SendQueue slots of 8 bytes each
// are the largest single item of an idle connection's memory (2 KiB of
// about 10 at the default 256). This queue grows only as far as a backlog
// actually reaches and gives the room back when writePump has drained it,
// so an idle client costs a few words, and a busy one what it uses.
//
// It also lets writePump take the whole backlog in one step, under one
// lock, instead of one channel receive per event.
type sendQueue struct {
	mu     sync.Mutex
	items  []*outbound
	limit  int  // most events that may wait; push fails beyond it
	closed bool // close was called; nothing more will be pushed

	// holding is true while writePump has a batch in hand (writing it or
	// pausing after it). A push to an empty queue then does not wake it:
	// it will look again when it is done.
	holding bool

	// pingDue asks writePump to ping the peer; set by the hub's ping
	// ticker (pinger.go), cleared by writePump when it sends the ping.
	pingDue bool

	// readerGone is set when readPump has returned, so that writePump's
	// closing handshake stops waiting for the peer's close frame.
	readerGone bool

	// ready wakes writePump: on the first push to an idle writer, at half
	// full (which also cuts a batch window short), on close, for a ping and
	// when readPump has returned. Buffered
	// (1), signalled without blocking, never closed. A stale signal costs
	// writePump one look at an empty queue, nothing more.
	ready chan struct{}
}

func newSendQueue(limit int) sendQueue {
	return sendQueue{limit: limit, ready: make(chan struct{}, 1)}
}

// push appends o unless the queue is full or closed. It reports whether o
// was queued and how many events are waiting, o included.
func (q *sendQueue) push(o *outbound) (ok bool, depth int) {
	q.mu.Lock()
	if q.closed || len(q.items) >= q.limit {
		depth = len(q.items)
		q.mu.Unlock()
		return false, depth
	}
	q.items = append(q.items, o)
	depth = len(q.items)
	wake := (depth == 1 && !q.holding) || depth >= q.limit/2
	q.mu.Unlock()
	if wake {
		q.signal()
	}
	return true, depth
}

// close marks the queue closed: writePump writes what is left and then the
// close frame. Closing twice is harmless.
func (q *sendQueue) close() {
	q.mu.Lock()
	q.closed = true
	q.mu.Unlock()
	q.signal()
}

// askPing asks writePump for a ping.
func (q *sendQueue) askPing() {
	q.mu.Lock()
	q.pingDue = true
	q.mu.Unlock()
	q.signal()
}

// takePing reports whether a ping was asked for since the last call.
func (q *sendQueue) takePing() bool {
	q.mu.Lock()
	due := q.pingDue
	q.pingDue = false
	q.mu.Unlock()
	return due
}

// readerExited records that readPump has returned and wakes writePump.
func (q *sendQueue) readerExited() {
	q.mu.Lock()
	q.readerGone = true
	q.mu.Unlock()
	q.signal()
}

// readerDone reports whether readPump has returned.
func (q *sendQueue) readerDone() bool {
	q.mu.Lock()
	defer q.mu.Unlock()
	return q.readerGone
}

// len reports how many events are waiting.
func (q *sendQueue) len() int {
	q.mu.Lock()
	defer q.mu.Unlock()
	return len(q.items)
}

// take hands writePump everything queued and whether the queue is closed.
// spare (emptied, may be nil) becomes the queue's new backing array, so two
// arrays alternate under load instead of a new one per batch. An empty
// result means writePump is idle again: the next push wakes it.
func (q *sendQueue) take(spare []*outbound) (batch []*outbound, closed bool) {
	q.mu.Lock()
	batch, q.items = q.items, spare[:0]
	q.holding = len(batch) > 0
	closed = q.closed
	q.mu.Unlock()
	return batch, closed
}

// recycle clears a written batch so that it pins no events, and returns it
// for the next take. A large one is dropped instead: keeping it would make
// a burst's worth of memory permanent for a client that then goes quiet.
func recycle(batch []*outbound) []*outbound {
	if cap(batch) > keepBatchCap {
		return nil
	}
	clear(batch)
	return batch[:0]
}

// keepBatchCap is the largest backing array recycle keeps: enough for the
// batches of a busy client's steady state, small next to a full queue.
const keepBatchCap = 32

func (q *sendQueue) signal() {
	select {
	case q.ready <- struct{}{}:
	default:
	}
}

// Package wsconn is the server side of one WebSocket connection: the
// reader, the writer, the send queue and the close handshake, with no
// knowledge of what the messages mean.
//
// # The one rule
//
// One goroutine reads the socket: the connection's reader, which exists
// from Start until the connection is over. At most one goroutine writes
// it: a writer, started by the first Push (or ping, pong or close) after a
// quiet spell and gone again once it has had nothing to write for
// Config.WriterIdle. Everything that must reach the peer, control frames
// included, goes through the queue and out through the writer, so frames
// never interleave and keep their order across writers' lifetimes.
//
// # A connection's life
//
//   - Accept performs the handshake (with a gorilla/websocket Upgrader) and
//     keeps the raw socket. Start runs the reader, which parks until the
//     socket is readable, reads one message on a short-lived helper
//     goroutine (see freshstack.go) and passes it to Handler.Message.
//   - Push queues a message for the peer and reports the queue's depth, or
//     ErrQueueFull when the peer is not keeping up. The writer takes
//     everything queued at once and sends it in one socket write: one frame
//     of newline-separated messages (Config.NDJSON), or one frame per
//     message. Whatever queues up while a write is under way goes out in
//     the next one, so writes fill up exactly when the server is busy.
//   - The end comes from Close (the server's decision, with a Disconnect),
//     from the peer (a close frame or a lost socket) or from the connection
//     itself (a message over the limit, a missed pong, a stuck write, a
//     broken frame). The first reason wins. The writer sends what is queued
//     and then the close frame; the reader waits for the peer's reply for
//     at most Config.CloseGrace, closes the socket, waits for the writer,
//     and calls Handler.Closed once. After that no goroutine of the
//     connection is left.
package wsconn

import (
	"bufio"
	"net"
	"net/http"
	"sync"
	"time"

	"github.com/gorilla/websocket"
)

// Config is how connections behave. One Config is shared by many
// connections and must not change once the first of them is accepted.
type Config struct {
	// ReadLimit is the largest message a peer may send, in bytes; a larger
	// one ends the connection with TooBig.
	ReadLimit int
	// QueueLimit is how many messages may wait for the writer; Push fails
	// with ErrQueueFull beyond it.
	QueueLimit int
	// PongWait is how long the peer may go without sending a pong before
	// the connection ends with PongTimeout.
	PongWait time.Duration
	// WriteWait bounds every socket write; a write that takes longer ends
	// the connection with WriteTimeout.
	WriteWait time.Duration
	// CloseGrace is how long the reader waits, once the server's close
	// frame is out (or the connection ended from the reader's side), for
	// the close handshake to finish before closing the socket.
	CloseGrace time.Duration
	// WriterIdle is how long a writer with nothing to write stays before
	// it exits. A writer that only sent a ping exits at once.
	WriterIdle time.Duration
	// NDJSON makes each write one frame of the queued messages separated
	// by '\n'. Otherwise every message is a frame of its own (and all of
	// them still leave in one socket write).
	NDJSON bool
	// Wrote, if set, is called by the writer after each successful socket
	// write that carried messages, with how many and in how many frames.
	Wrote func(messages, frames int)

	// The ends a connection decides on itself. Their codes and reasons
	// are sent in the close frame (WriteTimeout's never is: the socket
	// cannot take it); Protocol's reason gets ": " and what was wrong
	// appended.
	TooBig, PongTimeout, WriteTimeout, Protocol, Internal Disconnect
}

// Handler receives what a connection reads. Both methods are called by
// the connection's reader, never concurrently.
type Handler interface {
	// Message is called with each complete data message, in order. data
	// is the handler's to keep. Messages that arrive after Close are read
	// and dropped.
	Message(data []byte, binary bool)
	// Closed is called once, last, when the socket is closed and the
	// writer is gone, with the reason the connection ended and the error
	// behind it, if any (a read or write error, a protocol error, a
	// *PanicError). It is the connection's one exit notification.
	Closed(d Disconnect, err error)
}

// Conn is one server-side WebSocket connection. Its methods are safe for
// concurrent use.
type Conn struct {
	cfg  *Config
	raw  net.Conn      // the socket
	br   *bufio.Reader // read buffer, used only by the reader
	wait readWaiter    // parks the reader until raw is readable
	h    Handler       // set by Start

	mu sync.Mutex // guards the fields below
	q  queue
	// writing is true while a writer goroutine exists; parked while it
	// waits on ready. A push wakes a parked writer or starts a new one.
	writing, parked bool
	pingDue         bool   // a ping is to be sent
	pongDue         bool   // a pong with payload pong is to be sent
	pong            []byte // payload of the peer's latest ping
	// closing is set by the first of Close, Abort, a write failure and
	// the reader's end: from then on nothing more is queued.
	closing   bool
	closeDue  bool          // the close frame for end is still to be written
	closeSent bool          // it was written; the reader now awaits the reply
	finished  chan struct{} // closed when the writing side is done for good; made when closing begins
	done      bool          // finished is closed
	end       Disconnect    // why the connection ends; the first reason wins
	endErr    error         // the error behind end, if any
	ended     bool          // end is set

	ready   chan struct{}  // wakes a parked writer; buffered (1)
	writers sync.WaitGroup // the writer goroutine, while there is one

	// deadline is the socket's current write deadline. Used only by the
	// writer of the moment; writers hand over under mu.
	deadline time.Time
}

// Accept performs the WebSocket handshake on r with up and returns the
// connection, not yet started. up is used only for the handshake (its
// checks and error responses); set its ReadBufferSize to 0 and give it a
// WriteBufferPool so that it allocates no buffers of its own. On error up
// has already answered the client.
func Accept(w http.ResponseWriter, r *http.Request, up *websocket.Upgrader, cfg *Config) (*Conn, error) {
	hw := &hijackWrapper{ResponseWriter: w}
	if _, err := up.Upgrade(hw, r, nil); err != nil {
		return nil, err
	}
	return newConn(hw.conn, hw.br, cfg), nil
}

// newConn wraps a socket whose handshake is done; br reads from it.
func newConn(raw net.Conn, br *bufio.Reader, cfg *Config) *Conn {
	return &Conn{
		cfg:   cfg,
		raw:   raw,
		br:    br,
		wait:  newReadWaiter(raw, br),
		ready: make(chan struct{}, 1),
	}
}

// Start runs the connection's reader, which reports to h. Call it once.
// Push, Ping and Close may be called before it.
func (c *Conn) Start(h Handler) {
	c.h = h
	go c.read()
}

// RemoteAddr is the peer's network address.
func (c *Conn) RemoteAddr() net.Addr { return c.raw.RemoteAddr() }

// Push queues msg for the peer. It returns how many messages wait, msg
// included; ErrQueueFull if QueueLimit already wait (msg is dropped); or
// ErrClosed once the connection is closing. msg must not change afterwards:
// it may be written at any time, and shared with other connections.
func (c *Conn) Push(msg []byte) (int, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closing {
		return 0, ErrClosed
	}
	n := c.q.push(msg, c.cfg.QueueLimit)
	if n == 0 {
		return len(c.q.items), ErrQueueFull
	}
	c.wakeLocked()
	return n, nil
}

// Len returns how many messages wait for the writer.
func (c *Conn) Len() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.q.items)
}

// Ping asks for a ping to be sent. The peer's pongs keep the connection's
// read deadline moving; a ping asked for while one is pending is the same
// ping.
func (c *Conn) Ping() {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closing {
		return
	}
	c.pingDue = true
	c.wakeLocked()
}

// Close ends the connection for reason d: what is queued is written, then
// a close frame with d's code and reason (none if d.Code is 0). If the
// connection is already ending, Close does nothing. It never blocks;
// Handler.Closed reports when the connection is over.
func (c *Conn) Close(d Disconnect) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.setEndLocked(d, nil)
	c.beginClosingLocked()
}

// Abort closes the socket at once, dropping whatever is queued. It is for
// connections whose close is taking too long; Handler.Closed still
// follows.
func (c *Conn) Abort() {
	c.mu.Lock()
	c.setEndLocked(ConnLost, nil)
	c.beginClosingLocked()
	// A writer may be running or just started: it finds nothing to write.
	c.closeDue = false
	c.q.items = nil
	c.mu.Unlock()
	c.raw.Close()
}

// setEndLocked records why the connection ends, unless a reason is already
// recorded. Must be called with mu held.
func (c *Conn) setEndLocked(d Disconnect, err error) {
	if !c.ended {
		c.end, c.endErr, c.ended = d, err, true
	}
}

// beginClosingLocked stops the queue taking messages and makes sure the
// rest of it and the close frame for end get written: by the writer there
// is, by a new one, or not at all when there is nothing to write. Must be
// called with mu held, after setEndLocked.
func (c *Conn) beginClosingLocked() {
	if c.closing {
		return
	}
	c.closing = true
	c.closeDue = c.end.Code != 0
	c.finished = make(chan struct{})
	switch {
	case c.writing:
		c.wakeLocked()
	case c.closeDue || len(c.q.items) > 0:
		c.startWriterLocked()
	default:
		c.writerDoneLocked()
	}
}

// wakeLocked makes sure a writer will look at the queue: it wakes the
// parked one or starts one. Must be called with mu held.
func (c *Conn) wakeLocked() {
	switch {
	case !c.writing:
		c.startWriterLocked()
	case c.parked:
		c.parked = false
		select {
		case c.ready <- struct{}{}:
		default:
		}
	}
}

// startWriterLocked starts a writer goroutine. Must be called with mu held
// and no writer running; the Add happens before any Wait can begin,
// because finish waits only once closing is set, after which no writer
// starts.
func (c *Conn) startWriterLocked() {
	c.writing = true
	c.writers.Add(1)
	go c.writeLoop()
}

// writerDoneLocked records that nothing more will be written. Must be
// called with mu held.
func (c *Conn) writerDoneLocked() {
	c.writing, c.parked = false, false
	if !c.done {
		c.done = true
		close(c.finished)
	}
}

// finish ends the connection from the reader's side, once the reader has
// stopped reading for reason d: it makes sure the close frame goes out
// (if d or an earlier reason calls for one), gives the writer CloseGrace
// to finish, closes the socket, waits until the writer is gone and then
// reports to the handler.
func (c *Conn) finish(d Disconnect, err error) {
	c.mu.Lock()
	c.setEndLocked(d, err)
	c.beginClosingLocked()
	finished, done := c.finished, c.done
	c.mu.Unlock()
	if !done {
		t := time.NewTimer(c.cfg.CloseGrace)
		select {
		case <-finished:
		case <-t.C:
		}
		t.Stop()
	}
	c.raw.Close()
	c.writers.Wait()
	// The writer is gone and the reader is here: nothing else reads end.
	c.h.Closed(c.end, c.endErr)
}

package main

import (
	"errors"
	"io"
	"log/slog"
	"net"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/gorilla/websocket"
)

// Close codes hubbub sends. RFC 6455 section 7.4.1 and the IANA registry.
const (
	closeNormal    = websocket.CloseNormalClosure   // 1000: /quit
	closeGoingAway = websocket.CloseGoingAway       // 1001: server shutting down
	closeTooBig    = websocket.CloseMessageTooBig   // 1009: frame over the read limit
	closeTryLater  = websocket.CloseTryAgainLater   // 1013: slow consumer
	closePolicy    = websocket.ClosePolicyViolation // 1008: flooding
)

// Client is one WebSocket connection and its two goroutines: readPump, the
// only reader of conn, and writePump, the only writer (gorilla permits one
// of each). The hub talks to the client only through send.
type Client struct {
	hub    *Hub
	conn   *websocket.Conn
	bc     *batchConn // under conn; lets writePump send a whole drain in one write
	format format
	addr   string // remote address, for logs

	// send queues events for writePump (queue.go). The hub is its only
	// producer and its only closer: it closes send exactly once, when it
	// lets go of the client.
	send sendQueue

	// wait parks readPump until the socket is readable (readwait.go).
	// Used only by readPump.
	wait readWaiter

	// wantRoom and wantName are the room and name asked for at connect time.
	// Set before register and read by the hub; never written again.
	wantRoom, wantName string
	// resume is the ?since=&epoch= recovery point, nil when not given. Set
	// before register, read by the hub on the first join only.
	resume *resumePoint

	// account is the user name the connection logged in as, or "" for a
	// guest. Set before register; never written again.
	account string

	// flood is the message budget (nil: unlimited). Owned by readPump.
	flood *flood

	// release frees the connection's slot in the server's connection
	// limits. Called once, by whichever pump exits last (see pumpExited).
	release   func()
	pumpsDone atomic.Int32

	// Owned by Hub.run.
	name        string
	room        *Room
	readExited  bool // readPump has unregistered
	writeExited bool // writePump has reported it finished
	active      bool // in hub.clients (and a room), not yet let go
	waiting     bool // its room is not synced yet: no broadcasts until room_changed (cluster.go)

	// closeCode and closeReason are written by Hub.run before it closes send
	// and read by writePump after it sees send closed; the channel close
	// orders the two.
	closeCode   int
	closeReason string

	// exitReason is why readPump ended the connection, if the server ended
	// it (see noteDrop). Written by readPump before it unregisters and read
	// by Hub.run after; the unregister send orders the two.
	exitReason dropReason
}

// readPump reads frames from the peer and hands them to the hub as
// requests. It enforces the read limit and the pong deadline: a peer that
// stops answering pings is dropped after PongWait.
//
// It exits when the connection fails or is closed; it then tells writePump
// and unregisters, which makes the hub close send and stop writePump.
func (c *Client) readPump() {
	defer func() {
		c.send.readerExited()
		c.hub.unregisterClient(c)
		c.pumpExited()
	}()
	defer c.recoverPanic("readPump") // runs first, so the exit above still happens
	cfg := &c.hub.cfg
	c.conn.SetReadLimit(int64(cfg.MaxMessageSize))
	c.conn.SetReadDeadline(time.Now().Add(cfg.PongWait))
	c.conn.SetPongHandler(func(string) error {
		return c.conn.SetReadDeadline(time.Now().Add(cfg.PongWait))
	})
	for {
		// Wait here, shallow, and read the frame on a helper whose stack
		// is thrown away after it (freshstack.go).
		c.wait.wait()
		more := false
		onFreshStack(func() { more = c.readFrame() })
		if !more {
			return
		}
	}
}

// readFrame reads one frame (answering control frames on the way) and
// hands it to the hub. It returns false when readPump should stop.
func (c *Client) readFrame() bool {
	mt, data, err := c.conn.ReadMessage()
	if err != nil {
		c.noteDrop(c.logReadError(err))
		return false
	}
	if !c.startFrame() {
		return true // closing for flooding: read only to see the peer's close
	}
	if mt != websocket.TextMessage {
		return c.submit(request{c: c, op: opFail, err: &protoError{Code: errBinary, Message: binaryFrameMessage}})
	}
	return c.handleFrame(data)
}

// handleFrame decodes one text frame and submits its requests. It returns
// false when the reader should stop: the hub has shut down or the client
// asked to quit.
func (c *Client) handleFrame(data []byte) bool {
	if panicHook != nil {
		panicHook("readPump", c)
	}
	if c.format == formatJSON {
		r := decodeJSON(data)
		r.c = c
		return c.submit(r)
	}
	for _, line := range splitLines(data) {
		r := parseLine(line)
		r.c = c
		if r.op == opQuit {
			// The hub says goodbye (1000 "bye") after everything already
			// queued for us, such as the answer to a /who just before.
			c.hub.submit(r)
			return false
		}
		if !c.submit(r) {
			return false
		}
	}
	return true
}

// noteDrop records why readPump is ending the connection, for the dropped
// clients metric; the first reason noted wins and an empty one is ignored.
// Must only be called from readPump, before it returns.
func (c *Client) noteDrop(r dropReason) {
	if c.exitReason == "" {
		c.exitReason = r
	}
}

// logReadError logs why the connection ended, once, at a level that matches
// how unusual it is. Ordinary goodbyes are not logged at all. It returns the
// drop reason when the server is the one ending the connection.
func (c *Client) logReadError(err error) dropReason {
	var ne net.Error
	switch {
	case c.flood != nil && c.flood.kicked:
		// Closed for flooding, which was logged then; this is the echo.
	case websocket.IsCloseError(err, websocket.CloseNormalClosure, websocket.CloseGoingAway, websocket.CloseNoStatusReceived):
		// The peer said goodbye.
	case errors.Is(err, websocket.ErrReadLimit):
		c.logger().Info("closing: frame over read limit", "limit", c.hub.cfg.MaxMessageSize)
		return dropTooBig
	case errors.As(err, &ne) && ne.Timeout():
		c.logger().Info("closing: no pong within deadline", "pong_wait", c.hub.cfg.PongWait)
		return dropPongTimeout
	case errors.Is(err, net.ErrClosed), errors.Is(err, io.ErrUnexpectedEOF), errors.Is(err, io.EOF),
		errors.Is(err, syscall.ECONNRESET):
		// We closed it (shutdown, eviction) or the peer vanished.
	case websocket.IsUnexpectedCloseError(err):
		var ce *websocket.CloseError
		if errors.As(err, &ce) {
			c.logger().Info("peer closed", "code", ce.Code, "reason", ce.Text)
		}
	default:
		c.logger().Info("read failed", "err", err)
	}
	return ""
}

// writePump writes queued events to the peer and pings it. Each wake-up
// takes everything queued: JSON clients get it as one frame of
// newline-separated events, text clients as one frame per line, and either
// way the batch leaves in one socket write. After a batch of more than one
// event, or a write close behind the previous one, it waits BatchWindow
// before the next, so that under load writes fill up instead of
// multiplying; an event for a client that was quiet goes out at once.
//
// writePump exits when the hub closes the queue (after the rest of it and a
// close frame), on a write error, or when the hub is killed. It closes the
// connection and reports to the hub on the way out.
func (c *Client) writePump() {
	c.writeLoop(new(batchWriter))
}

// writeLoop is writePump's body. It runs until the connection ends, or
// until it hands over to a fresh goroutine running writeLoop with the same
// state, to shed a stack grown by a busy spell (see shouldShed). Exactly
// one writeLoop runs per connection at any time.
func (c *Client) writeLoop(w *batchWriter) {
	handedOver := false
	defer func() {
		if handedOver {
			return // the connection lives on in the successor
		}
		w.stop()
		c.conn.Close()
		c.hub.finishClient(c)
		c.pumpExited()
	}()
	defer c.recoverPanic("writePump")
	for range c.send.ready {
		if c.send.takePing() {
			if !c.ping1() {
				return
			}
			if w.shouldShed(time.Now()) {
				w.grown = false
				handedOver = true
				c.hub.stats.handovers.Add(1)
				// The signal consumed above may also have stood for
				// events queued meanwhile: pass it on.
				c.send.signal()
				go c.writeLoop(w)
				return
			}
		}
		if !c.writeQueued(w) {
			return
		}
	}
}

// batchWriter is writePump's state between batches.
type batchWriter struct {
	spare     []*outbound // backing array for the queue's next batch
	window    *time.Timer // the batch window; made on the first pause
	lastWrite time.Time   // when the previous batch was written; zero before the first

	// grown is true once a batch was written on writePump's own stack
	// (see writeQueued), which has grown it for good.
	grown bool
}

// streaming reports whether a write at now follows the previous one
// closely: the client is receiving a steady flow of events.
func (w *batchWriter) streaming(now time.Time, window time.Duration) bool {
	return !w.lastWrite.IsZero() && now.Sub(w.lastWrite) < 2*window
}

// active reports whether the client was written to within activeSpell:
// then writing on a helper would cost more than the stack it saves.
func (w *batchWriter) active(now time.Time) bool {
	return !w.lastWrite.IsZero() && now.Sub(w.lastWrite) < activeSpell
}

// activeSpell is how recently a client must have been written to for
// writePump to write on its own stack. Long next to any batch window, short
// next to the ping period, at which a quiet writer sheds its stack.
const activeSpell = time.Second

// shouldShed reports whether writePump should move to a fresh goroutine:
// its stack has grown and the client has gone quiet. Asked at each ping, so
// a connection that was busy is back to the smallest stack within a ping
// period or two of falling idle.
func (w *batchWriter) shouldShed(now time.Time) bool {
	return w.grown && !w.active(now)
}

func (w *batchWriter) stop() {
	if w.window != nil {
		w.window.Stop()
	}
}

// writeQueued writes batches until the queue is empty, pausing between them
// while events keep coming. It returns false when writePump should exit:
// the queue was closed (the close frame has then been sent) or a write
// failed.
func (c *Client) writeQueued(w *batchWriter) bool {
	cfg := &c.hub.cfg
	for {
		batch, closed := c.send.take(w.spare)
		if len(batch) > 0 {
			// A batch for a quiet client is written on a helper, so that
			// writePump itself stays at the smallest stack while it waits
			// (freshstack.go). For an active one the helper's cost (a
			// goroutine start and a stack growth per write) shows in
			// latency under load, so writePump writes itself and sheds
			// the grown stack once the client is quiet (writeLoop).
			var err error
			if w.active(time.Now()) {
				w.grown = true
				err = c.writeBatch(batch)
			} else {
				onFreshStack(func() { err = c.writeBatch(batch) })
			}
			if err != nil {
				c.logger().Debug("write failed", "err", err)
				return false
			}
		}
		if closed {
			onFreshStack(c.closeHandshake)
			return false
		}
		// Always: even an empty batch is an array the queue must not get
		// back while it holds the one just handed to it.
		w.spare = recycle(batch)
		if len(batch) == 0 {
			return true // idle: the next push wakes writePump
		}
		// A ping due while events keep flowing goes out between batches;
		// the peer's pongs keep its read deadline alive.
		if c.send.takePing() && !c.ping1() {
			return false
		}
		// Pause after a batch of several events, and also after any write
		// that follows the previous one closely: a client receiving an
		// event every few milliseconds would otherwise get one write each,
		// and on loopback the write (with the receiver's side of TCP, done
		// in the same syscall) is most of the cost. The first batch, the
		// greeting, says nothing about load.
		now := time.Now()
		first := w.lastWrite.IsZero()
		busy := w.streaming(now, cfg.BatchWindow)
		w.lastWrite = now
		if (len(batch) > 1 || busy) && !first && cfg.BatchWindow > 0 {
			c.pause(w)
		}
	}
}

// ping1 sends one ping. Always on a helper: pings are rare, and they are
// most of what a quiet client's writer ever writes. It returns false if the
// write failed.
func (c *Client) ping1() bool {
	var err error
	onFreshStack(func() { err = c.writePing() })
	if err != nil {
		c.logger().Debug("ping failed", "err", err)
		return false
	}
	return true
}

// writePing sends one ping within WriteWait.
func (c *Client) writePing() error {
	c.conn.SetWriteDeadline(time.Now().Add(c.hub.cfg.WriteWait))
	return c.conn.WriteMessage(websocket.PingMessage, nil)
}

// pause waits out the batch window, or less if the queue reaches half full
// meanwhile: the window exists to fill frames, and must never be the reason
// a fast reader is evicted as slow.
func (c *Client) pause(w *batchWriter) {
	if w.window == nil {
		w.window = time.NewTimer(c.hub.cfg.BatchWindow)
	} else {
		w.window.Reset(c.hub.cfg.BatchWindow)
	}
	select {
	case <-w.window.C:
	case <-c.send.ready:
		w.window.Stop()
	}
}

// writeBatch writes batch in one socket write: one frame for a JSON client,
// one frame per event for a text client.
func (c *Client) writeBatch(batch []*outbound) error {
	if panicHook != nil {
		panicHook("writePump", c)
	}
	c.conn.SetWriteDeadline(time.Now().Add(c.hub.cfg.WriteWait))
	c.bc.hold()
	var err error
	if c.format == formatJSON {
		err = c.writeJSONFrame(batch)
	} else {
		err = c.writeTextFrames(batch)
	}
	if ferr := c.bc.flush(); err == nil {
		err = ferr
	}
	if err == nil {
		frames := 1 // JSON: the whole batch is one frame
		if c.format == formatText {
			frames = len(batch)
		}
		c.hub.m.wrote(c.format, len(batch), frames)
	}
	return err
}

// writeJSONFrame writes batch as one NDJSON frame. Write errors on the
// frame writer are sticky in gorilla and surface from Close, so they are
// checked once there.
func (c *Client) writeJSONFrame(batch []*outbound) error {
	w, err := c.conn.NextWriter(websocket.TextMessage)
	if err != nil {
		return err
	}
	for i, o := range batch {
		if i > 0 {
			w.Write(newline)
		}
		w.Write(o.json)
	}
	return w.Close()
}

var newline = []byte{'\n'}

// writeTextFrames writes batch as one frame per event.
func (c *Client) writeTextFrames(batch []*outbound) error {
	for _, o := range batch {
		if err := c.conn.WriteMessage(websocket.TextMessage, o.text); err != nil {
			return err
		}
	}
	return nil
}

// closeHandshake sends the close frame the hub chose, then waits a moment
// for the peer's reply (readPump sees it and exits) so that the peer gets a
// clean close rather than a reset. Bounded by WriteWait and CloseGrace.
func (c *Client) closeHandshake() {
	code, reason := c.closeCode, c.closeReason
	if code == 0 {
		code = closeNormal
	}
	err := c.conn.WriteControl(websocket.CloseMessage,
		websocket.FormatCloseMessage(code, reason), time.Now().Add(c.hub.cfg.WriteWait))
	if err != nil {
		return // already closed by readPump (/quit, 1009) or the peer is gone
	}
	t := time.NewTimer(c.hub.cfg.CloseGrace)
	defer t.Stop()
	for !c.send.readerDone() {
		select {
		case <-c.send.ready:
		case <-t.C:
			return
		case <-c.hub.kill:
			return
		}
	}
}

// logger returns the server's logger with this client's address and user.
// It is made on demand rather than kept: a logger carrying attributes is a
// few hundred bytes, a twentieth of an idle connection, and connections log
// only when something goes wrong.
func (c *Client) logger() *slog.Logger {
	l := c.hub.log.With("client", c.addr)
	if c.account != "" {
		l = l.With("user", c.account)
	}
	return l
}

// pumpExited is called by each pump as it exits; the second call releases
// the connection's slot, since only then is nothing left of it.
func (c *Client) pumpExited() {
	if c.pumpsDone.Add(1) == 2 && c.release != nil {
		c.release()
	}
}

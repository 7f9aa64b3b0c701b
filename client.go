package main

import (
	"log/slog"
	"time"

	"hubbub/internal/wsconn"
)

// Client is the chat side of one WebSocket connection: who is connected,
// where they are and what they send. The mechanics of the connection —
// its reader, its writer, its queue and its close handshake — are
// internal/wsconn's: a Client is the wsconn.Handler of its connection,
// which hands it every message the peer sends and tells it, once, when
// the connection is over. The hub reaches the peer only through conn.
type Client struct {
	hub    *Hub
	conn   sink // the connection: the hub pushes events to it and closes it
	format format
	addr   string // remote address, for logs

	// wantRoom and wantName are the room and name asked for at connect time.
	// Set before register and read by the hub; never written again.
	wantRoom, wantName string
	// resume is the ?since=&epoch= recovery point, nil when not given. Set
	// before register, read by the hub on the first join only.
	resume *resumePoint

	// account is the user name the connection logged in as, or "" for a
	// guest. Set before register; never written again.
	account string
	// tokenRole is the role a JWT gave the connection, when fixedRole says
	// its token decides (jwt mode); otherwise the users file does, at each
	// action (Hub.roleOf). Set before register; never written again.
	tokenRole role
	fixedRole bool
	// showSeq is set for a text client with a moderator's role when it
	// enters a room: its message lines carry their seqs ("[lobby #12]"),
	// which /delete names. Owned by Hub.run.
	showSeq bool

	// flood is the message budget (nil: unlimited). Used only by Message,
	// which the connection's reader calls.
	flood *flood

	// release frees the connection's slot in the server's connection
	// limits. Called once, by Closed.
	release func()

	// Owned by Hub.run.
	pingSlot uint8 // which of the hub's ping ticks pings this client (pingSome)
	name     string
	// sender is who the client is for dedupe (ack.go): its login, else
	// the name it last asked for — at connect or with a successful
	// change of name — else the name it was given. A client that asked
	// for alice and got alice-2, because its own lost connection still
	// held alice, resends under the same identity after reconnecting.
	sender  string
	room    *Room
	active  bool // in hub.clients (and a room): the hub has not let go of it
	waiting bool // its room is not synced yet: no broadcasts until room_changed (cluster.go)
}

// sink is what the hub needs of a client's connection. *wsconn.Conn is the
// real one; benchmarks use a socketless stand-in.
type sink interface {
	// Push queues an event's bytes; wsconn.ErrQueueFull means the client
	// is not keeping up.
	Push(msg []byte) (int, error)
	// Len is how many events wait.
	Len() int
	// Ping asks for a ping.
	Ping()
	// Close ends the connection for a reason: queued events first, then
	// the close frame.
	Close(d wsconn.Disconnect)
	// Abort cuts the connection at once.
	Abort()
}

var _ sink = (*wsconn.Conn)(nil)

// panicHook, when a test sets it, is called for every message a client
// reads, so that the test can make a reader panic. Always nil outside
// tests; set it only while no server is running.
var panicHook func(c *Client)

// Message handles one message from the peer: it decodes the message into
// commands and submits them to the hub, within the flood budget.
// The connection's reader calls it (wsconn.Handler).
func (c *Client) Message(data []byte, binary bool) {
	if panicHook != nil {
		panicHook(c)
	}
	if !c.flood.startFrame() {
		return // closing for flooding: nothing more is taken from this client
	}
	if binary {
		c.submit(failCmd{&protoError{Code: errBinary, Message: binaryFrameMessage}}, "")
		return
	}
	if c.format == formatJSON {
		c.submit(decodeJSON(data))
		return
	}
	lines := splitLines(data)
	for _, line := range lines {
		cmd := parseLine(line)
		if _, ok := cmd.(quitCmd); ok {
			// The hub says goodbye (1000 "bye") after everything already
			// queued for us, such as the answer to a /who just before;
			// the rest of this frame is not taken.
			c.hub.submit(clientRequest{c: c, cmd: cmd})
			return
		}
		if !c.submit(cmd, "") {
			return
		}
	}
	// One notice per frame, with the count, rather than one per line.
	if n := c.flood.dropped(); n > 0 {
		c.hub.submit(clientRequest{c: c, cmd: failCmd{c.flood.refusal(n, len(lines))}})
	}
}

// submit hands cmd, which the client sent with id ("" for none), to the
// hub if c's flood budget allows it (flood.go). The first command refused
// in a frame is answered with one rate_limited error; the refusal that
// makes the client a flooder closes it with 1008. It returns false once
// the hub has stopped.
func (c *Client) submit(cmd command, id string) bool {
	switch c.flood.spend(time.Now()) {
	case floodWarn:
		if c.format == formatText {
			return true // told at the end of the frame, with the count
		}
		cmd = failCmd{c.flood.refusal(1, 1)}
	case floodKick:
		c.logger().Info("closing: flooding", "strikes", floodStrikes, "window", floodWindow)
		cmd = floodCmd{}
	case floodDrop:
		return true // refused, and this frame was already told
	}
	return c.hub.submit(clientRequest{c: c, cmd: cmd, id: id})
}

// Closed is the connection's one exit notification (wsconn.Handler): the
// socket is closed and the connection's goroutines are gone but for the
// reader calling this. It logs why, gives back the connection's slot and
// tells the hub, whose report travels behind the client's last requests,
// so that what a client said just before it left is still delivered.
func (c *Client) Closed(d wsconn.Disconnect, err error) {
	c.logEnd(d, err)
	if c.release != nil {
		c.release()
	}
	c.hub.gone(c, d)
}

// logEnd logs how the connection ended, once, at a level that matches how
// unusual it is. Ordinary goodbyes are not logged; the hub's own reasons
// (slow consumer, flooding) were logged when it chose them.
func (c *Client) logEnd(d wsconn.Disconnect, err error) {
	switch d.Label {
	case "internal_error":
		c.hub.stats.panics.Add(1)
		attrs := []any{"name", c.wantName, "err", err}
		if pe, ok := err.(*wsconn.PanicError); ok {
			attrs = []any{"goroutine", pe.Where, "name", c.wantName, "panic", pe.Value, "stack", string(pe.Stack)}
		}
		c.logger().Error("recovered panic; closing connection", attrs...)
	case "too_big":
		c.logger().Info("closing: message over the read limit", "limit", c.hub.cfg.MaxMessageSize)
	case "pong_timeout":
		c.logger().Info("closing: no pong within deadline", "pong_wait", c.hub.cfg.PongWait)
	case "write_timeout":
		c.logger().Info("closing: write blocked past its deadline", "write_wait", c.hub.cfg.WriteWait)
	case "protocol_error":
		c.logger().Info("closing: protocol error", "err", err)
	case "":
		switch {
		case err != nil:
			c.logger().Info("connection failed", "err", err)
		case d.Code != 0 && d.Code != wsconn.CloseNormal && d.Code != 1001:
			c.logger().Info("peer closed", "code", d.Code)
		}
	}
}

// logger returns the server's logger with this client's address and user.
// It is made on demand rather than kept: a logger carrying attributes is a
// few hundred bytes, a tenth of an idle connection, and connections log
// only when something goes wrong.
func (c *Client) logger() *slog.Logger {
	l := c.hub.log.With("client", c.addr)
	if c.account != "" {
		l = l.With("user", c.account)
	}
	return l
}

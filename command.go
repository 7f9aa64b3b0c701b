package main

// Client commands: what a client may ask for, one type each, with the
// hub's handler for it. The decoders (protocol.go) build commands from
// JSON frames and text lines; the client's reader submits them within its
// flood budget (Client.submit); the hub runs them in order, one at a time.
// A handler here only decides and delegates: the work is done by the
// code that owns the state, named in each comment.
//
// Adding a command: a type and its run method here, a case in decodeJSON
// and parseLine, the event it answers with (events.go), its entry in
// docs/PROTOCOL.md, the browser's client module (static/hubbub.js) and page
// (static/app.js), and tests; docs/ARCHITECTURE.md has the whole checklist.

// command is one decoded client action. It holds nothing the hub owns.
type command interface {
	// run carries the command out for c, which the hub has not let go of;
	// id is the id the client gave the event ("" for none), for replies
	// and errors. Must only be called from Hub.run.
	run(h *Hub, c *Client, id string)
}

// sayCmd posts msg (already cleaned) to the client's room: through the
// broker, and broadcast when the broker hands it back (cluster.go); with an
// id, once, and acked (ack.go). action marks a /me message.
type sayCmd struct {
	msg    string
	action bool
}

func (s sayCmd) run(h *Hub, c *Client, id string) {
	if e := h.sayRefused(c); e != nil { // muted, or slow mode (moderation.go)
		h.deliver(c, errorEvent(e.withID(id)))
		return
	}
	h.m.received[c.format].Inc()
	h.publish(c, s.msg, id, s.action)
}

// joinCmd moves the client to another room (Hub.join, hub.go).
type joinCmd struct{ room string }

func (j joinCmd) run(h *Hub, c *Client, id string) {
	if c.room != nil && c.room.name == j.room {
		h.fail(c, id, errAlreadyThere, "you are already in %s", j.room)
		return
	}
	if e := h.banned(c, j.room); e != nil {
		h.deliver(c, errorEvent(e.withID(id)))
		return
	}
	h.join(c, j.room, false, id)
}

// nickCmd renames the client in its room (Hub.rename, hub.go).
type nickCmd struct{ name string }

func (n nickCmd) run(h *Hub, c *Client, id string) { h.rename(c, n.name, id) }

// whoCmd lists the members of the client's room, on every node.
type whoCmd struct{}

func (whoCmd) run(h *Hub, c *Client, id string) {
	h.deliver(c, membersEvent("members", c.room, "", id))
}

// roomsCmd lists the rooms and their member counts, on every node.
type roomsCmd struct{}

func (roomsCmd) run(h *Hub, c *Client, id string) { h.deliver(c, roomsEvent(h.roomList(), id)) }

// helpCmd answers a text client's /help. JSON clients get nothing: the
// lines are text only.
type helpCmd struct{}

func (helpCmd) run(h *Hub, c *Client, _ string) {
	for _, line := range helpLines {
		h.deliver(c, textOnly(line))
	}
	if h.roleOf(c) >= roleModerator {
		for _, line := range modHelpLines {
			h.deliver(c, textOnly(line))
		}
	}
}

// statusCmd answers a text client's /status: where it is and where the
// room's log stands, for a reconnect with since and epoch.
type statusCmd struct{}

func (statusCmd) run(h *Hub, c *Client, _ string) {
	l := h.history.get(c.room.name)
	h.deliver(c, statusLine(c.room, c.name, l.epoch, l.last))
}

// quitCmd is a text client's /quit: what is queued for it goes out, then
// 1000 "bye" (Hub.disconnect).
type quitCmd struct{}

func (quitCmd) run(h *Hub, c *Client, _ string) { h.disconnect(c, dcBye) }

// failCmd tells the client that something it sent was refused: a bad
// frame, a message over its flood budget, a message the broker lost.
type failCmd struct{ err *protoError }

func (f failCmd) run(h *Hub, c *Client, id string) { h.deliver(c, errorEvent(f.err.withID(id))) }

// floodCmd closes a client that kept flooding with 1008 (flood.go decides
// when).
type floodCmd struct{}

func (floodCmd) run(h *Hub, c *Client, _ string) { h.disconnect(c, dcFlooding) }

// modCmd is a moderation request — kick, ban, unban, mute, unmute,
// delete_message, slow_mode — as decoded (protocol.go). Hub.moderate
// checks the sender's role, works out the room and carries it out
// through the broker, so that it holds on every node (moderation.go).
type modCmd struct{ modAction }

func (m modCmd) run(h *Hub, c *Client, id string) { h.moderate(h.clientActor(c, id), m.modAction) }

// directCmd sends a direct message to the logged-in user to, on whichever
// nodes it is connected (direct.go).
type directCmd struct{ to, msg string }

func (d directCmd) run(h *Hub, c *Client, id string) { h.sendDirect(c, d.to, d.msg, id) }

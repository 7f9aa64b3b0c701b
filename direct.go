package main

import (
	"crypto/rand"
	"encoding/json"
	"strings"
	"time"
)

// Direct messages: /msg NAME text and send_direct {to, message}.
//
// Who is NAME. A direct message goes from one logged-in user to another,
// by login: guests can neither send nor receive them. Logins are unique
// (the users file refuses two that differ only in case; a JWT's subject is
// its issuer's), while a guest's nickname is unique only within a room and
// changes at will, so a message to "bob" could otherwise reach whichever
// guest called himself bob. A guest that calls itself like a user is never
// taken for it.
//
// The route. The sender's node signals the message to every node (the
// broker's Signal); each delivers it to its own connections of the
// recipient and answers how many. When the answers are in, the sender's
// node either tells the sender no_such_user (nobody was reached) or
// signals the copy, which every node delivers to the sender's own
// connections, the one that sent it included. Direct messages are not
// kept and have no seq: they are not part of any room's history. They
// pass the sender's flood budget like any request, and a server-wide mute
// stops them.

// The direct-message signals: the message for its recipient, and the
// copy for its sender's connections.
const (
	sigDirect     = "dm"
	sigDirectCopy = "dm-copy"
)

// directPayload is the payload of direct_message, and the body of its
// signals.
type directPayload struct {
	ID      string `json:"id"` // names the message on every node, for a client's dedupe
	From    string `json:"from"`
	To      string `json:"to"`
	Message string `json:"message"`
	Time    string `json:"time"`
}

// directEvent builds direct_message; text clients read
// "[dm] alice → bob: text".
func directEvent(p directPayload) *outbound {
	return newOutbound("direct_message", p, "[dm] "+p.From+" → "+p.To+": "+p.Message)
}

// sendDirect sends msg from c to the logged-in user to. id is c's event
// id, for the error if there is one. Must only be called from run.
func (h *Hub) sendDirect(c *Client, to, msg, id string) {
	fail := func(code, text string) {
		h.deliver(c, errorEvent(&protoError{Code: code, Message: text, ID: id}))
	}
	switch {
	case c.account == "":
		fail(errForbidden, "direct messages are between logged-in users: log in to send one")
		return
	case strings.EqualFold(to, c.account):
		fail(errBadPayload, "that is you: a direct message goes to someone else")
		return
	}
	if r := h.mod.restriction(recMute, "", c.account, time.Now()); r != nil {
		h.deliver(c, errorEvent(muteError(r).withID(id)))
		return
	}
	p := directPayload{ID: rand.Text()[:16], From: c.account, To: to, Message: msg, Time: stamp(time.Now())}
	body, _ := json.Marshal(p) // strings only
	err := h.broker.Signal(Signal{Kind: sigDirect, Body: body}, func(sum, _ int) {
		h.fromBrokerResult(directSent{c: c, id: id, p: p, body: body, reached: sum})
	})
	if err != nil {
		h.deliver(c, errorEvent(notDelivered(err).withID(id)))
	}
}

// directSent is the outcome of a direct message: how many of the
// recipient's connections it reached, on every node.
type directSent struct {
	c       *Client
	id      string
	p       directPayload
	body    []byte
	reached int
}

// handle tells the sender nobody got it, or sends the copy to every
// connection of the sender.
func (r directSent) handle(h *Hub) {
	if r.reached == 0 {
		if r.c.active {
			h.deliver(r.c, errorEvent(&protoError{Code: errNoSuchUser, ID: r.id,
				Message: r.p.To + " is not online: direct messages reach logged-in users while they are connected"}))
		}
		return
	}
	if err := h.broker.Signal(Signal{Kind: sigDirectCopy, Body: r.body}, nil); err != nil {
		h.deliver(r.c, directEvent(r.p)) // delivered; at least the sender hears of it
	}
}

// onDirect delivers p to this node's connections of its recipient (with
// toSender: of its sender) and returns how many. Must only be called from run.
func (h *Hub) onDirect(p directPayload, toSender bool) int {
	who := p.To
	if toSender {
		who = p.From
	}
	o := directEvent(p)
	n := 0
	for c := range h.named[fold(who)] {
		// Logins are unique ignoring case, so "Bob" is bob; a guest is
		// indexed by its nickname and has no account, so it never matches.
		if c.active && c.account != "" && strings.EqualFold(c.account, who) {
			h.deliver(c, o)
			n++
		}
	}
	return n
}

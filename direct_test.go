package main

import (
	"net/http"
	"strings"
	"testing"
)

// directOf reads p's events until a direct_message and returns it.
func (p *peer) directOf() directPayload {
	p.t.Helper()
	var d directPayload
	p.skipUntil("direct_message").decode(p.t, &d)
	return d
}

// quietUntil fails if p gets a direct_message before the room message
// marker, which the test sends after everything p must not get: the hub
// handles requests in order, so anything sent before the marker would
// reach p before it.
func quietUntil(t *testing.T, p *peer, marker string) {
	t.Helper()
	for {
		e := p.next()
		switch e.Type {
		case "direct_message":
			t.Errorf("got %s; want no direct message", e.Payload)
		case "new_message":
			if e.msg(t).Message == marker {
				return
			}
		}
	}
}

// TestDirectMessages: a direct message reaches every connection of its
// recipient, wherever they are, and a copy every connection of its sender;
// nobody else, and not the room's history.
func TestDirectMessages(t *testing.T) {
	s := modServer(t, Config{})
	bob := s.as(t, "bob", "lobby", false)
	bob2 := s.as(t, "bob", "lobby", false) // a second tab: shown as bob-2, still bob
	bobText := s.as(t, "bob", "elsewhere", true)
	carol := s.as(t, "carol", "lobby", false)
	carol2 := s.as(t, "carol", "attic", false)
	dave := s.as(t, "dave", "lobby", false)
	guest := s.as(t, "guest-bob", "lobby", false)

	carol.sendRaw(`{"type":"send_direct","id":"d1","payload":{"to":"BOB","message":"lunch?"}}`)
	var first directPayload
	for i, p := range []*peer{bob, bob2, carol, carol2} {
		d := p.directOf()
		if d.From != "carol" || d.To != "BOB" || d.Message != "lunch?" || d.ID == "" || d.Time == "" {
			t.Errorf("connection %d got %+v; want carol's lunch?", i, d)
		}
		if i > 0 && d.ID != first.ID {
			t.Errorf("connection %d got id %q; want the same id on every copy (%q)", i, d.ID, first.ID)
		}
		first = d
	}
	if l := bobText.lineWith("[dm]"); l != "[dm] carol → BOB: lunch?" {
		t.Errorf("text line %q; want [dm] carol → BOB: lunch?", l)
	}
	// Neither dave nor the guest who calls itself bob got it, and the room
	// keeps nothing of it.
	carol.say("marker")
	quietUntil(t, dave, "marker")
	quietUntil(t, guest, "marker")
	late := s.dial(t, "room", "lobby", "name", "guest-late")
	for _, m := range late.historyOf() {
		if strings.Contains(m.Message, "lunch") {
			t.Errorf("history holds %+v; direct messages are not kept", m)
		}
	}
	// The text form: /msg, answered with the copy.
	bobText.sendRaw("/msg carol yes, noon")
	if d := carol2.directOf(); d.From != "bob" || d.Message != "yes, noon" {
		t.Errorf("carol got %+v; want bob's yes, noon", d)
	}
	if l := bobText.lineWith("[dm]"); l != "[dm] bob → carol: yes, noon" {
		t.Errorf("bob's copy %q", l)
	}
}

// TestDirectMessageRefusals: what cannot be delivered is refused with an
// error that says why, and reaches nobody.
func TestDirectMessageRefusals(t *testing.T) {
	s := modServer(t, Config{})
	carol := s.as(t, "carol", "lobby", false)
	guest := s.as(t, "guest-gus", "lobby", false)
	dave := s.as(t, "dave", "lobby", false)
	if code, resp := s.api(t, "POST", "/api/mutes", testKey, `{"name":"dave","duration":"1h"}`); code != http.StatusOK {
		t.Fatalf("mute dave: %d %s", code, resp)
	}
	tests := []struct {
		who  *peer
		to   string
		code string
		msg  string
	}{
		{carol, "bob", errNoSuchUser, "bob is not online"},                            // registered, not connected
		{carol, "guest-gus", errNoSuchUser, "guest-gus is not online"},                // guests receive none
		{carol, "nobody", errNoSuchUser, "nobody is not online"},                      // no such user at all
		{carol, "Carol", errBadPayload, "that is you"},                                // oneself, in any case
		{guest, "carol", errForbidden, "direct messages are between logged-in users"}, // guests send none
		{dave, "carol", errMuted, "muted everywhere"},                                 // a server-wide mute
	}
	for _, tt := range tests {
		tt.who.sendJSON("send_direct", map[string]string{"to": tt.to, "message": "psst"})
		if e := tt.who.errorOf(); e.Code != tt.code || !strings.Contains(e.Message, tt.msg) {
			t.Errorf("to %s: %+v; want %s %q", tt.to, e, tt.code, tt.msg)
		}
	}
	guest.say("marker")
	quietUntil(t, carol, "marker")

	// A mute in one room is not a mute of direct messages.
	bob := s.as(t, "bob", "lobby", false)
	if code, resp := s.api(t, "POST", "/api/rooms/lobby/mutes", testKey, `{"name":"carol","duration":"1h"}`); code != http.StatusOK {
		t.Fatalf("mute carol: %d %s", code, resp)
	}
	carol.sendJSON("send_direct", map[string]string{"to": "bob", "message": "muted in lobby only"})
	if d := bob.directOf(); d.Message != "muted in lobby only" {
		t.Errorf("bob got %+v", d)
	}
}

// TestDirectMessagesFloodControl: direct messages spend the sender's
// message budget like room messages.
func TestDirectMessagesFloodControl(t *testing.T) {
	s := modServer(t, Config{MsgRate: 0.1, MsgBurst: 2})
	carol := s.as(t, "carol", "lobby", false)
	bob := s.as(t, "bob", "lobby", false)
	for i := range 3 {
		carol.sendJSON("send_direct", map[string]string{"to": "bob", "message": "spam " + string(rune('a'+i))})
	}
	if e := carol.errorOf(); e.Code != errRateLimited {
		t.Errorf("third direct message: %+v; want rate_limited", e)
	}
	for _, want := range []string{"spam a", "spam b"} {
		if d := bob.directOf(); d.Message != want {
			t.Errorf("bob got %q; want %q", d.Message, want)
		}
	}
	dave := s.as(t, "dave", "lobby", false)
	dave.say("marker")
	quietUntil(t, bob, "marker")
}

package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// Moderation and direct messages across a cluster: real sockets, real
// nodes, one in-process NATS server with JetStream (cluster_test.go).
// Records (bans, mutes, slow mode, tombstones) reach the other nodes
// through the JetStream KV bucket, signals (kicks, direct messages)
// through core NATS; every test acts on one node and checks another.

// modPassword is every test user's password.
const modPassword = "pw"

// modCluster is a testCluster whose nodes share one users file, with a
// moderator (mo) and an admin (ad) among its users.
type modCluster struct {
	*testCluster
	cfg Config
}

// newModCluster starts NATS and n nodes configured by cfg (history on,
// the API key and the users file added).
func newModCluster(t *testing.T, n int, cfg Config) *modCluster {
	t.Helper()
	cfg.APIKey = testKey
	cfg.UsersFile = writeUsers(t, "mo:moderator", modPassword, "ad:admin", modPassword,
		"alice", modPassword, "bob", modPassword, "carol", modPassword, "dave", modPassword)
	c := &modCluster{testCluster: newTestCluster(t, 0), cfg: deployed(cfg)}
	for range n {
		c.addNode()
	}
	c.waitPeers()
	return c
}

// addNode starts one more node on the cluster's NATS and waits until it
// is ready: connected, with the moderation records read.
func (c *modCluster) addNode() *testServer {
	t := c.t
	t.Helper()
	i := len(c.nodes)
	b, err := newNATSBroker(natsOptions{
		URL:           c.ns.ClientURL(),
		Prefix:        c.prefix,
		Node:          "n" + strconv.Itoa(i+1),
		History:       100,
		Interval:      testInterval,
		ReconnectWait: 50 * time.Millisecond,
		Log:           testLogger(t).With("node", i+1),
	})
	if err != nil {
		t.Fatal(err)
	}
	s := newTestServerOn(t, c.cfg, deps{broker: b})
	c.brs = append(c.brs, b)
	c.nodes = append(c.nodes, s)
	c.waitReady("ready", func(err error) bool { return err == nil })
	return s
}

// waitPeers waits until every node knows of all the others, so that a
// signal's sender waits for every node's answer (broker_nats.go Signal).
func (c *modCluster) waitPeers() {
	c.t.Helper()
	want := int32(len(c.nodes) - 1)
	eventually(c.t, "every node knows its peers", func() bool {
		for _, b := range c.brs {
			if b.peers.Load() != want {
				return false
			}
		}
		return true
	})
}

// user logs user in on s and connects it to room, consuming the greeting
// and the history.
func (c *modCluster) user(s *testServer, user, room string, kv ...string) *peer {
	c.t.Helper()
	p, rp := s.joined(c.t, append([]string{"ticket", s.login(c.t, user, modPassword), "room", room}, kv...)...)
	if rp.Name != user {
		c.t.Fatalf("%s joined %s as %q", user, room, rp.Name)
	}
	return p
}

// eventually polls cond every 20ms until it holds, failing after 10s.
func eventually(t testing.TB, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("not within 10s: %s", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// notice reads until a moderation event with action and returns it.
func (p *peer) notice(action string) modNotice {
	p.t.Helper()
	for {
		var n modNotice
		p.skipUntil("moderation").decode(p.t, &n)
		if n.Action == action {
			return n
		}
	}
}

// mod sends the moderation event typ with payload, with an id, and
// returns the confirmation, failing on an error.
func (p *peer) mod(typ string, payload map[string]any) modNotice {
	p.t.Helper()
	p.sendRaw(modFrame(p.t, typ, "m-"+typ, payload))
	for {
		e := p.next()
		switch e.Type {
		case "error":
			p.t.Fatalf("%s %v refused: %s", typ, payload, e.Payload)
		case "moderation":
			var n modNotice
			e.decode(p.t, &n)
			if n.ID == "m-"+typ {
				return n
			}
		}
	}
}

// modFrame encodes a client event with an id.
func modFrame(t testing.TB, typ, id string, payload any) string {
	t.Helper()
	b, err := json.Marshal(map[string]any{"type": typ, "id": id, "payload": payload})
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// untilMessage reads until the new_message with text msg, failing if an
// event of type bad arrives first.
func (p *peer) untilMessage(msg, bad string) messagePayload {
	p.t.Helper()
	for {
		e := p.next()
		switch e.Type {
		case bad:
			p.t.Fatalf("got %s %s; want none before the message %q", e.Type, e.Payload, msg)
		case "new_message":
			if m := e.msg(p.t); m.Message == msg {
				return m
			}
		}
	}
}

// dialRefused dials s with kv and returns the refusal's status and body,
// failing if the handshake succeeds.
func dialRefused(t testing.TB, s *testServer, kv ...string) (int, string) {
	t.Helper()
	p, resp, err := s.tryDial(kv...)
	if err == nil {
		p.conn.Close()
		t.Fatalf("dial %v succeeded; want it refused", kv)
	}
	if resp == nil {
		t.Fatalf("dial %v: %v, no HTTP response", kv, err)
	}
	body := refusal(resp)
	return resp.StatusCode, body
}

// TestClusterModBan: a ban made on node A, by a moderator connected there
// or through A's HTTP API, closes the banned user's connection on node B
// with 4003 and the reason, refuses the reconnect to B with 403 and a text
// body before the upgrade, and refuses joining the room on C with banned
// and its until. Every node shows the leave as a ban. An unban made on B
// lifts the ban on A. The room ban leaves other rooms open, and a
// server-wide ban (through the API) closes every room.
func TestClusterModBan(t *testing.T) {
	c := newModCluster(t, 3, Config{})
	a, b, cn := c.nodes[0], c.nodes[1], c.nodes[2]
	mo := c.user(a, "mo", "lobby")
	watchB := c.user(b, "alice", "lobby")
	watchC := c.user(cn, "carol", "lobby")

	tests := []struct {
		name   string
		server bool
		ban    func(t *testing.T) modNotice // on A
		unban  func(t *testing.T)           // on B
	}{
		{"moderator on A", false,
			func(t *testing.T) modNotice {
				return mo.mod("ban", map[string]any{"name": "bob", "duration": "1h", "reason": "spam"})
			},
			func(t *testing.T) {
				mob := c.user(b, "mo", "elsewhere")
				if n := mob.mod("unban", map[string]any{"name": "bob", "room": "lobby"}); n.Action != "unban" {
					t.Fatalf("unban confirmed as %+v", n)
				}
			}},
		{"API on A", false,
			func(t *testing.T) modNotice {
				status, body := a.api(t, "POST", "/api/rooms/lobby/bans", testKey,
					`{"name":"bob","duration":"1h","reason":"spam","by":"mo"}`)
				if status != http.StatusOK {
					t.Fatalf("ban through the API = %d %s; want 200", status, body)
				}
				var n modNotice
				decodeJSONBody(t, body, &n)
				return n
			},
			func(t *testing.T) {
				if status, body := b.api(t, "DELETE", "/api/rooms/lobby/bans/bob", testKey, ""); status != http.StatusOK {
					t.Fatalf("unban through B's API = %d %s; want 200", status, body)
				}
			}},
		{"server-wide through the API on A", true,
			func(t *testing.T) modNotice {
				status, body := a.api(t, "POST", "/api/bans", testKey,
					`{"name":"bob","duration":"1h","reason":"spam","by":"mo"}`)
				if status != http.StatusOK {
					t.Fatalf("server-wide ban through the API = %d %s; want 200", status, body)
				}
				var n modNotice
				decodeJSONBody(t, body, &n)
				return n
			},
			func(t *testing.T) {
				if status, body := b.api(t, "DELETE", "/api/bans/bob", testKey, ""); status != http.StatusOK {
					t.Fatalf("server-wide unban through B's API = %d %s; want 200", status, body)
				}
			}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			bob := c.user(b, "bob", "lobby")
			watchB.waitPresence("join", "bob")
			watchC.waitPresence("join", "bob")

			n := tt.ban(t)
			if n.Action != "ban" || n.Name != "bob" || n.By != "mo" || n.Until == "" || n.Server != tt.server {
				t.Fatalf("ban confirmed as %+v; want bob banned by mo until a time", n)
			}
			code, reason := bob.closeFrame(10 * time.Second)
			where := "from lobby"
			if tt.server {
				where = "from the server"
			}
			if code != closeBanned || !strings.Contains(reason, "banned "+where+" by mo") || !strings.HasSuffix(reason, ": spam") {
				t.Errorf("bob's connection on B closed with %d %q; want %d, banned %s by mo: spam", code, reason, closeBanned, where)
			}
			// The leave is a ban's on every node, and a room ban is
			// announced in the room: on C that says C holds it now.
			for who, w := range map[string]*peer{"B": watchB, "C": watchC} {
				left, told := false, tt.server
				for !left || !told {
					switch e := w.next(); e.Type {
					case "presence":
						var pp presencePayload
						e.decode(t, &pp)
						if pp.Name != "bob" || pp.Event != "leave" {
							continue
						}
						left = true
						if !pp.Kicked || !pp.Banned || pp.By != "mo" {
							t.Errorf("leave seen on %s as %+v; want bob's, kicked and banned by mo", who, pp)
						}
					case "moderation":
						var got modNotice
						e.decode(t, &got)
						told = true
						if got.Action != "ban" || got.Name != "bob" || got.Until != n.Until {
							t.Errorf("room notice on %s %+v; want bob's ban until %s", who, got, n.Until)
						}
					}
				}
			}

			// B refuses the reconnect before the upgrade, in plain text.
			status, body := dialRefused(t, b, "ticket", b.login(t, "bob", modPassword), "room", "lobby")
			if status != http.StatusForbidden || !strings.Contains(body, "you are banned "+strings.Replace(where, "the server", "this server", 1)) ||
				strings.Contains(body, "{") {
				t.Errorf("bob's reconnect to B refused with %d %q; want 403 and a text body saying he is banned", status, body)
			}

			// C refuses lobby to bob coming from another room.
			if tt.server {
				// A server-wide ban has no room notice: C holds it once it
				// refuses bob's handshake.
				eventually(t, "C refuses bob", func() bool {
					p, _, err := cn.tryDial("ticket", cn.login(t, "bob", modPassword), "room", "elsewhere")
					if err == nil {
						p.conn.Close()
					}
					return err != nil
				})
			} else {
				bobC := c.user(cn, "bob", "elsewhere")
				bobC.sendRaw(modFrame(t, "change_room", "j1", map[string]string{"name": "lobby"}))
				pe := bobC.errorOf()
				if pe.Code != errBanned || pe.Until != n.Until || pe.ID != "j1" {
					t.Errorf("bob joining lobby on C got %+v; want %s until %s", pe, errBanned, n.Until)
				}
				bobC.conn.Close()
			}

			// Unban on B: A lets bob in again.
			tt.unban(t)
			var back *peer
			eventually(t, "A admits bob after the unban on B", func() bool {
				p, _, err := a.tryDial("ticket", a.login(t, "bob", modPassword), "room", "lobby")
				if err != nil {
					return false
				}
				p.t = t
				back = p
				return true
			})
			var rp roomPayload
			back.skipUntil("room_changed").decode(t, &rp)
			if rp.Room != "lobby" || rp.Name != "bob" {
				t.Errorf("bob back on A is in %q as %q; want lobby as bob", rp.Room, rp.Name)
			}
			back.conn.Close()
			watchB.waitPresence("leave", "bob")
			watchC.waitPresence("leave", "bob")
		})
	}
}

// TestClusterModMute: a mute made on A binds the user on B, who is told
// muted with its until when sending and still reads the room. A server-
// wide mute by an admin stops the user's direct messages too.
func TestClusterModMute(t *testing.T) {
	c := newModCluster(t, 2, Config{})
	a, b := c.nodes[0], c.nodes[1]
	mo := c.user(a, "mo", "lobby")
	bob := c.user(b, "bob", "lobby")
	alice := c.user(a, "alice", "lobby")
	mo.waitPresence("join", "bob")

	n := mo.mod("mute", map[string]any{"name": "bob", "duration": "1h", "reason": "shouting"})
	if got := bob.notice("mute"); got.Name != "bob" || got.Until != n.Until {
		t.Fatalf("bob's room notice %+v; want his mute until %s", got, n.Until)
	}
	bob.sendRaw(modFrame(t, "send_message", "s1", map[string]string{"message": "let me speak"}))
	if pe := bob.errorOf(); pe.Code != errMuted || pe.Until != n.Until || pe.ID != "s1" {
		t.Errorf("muted bob sending on B got %+v; want %s until %s", pe, errMuted, n.Until)
	}
	alice.say("still there, bob?")
	if m := bob.untilMessage("still there, bob?", ""); m.From != "alice" {
		t.Errorf("bob read %+v; want alice's message", m)
	}
	// A room mute leaves direct messages alone.
	bob.sendJSON("send_direct", map[string]string{"to": "alice", "message": "psst"})
	if d := alice.directOf(); d.From != "bob" || d.Message != "psst" {
		t.Errorf("alice got %+v; want bob's direct message", d)
	}

	// Server-wide, by the admin: nothing gets out, room or direct.
	ad := c.user(a, "ad", "lobby")
	sn := ad.mod("mute", map[string]any{"name": "bob", "duration": "1h", "server": true})
	if !sn.Server {
		t.Fatalf("server-wide mute confirmed as %+v", sn)
	}
	// No room hears of a server-wide mute: B holds it once it refuses.
	eventually(t, "B refuses bob's direct message", func() bool {
		bob.sendRaw(modFrame(t, "send_direct", "d1", map[string]string{"to": "alice", "message": "psst again"}))
		for {
			switch e := bob.next(); e.Type {
			case "direct_message":
				return false
			case "error":
				var pe protoError
				e.decode(t, &pe)
				if pe.Code != errMuted || pe.Until != sn.Until || pe.ID != "d1" {
					t.Fatalf("bob's direct message got %+v; want %s until %s", pe, errMuted, sn.Until)
				}
				return true
			}
		}
	})
	bob.say("anyone?")
	if pe := bob.errorOf(); pe.Code != errMuted {
		t.Errorf("muted bob sending to the room got %+v; want %s", pe, errMuted)
	}
}

// TestClusterModDirect: a direct message from alice on A reaches both of
// bob's connections (on B and C), and alice's copy reaches both of hers
// (on A and B); carol and a guest in the same room never see it, and a
// guest cannot take bob's name or send one. A message to a user who is
// not connected is answered no_such_user.
func TestClusterModDirect(t *testing.T) {
	c := newModCluster(t, 3, Config{})
	a, b, cn := c.nodes[0], c.nodes[1], c.nodes[2]
	alice := c.user(a, "alice", "lobby")
	alice2 := c.user(b, "alice", "lobby")
	bobB := c.user(b, "bob", "lobby")
	bobC := c.user(cn, "bob", "lobby")
	carol := c.user(cn, "carol", "lobby")
	guest, _ := cn.joined(t, "room", "lobby", "name", "visitor")
	// A guest may not pass as bob, in any case, on any node.
	for _, name := range []string{"bob", "BOB"} {
		if status, body := dialRefused(t, cn, "room", "lobby", "name", name); status != http.StatusForbidden ||
			!strings.Contains(body, "registered") {
			t.Errorf("guest dialing as %s: %d %q; want 403, a registered name", name, status, body)
		}
	}

	alice.sendRaw(modFrame(t, "send_direct", "dm1", map[string]string{"to": "bob", "message": "for your eyes only"}))
	var sent directPayload
	for i, p := range []*peer{bobB, bobC, alice, alice2} {
		d := p.directOf()
		if d.From != "alice" || d.To != "bob" || d.Message != "for your eyes only" || d.ID == "" || d.Time == "" {
			t.Errorf("connection %d got %+v; want alice's message to bob", i, d)
		}
		if i == 0 {
			sent = d
		} else if d.ID != sent.ID {
			t.Errorf("connection %d got id %q; want the same id everywhere, %q", i, d.ID, sent.ID)
		}
	}
	// Alice's copy is signalled once every node has delivered the message,
	// so whatever she sends to the room after it reaches the others later:
	// no direct message may come before it.
	alice.say("marker")
	for _, p := range []*peer{carol, guest, bobB, bobC} {
		p.untilMessage("marker", "direct_message")
	}

	tests := []struct {
		name     string
		from     *peer
		to, code string
	}{
		{"offline user", alice, "dave", errNoSuchUser},
		{"unknown user", alice, "nobody", errNoSuchUser},
		{"guest sender", guest, "bob", errForbidden},
		{"guest recipient", alice, "visitor", errNoSuchUser},
		{"to oneself", alice, "alice", errBadPayload},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tt.from.sendRaw(modFrame(t, "send_direct", "dm-"+tt.to, map[string]string{"to": tt.to, "message": "hello?"}))
			if pe := tt.from.errorOf(); pe.Code != tt.code || pe.ID != "dm-"+tt.to {
				t.Errorf("direct message to %s got %+v; want %s", tt.to, pe, tt.code)
			}
		})
	}
	alice.say("marker 2")
	for _, p := range []*peer{carol, guest, bobB, bobC, alice2} {
		p.untilMessage("marker 2", "direct_message")
	}

	// Logins are unique ignoring case, so "BOB" is bob too.
	alice.sendJSON("send_direct", map[string]string{"to": "BOB", "message": "shouting"})
	for i, p := range []*peer{bobB, bobC, alice} {
		if d := p.directOf(); d.From != "alice" || d.Message != "shouting" {
			t.Errorf("connection %d got %+v; want alice's message to BOB", i, d)
		}
	}
	alice.sendJSON("send_direct", map[string]string{"to": "Alice", "message": "me"})
	if pe := alice.errorOf(); pe.Code != errBadPayload {
		t.Errorf("direct message to Alice from alice got %+v; want %s", pe, errBadPayload)
	}
}

// TestClusterModTombstone: a moderator on A deletes message 2. Live
// members on B and C get message_deleted; a client joining on C, a client
// recovering on B with since and epoch, and a client of a node started
// after the delete all get new_message with deleted:true and no text.
func TestClusterModTombstone(t *testing.T) {
	c := newModCluster(t, 3, Config{})
	a, b, cn := c.nodes[0], c.nodes[1], c.nodes[2]
	mo := c.user(a, "mo", "lobby")
	bob := c.user(b, "bob", "lobby")
	carol := c.user(cn, "carol", "lobby")
	const secret = "my password is hunter2"
	for _, m := range []string{"one", secret, "three"} {
		mo.say(m)
	}
	sent := mo.messagesOf(3)
	bob.messagesOf(3)
	carol.messagesOf(3)
	epoch := sent[0].Epoch

	n := mo.mod("delete_message", map[string]any{"seq": 2})
	if n.Action != "delete" || n.Seq != 2 || n.Room != "lobby" {
		t.Fatalf("delete confirmed as %+v", n)
	}
	for who, p := range map[string]*peer{"bob on B": bob, "carol on C": carol} {
		var d deletedPayload
		p.skipUntil("message_deleted").decode(t, &d)
		if d.Room != "lobby" || d.Seq != 2 || d.Epoch != epoch || d.By != "mo" {
			t.Errorf("%s got message_deleted %+v; want lobby seq 2 epoch %s by mo", who, d, epoch)
		}
	}

	// check fails unless hist is 1, 2 (deleted, no text), 3 from start.
	check := func(who string, hist []messagePayload, start uint64) {
		t.Helper()
		checkRun(t, who, hist, start, epoch)
		if len(hist) != int(4-start) {
			t.Fatalf("%s: %d messages %v; want seqs %d to 3", who, len(hist), seqs(hist), start)
		}
		for _, m := range hist {
			if m.Message == secret {
				t.Errorf("%s: message 2 replayed with its text", who)
			}
			if m.Seq == 2 && (!m.Deleted || m.By != "mo" || m.Message != "" || m.From != "" || m.Time != "") {
				t.Errorf("%s: message 2 replayed as %+v; want deleted by mo, no from, text or time", who, m)
			}
			if m.Seq != 2 && m.Deleted {
				t.Errorf("%s: message %d replayed as deleted", who, m.Seq)
			}
		}
	}
	newcomer := cn.dial(t, "ticket", cn.login(t, "dave", modPassword), "room", "lobby")
	newcomer.skipUntil("room_changed")
	check("dave joining on C", newcomer.historyOf(), 1)

	back := b.dial(t, "ticket", b.login(t, "alice", modPassword), "room", "lobby",
		"since", "1", "epoch", epoch)
	back.skipUntil("room_changed")
	check("alice recovering on B", back.historyOf(), 2)
	var rec recoveryPayload
	back.skipUntil("recovery").decode(t, &rec)
	if !rec.Recovered {
		t.Errorf("recovery = %+v; want recovered", rec)
	}

	// A node that was not there: the tombstone comes from the bucket,
	// the message from the stream.
	d := c.addNode()
	late := d.dial(t, "ticket", d.login(t, "carol", modPassword), "room", "lobby")
	late.skipUntil("room_changed")
	check("carol on a new node", late.historyOf(), 1)
}

// TestClusterModSlowMode: slow mode set on A binds a sender on B: the
// second message within the interval is refused with slow_mode and a
// retry_after_ms, and so is one from the sender's connection on C, which
// counts the message C saw come from B, and one from a second connection
// on B (bob too: a login is one member). Moderators are exempt.
func TestClusterModSlowMode(t *testing.T) {
	c := newModCluster(t, 3, Config{})
	a, b, cn := c.nodes[0], c.nodes[1], c.nodes[2]
	mo := c.user(a, "mo", "lobby")
	bob := c.user(b, "bob", "lobby")
	bobC := c.user(cn, "bob", "lobby")
	bob2, rp := b.joined(t, "ticket", b.login(t, "bob", modPassword), "room", "lobby")
	if rp.Name != "bob" {
		t.Fatalf("bob's second connection on B is %q; want bob", rp.Name)
	}

	n := mo.mod("slow_mode", map[string]any{"interval": "1h"})
	if n.Action != "slow_mode" || n.Interval != "1h" {
		t.Fatalf("slow mode confirmed as %+v", n)
	}
	for _, p := range []*peer{bob, bobC, bob2} {
		if got := p.notice("slow_mode"); got.Interval != "1h" || got.By != "mo" {
			t.Fatalf("bob's room notice %+v; want slow mode 1h by mo", got)
		}
	}
	bob.say("first")
	bob.untilMessage("first", "error")
	bobC.untilMessage("first", "error") // C has counted it
	bob2.untilMessage("first", "error")
	for who, p := range map[string]*peer{"on B": bob, "on C": bobC, "again on B": bob2} {
		p.sendRaw(modFrame(t, "send_message", "s2", map[string]string{"message": "second"}))
		pe := p.errorOf()
		if pe.Code != errSlowMode || pe.RetryAfterMS <= 0 || pe.RetryAfterMS > time.Hour.Milliseconds()+1 || pe.ID != "s2" {
			t.Errorf("bob's second message %s got %+v; want %s with a retry_after_ms up to 1h", who, pe, errSlowMode)
		}
	}
	mo.say("mods are exempt")
	mo.say("twice")
	mo.untilMessage("twice", "error")
}

// TestClusterModKick: a kick on A closes the user's connections on B and
// C with 4000, a room kick by a moderator and a server-wide one through
// the API alike, and the confirmation counts them all, bob's second
// connection on B included; the name binds in any case. A kick of someone
// who is not there is answered no_such_user (404 through the API).
func TestClusterModKick(t *testing.T) {
	c := newModCluster(t, 3, Config{})
	a, b, cn := c.nodes[0], c.nodes[1], c.nodes[2]
	mo := c.user(a, "mo", "lobby")

	byMod := func(t *testing.T, name string) (modNotice, string) {
		mo.sendRaw(modFrame(t, "kick", "k-"+name, map[string]any{"name": name, "reason": "calm down"}))
		for {
			switch e := mo.next(); e.Type {
			case "error":
				var pe protoError
				e.decode(t, &pe)
				return modNotice{}, pe.Code
			case "moderation":
				var n modNotice
				e.decode(t, &n)
				if n.ID == "k-"+name {
					return n, ""
				}
			}
		}
	}
	byAPI := func(t *testing.T, name string) (modNotice, string) {
		status, body := a.api(t, "POST", "/api/kick", testKey, fmt.Sprintf(`{"name":%q,"reason":"calm down","by":"ad"}`, name))
		var n modNotice
		if status != http.StatusOK {
			var e struct{ Code string }
			decodeJSONBody(t, body, &e)
			if status != http.StatusNotFound {
				t.Errorf("kick through the API = %d %s; want 200 or 404", status, body)
			}
			return n, e.Code
		}
		decodeJSONBody(t, body, &n)
		return n, ""
	}
	tests := []struct {
		name   string
		target string                                              // as A shows it
		kick   func(t *testing.T, name string) (modNotice, string) // on A; the error code
		reason string
	}{
		{"moderator in the room", "bob", byMod, "kicked from lobby by mo: calm down"},
		{"API server-wide", "bob", byAPI, "kicked by ad: calm down"},
		{"moderator, the name in another case", "BOB", byMod, "kicked from lobby by mo: calm down"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			bobB := c.user(b, "bob", "lobby")
			bobC := c.user(cn, "bob", "lobby")
			bobB2, rp := b.joined(t, "ticket", b.login(t, "bob", modPassword), "room", "lobby")
			if rp.Name != "bob" {
				t.Fatalf("bob's second connection on B is %q; want bob", rp.Name)
			}
			n, code := tt.kick(t, tt.target)
			closed := map[string]*peer{"on B": bobB, "on C": bobC, "again on B": bobB2}
			if code != "" || n.Action != "kick" || n.Kicked != len(closed) {
				t.Errorf("kick of %s: %+v, error %q; want confirmed, %d connections", tt.target, n, code, len(closed))
			}
			for who, p := range closed {
				if code, reason := p.closeFrame(10 * time.Second); code != closeKicked || reason != tt.reason {
					t.Errorf("bob's connection %s closed with %d %q; want %d %q", who, code, reason, closeKicked, tt.reason)
				}
			}
			if _, code := tt.kick(t, "nobody"); code != errNoSuchUser {
				t.Errorf("kick of nobody: error %q; want %s", code, errNoSuchUser)
			}
		})
	}
}

// TestClusterModPersistence: bans live in the JetStream bucket, so a node
// that starts after one was made enforces it. A short ban stops applying
// on every node when it ends, and the sweep removes it from the bucket.
func TestClusterModPersistence(t *testing.T) {
	c := newModCluster(t, 2, Config{ModerationSweep: 100 * time.Millisecond})
	mo := c.user(c.nodes[0], "mo", "lobby")
	ad := c.user(c.nodes[0], "ad", "lobby")
	long := mo.mod("ban", map[string]any{"name": "bob", "duration": "1h", "reason": "spam"})
	short := ad.mod("ban", map[string]any{"name": "dave", "duration": "3s", "server": true})
	end, err := time.Parse(timeLayout, short.Until)
	if err != nil {
		t.Fatalf("short ban's until %q: %v", short.Until, err)
	}
	// dave is out everywhere until the short ban ends (the node that made
	// it holds it at once; the other as soon as the bucket tells it).
	eventually(t, "every node refuses dave", func() bool {
		for _, s := range c.nodes {
			p, _, err := s.tryDial("ticket", s.login(t, "dave", modPassword))
			if err == nil {
				p.conn.Close()
				return false
			}
		}
		return true
	})
	if time.Now().After(end) {
		t.Fatal("the short ban ended before every node refused dave; the machine is too slow for this test")
	}

	fresh := c.addNode()
	status, body := dialRefused(t, fresh, "ticket", fresh.login(t, "bob", modPassword), "room", "lobby")
	if status != http.StatusForbidden || !strings.Contains(body, "banned from lobby") {
		t.Errorf("bob on the new node: %d %q; want 403, banned from lobby", status, body)
	}
	bobLate := c.user(fresh, "bob", "elsewhere") // the ban is lobby's only
	bobLate.sendJSON("change_room", map[string]string{"name": "lobby"})
	if pe := bobLate.errorOf(); pe.Code != errBanned || pe.Until != long.Until {
		t.Errorf("bob joining lobby on the new node got %+v; want %s until %s", pe, errBanned, long.Until)
	}

	// Once it ends dave is in everywhere, the new node included: the end
	// is in the record, so no node waits for the sweep.
	time.Sleep(time.Until(end.Add(time.Millisecond))) // until is cut to the millisecond
	for _, s := range c.nodes {
		c.user(s, "dave", "lobby")
	}

	// The sweep takes the expired ban out of the bucket; the long one stays.
	kv, err := c.brs[0].bucket(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	eventually(t, "the expired ban leaves the bucket", func() bool {
		_, err := kv.Get(context.Background(), "ban.server.dave")
		return errors.Is(err, jetstream.ErrKeyNotFound)
	})
	if _, err := kv.Get(context.Background(), "ban.room.lobby.bob"); err != nil {
		t.Errorf("bob's ban in the bucket: %v; want it kept", err)
	}
}

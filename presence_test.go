package main

import (
	"fmt"
	"net/url"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gorilla/websocket"
)

// presenceUntil reads p's events until the room message marker and
// returns the presence events before it. The hub handles requests in
// order, so a presence event caused before the marker was sent arrives
// before it.
func presenceUntil(t *testing.T, p *peer, marker string) []presencePayload {
	t.Helper()
	var got []presencePayload
	for {
		switch e := p.next(); e.Type {
		case "presence":
			var pp presencePayload
			e.decode(t, &pp)
			got = append(got, pp)
		case "new_message":
			if e.msg(t).Message == marker {
				return got
			}
		}
	}
}

// TestPresenceCountsUsers: a logged-in user is one member of a room
// whatever its connections: it joins with the first, speaks under its
// login from each, and leaves with the last. A guest asking for a name in
// use gets a free variant of it.
func TestPresenceCountsUsers(t *testing.T) {
	s := modServer(t, Config{})
	dave := s.as(t, "dave", "lobby", false)
	tab1 := s.as(t, "carol", "lobby", false)
	dave.waitPresence("join", "carol")
	tab2, rp := s.joined(t, "room", "lobby", "ticket", s.login(t, "carol", "pw"))
	if rp.Name != "carol" || rp.Count != 2 || !slices.Equal(rp.Members, []string{"carol", "dave"}) {
		t.Errorf("carol's second tab: room_changed %+v; want carol, 2 members", rp)
	}
	dave.say("m1")
	if got := presenceUntil(t, dave, "m1"); len(got) != 0 {
		t.Errorf("a second tab brought presence events %+v; want none", got)
	}
	tab2.say("from tab two")
	if m := dave.skipUntil("new_message").msg(t); m.From != "carol" {
		t.Errorf("the second tab speaks as %q; want carol", m.From)
	}
	if got := dave.members(); got.Count != 2 {
		t.Errorf("members count %d with two of carol's tabs; want 2", got.Count)
	}
	code, body := s.api(t, "GET", "/api/rooms", testKey, "")
	if code != 200 || !strings.Contains(body, `"members":2`) {
		t.Errorf("GET /api/rooms: %d %s; want lobby with 2 members", code, body)
	}

	tab1.conn.Close()
	tab2.say("still here")
	dave.say("m2")
	if got := presenceUntil(t, dave, "m2"); len(got) != 0 {
		t.Errorf("closing one of two tabs brought %+v; want no leave", got)
	}
	tab2.conn.Close()
	dave.waitPresence("leave", "carol")

	// A guest is one connection: a second one asking for the same name is
	// told and gets a variant.
	s.as(t, "guest-gus", "lobby", false)
	g2 := s.dial(t, "room", "lobby", "name", "guest-gus")
	if e := g2.errorOf(); e.Code != errNameTaken {
		t.Errorf("a second guest-gus: %+v; want name_taken", e)
	}
	var rp2 roomPayload
	g2.expect("room_changed").decode(t, &rp2)
	if rp2.Name != "guest-gus-2" {
		t.Errorf("the second guest is %q; want guest-gus-2", rp2.Name)
	}
}

// TestClusterPresenceCountsUsers: a login with connections on three nodes
// is one member on every node: it joins once, and leaves once, when its
// last connection goes.
func TestClusterPresenceCountsUsers(t *testing.T) {
	c := newModCluster(t, 3, Config{})
	a, b, cn := c.nodes[0], c.nodes[1], c.nodes[2]
	dave := c.user(a, "dave", "lobby")
	watchC := c.user(cn, "mo", "lobby")
	carolA := c.user(a, "carol", "lobby")
	dave.waitPresence("join", "carol")
	watchC.waitPresence("join", "carol")
	carolB := c.user(b, "carol", "lobby")
	carolC := c.user(cn, "carol", "lobby")
	for i, s := range c.nodes {
		eventually(t, "every node counts 3 people", func() bool {
			p := c.user(s, "ad", "attic")
			defer p.conn.Close()
			p.sendJSON("change_room", map[string]string{"name": "lobby"})
			var rp roomPayload
			p.skipUntil("room_changed").decode(t, &rp)
			if rp.Count != 4 { // dave, mo, carol and this ad
				t.Logf("node %d counts %d: %v", i+1, rp.Count, rp.Members)
				return false
			}
			return true
		})
	}
	carolA.conn.Close()
	carolB.conn.Close()
	// Each node tells the others of a change at once; a few presence
	// intervals cover the hand-offs on a slow machine.
	time.Sleep(5 * testInterval)
	carolC.say("marker")
	for i, p := range []*peer{dave, watchC} {
		for _, pp := range presenceUntil(t, p, "marker") {
			if pp.Name == "carol" {
				t.Errorf("watcher %d: carol's presence %+v while one of her tabs is still here", i, pp)
			}
		}
	}
	carolC.conn.Close()
	dave.waitPresence("leave", "carol")
	watchC.waitPresence("leave", "carol")
}

// TestPresenceCount: a room above the presence limit gets no join or
// leave notices but, every presence interval in which it changed, its
// count; once it is back at the limit it is told so once, and its
// notices resume.
func TestPresenceCount(t *testing.T) {
	s := newTestServer(t, Config{PresenceLimit: 2, PresenceInterval: 20 * time.Millisecond})
	watch, _ := s.joined(t, "room", "big", "name", "watch")
	text := s.dial(t, "room", "big", "name", "texter", "format", "text")
	text.lineWith("you are")
	watch.waitPresence("join", "texter")
	third, _ := s.joined(t, "room", "big", "name", "third")
	countOf := func(p *peer) int {
		t.Helper()
		for {
			e := p.next()
			switch e.Type {
			case "presence":
				t.Errorf("presence %s in a room above the limit; want only counts", e.Payload)
			case "presence_count":
				var c countPayload
				e.decode(t, &c)
				if c.Room != "big" {
					t.Errorf("presence_count for %q", c.Room)
				}
				return c.Count
			}
		}
	}
	if n := countOf(watch); n != 3 {
		t.Errorf("count %d; want 3", n)
	}
	if l := text.lineWith("has"); l != "* big has 3 members" {
		t.Errorf("text line %q", l)
	}
	fourth, _ := s.joined(t, "room", "big", "name", "fourth")
	if n := countOf(watch); n != 4 {
		t.Errorf("count %d; want 4", n)
	}
	fourth.conn.Close()
	third.conn.Close()
	for n := countOf(watch); n != 2; n = countOf(watch) { // a tick may fall between the two
		if n != 3 {
			t.Fatalf("count %d while two leave; want 3, then 2", n)
		}
	}
	// At the limit, notices again.
	text.conn.Close()
	watch.waitPresence("leave", "texter")
}

// TestClusterJoinStorm: 3,000 clients join one room across three nodes at
// once. Nobody is dropped, and soon after the last has joined every node
// counts all of them (the room is far above the presence limit, so the
// count is what members see).
func TestClusterJoinStorm(t *testing.T) {
	const perNode, parallel = 1000, 64
	c := newTestCluster(t, 3)
	var observers []*peer
	for i, s := range c.nodes {
		p, _ := s.joined(t, "room", "storm", "name", fmt.Sprintf("observer-%d", i))
		observers = append(observers, p)
	}
	var wg sync.WaitGroup
	var failed atomic.Int64
	conns := make(chan *websocket.Conn, 3*perNode)
	sem := make(chan struct{}, parallel)
	for i := range 3 * perNode {
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			s := c.nodes[i%3]
			q := url.Values{"room": {"storm"}, "name": {fmt.Sprintf("g%d", i)}}
			conn, _, err := websocket.DefaultDialer.Dial(s.wsURL("/ws", q), nil)
			if err != nil {
				failed.Add(1)
				t.Logf("client %d: %v", i, err)
				return
			}
			conns <- conn
		}()
	}
	wg.Wait()
	close(conns)
	if n := failed.Load(); n > 0 {
		t.Fatalf("%d of %d clients could not connect", n, 3*perNode)
	}
	// Every client reads what it is sent, as a live page would, so that
	// nobody falls behind; the test ends them.
	var readers sync.WaitGroup
	var clients []*websocket.Conn
	for conn := range conns {
		clients = append(clients, conn)
		readers.Add(1)
		go func() {
			defer readers.Done()
			for {
				if _, _, err := conn.ReadMessage(); err != nil {
					return
				}
			}
		}()
	}
	t.Cleanup(func() {
		for _, conn := range clients {
			conn.Close()
		}
		readers.Wait()
	})
	joined := time.Now()
	want := 3*perNode + len(observers)
	for i, p := range observers {
		eventually(t, fmt.Sprintf("node %d counts %d", i+1, want), func() bool { return p.members().Count == want })
	}
	// Each node tells the others of a change at once, not at its next
	// heartbeat, so agreement takes far less than the default interval.
	if took := time.Since(joined); took > DefaultConfig().PresenceInterval {
		t.Errorf("the nodes agreed %v after the last join; want within one presence interval (%v)", took, DefaultConfig().PresenceInterval)
	}
	t.Logf("all three nodes counted %d within %v of the last join", want, time.Since(joined).Round(time.Millisecond))
	for i, s := range c.nodes {
		if n := s.hub.stats.slowConsumers.Load(); n != 0 {
			t.Errorf("node %d dropped %d slow consumers", i+1, n)
		}
	}
}

// TestClusterLeaveMarks: a kick or ban made on A of a user on B shows on C
// as a marked leave: B's presence update that drops the user says why, so
// C does not depend on which of the kick and the update reaches it first.
func TestClusterLeaveMarks(t *testing.T) {
	c := newModCluster(t, 3, Config{})
	a, b, cn := c.nodes[0], c.nodes[1], c.nodes[2]
	mo := c.user(a, "mo", "lobby")
	watch := c.user(cn, "dave", "lobby")
	for _, tt := range []struct {
		action string
		banned bool
	}{{"kick", false}, {"ban", true}} {
		c.user(b, "bob", "lobby")
		watch.waitPresence("join", "bob")
		mo.mod(tt.action, map[string]any{"name": "bob", "duration": "1h", "reason": "spam"})
		for {
			var p presencePayload
			watch.skipUntil("presence").decode(t, &p)
			if p.Event != "leave" || p.Name != "bob" {
				continue
			}
			if !p.Kicked || p.Banned != tt.banned || p.By != "mo" || p.Reason != "spam" {
				t.Errorf("%s: C saw the leave %+v; want it marked (banned %v) by mo for spam", tt.action, p, tt.banned)
			}
			break
		}
	}
}

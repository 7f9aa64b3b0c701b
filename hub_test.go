package main

import (
	"context"
	"fmt"
	"net"
	"net/http/httptest"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gorilla/websocket"
)

func TestBroadcastStaysInRoom(t *testing.T) {
	s := newTestServer(t, Config{})
	a, _ := s.joined(t, "room", "red", "name", "alice")
	b, _ := s.joined(t, "room", "red", "name", "bob")
	c, _ := s.joined(t, "room", "blue", "name", "carol")
	a.expect("presence") // bob joined

	a.say("hello red")
	for _, p := range []*peer{a, b} {
		m := p.expect("new_message").msg(t)
		if m.From != "alice" || m.Message != "hello red" || m.Room != "red" || m.ID == 0 || m.Time == "" {
			t.Errorf("got %+v; want alice's hello in red with id and time", m)
		}
	}
	// carol must see nothing from red: the next thing she gets is her own.
	c.say("hello blue")
	if m := c.expect("new_message").msg(t); m.Message != "hello blue" {
		t.Errorf("carol's first message is %q; red leaked into blue", m.Message)
	}
}

func TestSenderCannotForgeFrom(t *testing.T) {
	s := newTestServer(t, Config{})
	a, _ := s.joined(t, "name", "alice")
	a.sendRaw(`{"type":"send_message","payload":{"message":"hi","from":"admin","time":"1999","id":7}}`)
	m := a.expect("new_message").msg(t)
	if m.From != "alice" || m.ID == 7 || strings.HasPrefix(m.Time, "1999") {
		t.Errorf("server accepted client-chosen fields: %+v", m)
	}
}

func TestChangeRoomNotifiesBothRooms(t *testing.T) {
	s := newTestServer(t, Config{})
	a, _ := s.joined(t, "room", "one", "name", "alice")
	stay, _ := s.joined(t, "room", "one", "name", "stay")
	there, _ := s.joined(t, "room", "two", "name", "there")
	a.expect("presence") // stay joined

	a.sendJSON("change_room", map[string]string{"name": "two"})
	var rp roomPayload
	a.expect("room_changed").decode(t, &rp)
	if rp.Room != "two" || rp.Name != "alice" || rp.Count != 2 || strings.Join(rp.Members, ",") != "alice,there" {
		t.Errorf("room_changed = %+v; want two with alice and there", rp)
	}
	var p presencePayload
	stay.expect("presence").decode(t, &p)
	if p != (presencePayload{Room: "one", Event: "leave", Name: "alice"}) {
		t.Errorf("old room saw %+v; want alice leaving one", p)
	}
	there.expect("presence").decode(t, &p)
	if p != (presencePayload{Room: "two", Event: "join", Name: "alice"}) {
		t.Errorf("new room saw %+v; want alice joining two", p)
	}
	a.say("now in two")
	if m := there.expect("new_message").msg(t); m.Room != "two" || m.From != "alice" {
		t.Errorf("there got %+v", m)
	}
	stay.say("ping")
	if m := stay.expect("new_message").msg(t); m.Message != "ping" {
		t.Errorf("stay got %q first; alice's message leaked into one", m.Message)
	}
}

func TestTextCommands(t *testing.T) {
	s := newTestServer(t, Config{})
	j, _ := s.joined(t, "room", "lobby", "name", "jay")
	x := s.dial(t, "format", "text", "name", "tex")
	if l := x.line(); l != "* you are tex in general (1 member: tex)" {
		t.Errorf("greeting %q", l)
	}
	steps := []struct{ send, want string }{
		{"/help", "* commands: /join ROOM"},
		{"/frob", "! unknown command /frob; try /help"},
		{"/join", "! usage: /join ROOM"},
		{"/join bad room!", "! bad room name"},
		{"/join lobby\n", "* you are tex in lobby (2 members: jay, tex)"},
		{"/who", "* members of lobby (2): jay, tex"},
		{"/rooms", "* rooms (1): lobby (2)"},
		{"/nick jay", "! jay is taken in lobby"},
		{"/nick texas", "* tex is now known as texas"},
		{"hello there\r\n", "[lobby] texas: hello there"},
		{"/status", "* you are texas in lobby; epoch "},
		{"   ", "! empty message"},
		{strings.Repeat("x", maxMessageRunes+1), "! message has 401 characters; at most 400"},
	}
	for _, st := range steps {
		x.sendRaw(st.send)
		l := x.lineWith(st.want[:2])
		if !strings.HasPrefix(l, st.want) {
			t.Errorf("after %q got %q; want prefix %q", st.send, l, st.want)
		}
		if st.send == "/status" && !strings.Contains(l, "last seq 1 (reconnect with ?since=1&epoch=") ||
			st.send == "/status" && !strings.HasSuffix(l, "; 2 members: jay, texas") {
			t.Errorf("/status said %q; want the last seq 1, how to resume, and the members", l)
		}
	}
	// jay saw tex arrive, rename and speak, as JSON events.
	var p presencePayload
	j.expect("presence").decode(t, &p)
	if p.Event != "join" || p.Name != "tex" {
		t.Errorf("jay saw %+v; want tex joining", p)
	}
	j.expect("presence").decode(t, &p)
	if p.Event != "rename" || p.Name != "texas" || p.OldName != "tex" {
		t.Errorf("jay saw %+v; want rename tex->texas", p)
	}
	if m := j.expect("new_message").msg(t); m.From != "texas" || m.Message != "hello there" {
		t.Errorf("jay got %+v", m)
	}
}

func TestTextAndJSONClientsTalk(t *testing.T) {
	s := newTestServer(t, Config{})
	j, _ := s.joined(t, "room", "mix", "name", "browser")
	x := s.dial(t, "room", "mix", "format", "text", "name", "term")
	x.lineWith("you are term")
	j.expect("presence")

	x.sendRaw("hi from the terminal\n")
	if m := j.expect("new_message").msg(t); m.From != "term" || m.Message != "hi from the terminal" {
		t.Errorf("browser got %+v", m)
	}
	j.say("hi from the browser")
	j.expect("new_message") // the sender's own copy
	if l := x.lineWith("browser"); l != "[mix] browser: hi from the browser" {
		t.Errorf("terminal got %q", l)
	}
	// A multi-line frame is several messages.
	x.sendRaw("one\ntwo\n")
	for _, want := range []string{"one", "two"} {
		if m := j.expect("new_message").msg(t); m.Message != want {
			t.Errorf("browser got %q; want %q", m.Message, want)
		}
	}
}

func TestDuplicateNameAtConnect(t *testing.T) {
	s := newTestServer(t, Config{})
	s.joined(t, "name", "alice")
	b := s.dial(t, "name", "alice")
	var pe protoError
	b.expect("error").decode(t, &pe)
	if pe.Code != errNameTaken {
		t.Errorf("error %+v; want name_taken", pe)
	}
	var rp roomPayload
	b.expect("room_changed").decode(t, &rp)
	if rp.Name != "alice-2" {
		t.Errorf("second alice is %q; want alice-2", rp.Name)
	}
	// A different room has no alice, so the name is free there.
	_, rp = s.joined(t, "room", "other", "name", "alice")
	if rp.Name != "alice" {
		t.Errorf("alice in other room is %q; want alice", rp.Name)
	}
}

func TestBadInputKeepsConnection(t *testing.T) {
	s := newTestServer(t, Config{})
	a, _ := s.joined(t, "name", "alice")
	bystander, _ := s.joined(t, "name", "bob")
	a.expect("presence")
	tests := []struct {
		name, frame, code string
	}{
		{"not json", `hello`, errBadJSON},
		{"truncated json", `{"type":"send_message"`, errBadJSON},
		{"json array", `[1,2]`, errBadJSON},
		{"two objects", `{"type":"list_rooms"}{"type":"list_rooms"}`, errBadJSON},
		{"unknown type", `{"type":"launch_rockets"}`, errUnknownType},
		{"no type", `{"payload":{}}`, errBadPayload},
		{"no payload", `{"type":"send_message"}`, errBadPayload},
		{"payload wrong type", `{"type":"send_message","payload":"hi"}`, errBadPayload},
		{"message wrong type", `{"type":"send_message","payload":{"message":5}}`, errBadPayload},
		{"missing message", `{"type":"send_message","payload":{}}`, errBadPayload},
		{"empty message", `{"type":"send_message","payload":{"message":""}}`, errEmptyMessage},
		{"whitespace message", `{"type":"send_message","payload":{"message":" \t\n "}}`, errEmptyMessage},
		{"bad room", `{"type":"change_room","payload":{"name":"../etc"}}`, errBadRoom},
		{"empty room", `{"type":"change_room","payload":{"name":""}}`, errBadRoom},
		{"same room", `{"type":"change_room","payload":{"name":"general"}}`, errAlreadyThere},
		{"bad name", `{"type":"change_name","payload":{"name":"a b"}}`, errBadName},
		{"long name", `{"type":"change_name","payload":{"name":"` + strings.Repeat("n", 33) + `"}}`, errBadName},
		{"taken name", `{"type":"change_name","payload":{"name":"bob"}}`, errNameTaken},
	}
	for _, tt := range tests {
		a.sendRaw(tt.frame)
		var pe protoError
		a.expect("error").decode(t, &pe)
		if pe.Code != tt.code || pe.Message == "" {
			t.Errorf("%s: error %+v; want code %s with a message", tt.name, pe, tt.code)
		}
	}
	a.conn.WriteMessage(websocket.BinaryMessage, []byte{1, 2, 3})
	var pe protoError
	a.expect("error").decode(t, &pe)
	if pe.Code != errBinary {
		t.Errorf("binary frame: %+v; want %s", pe, errBinary)
	}

	// Still connected, and bob saw none of it.
	a.say("after all that")
	a.expect("new_message")
	if m := bystander.expect("new_message").msg(t); m.Message != "after all that" {
		t.Errorf("bystander got %q first", m.Message)
	}
}

func TestSlowConsumerDropped(t *testing.T) {
	const atLeast, atMost = 1000, 100000
	s := newTestServer(t, Config{}) // the sender floods on purpose; no rate limit
	sender, _ := s.joined(t, "name", "sender")
	fast, _ := s.joined(t, "name", "fast")
	sender.expect("presence")

	// The slow client never reads. Kernel buffers on both sides absorb a
	// few megabytes first; shrinking them instead makes TCP crawl when
	// the client finally reads its close frame, so the test pays for it
	// in messages.
	slowConn, _, err := websocket.DefaultDialer.Dial(s.wsURL("/ws", map[string][]string{"name": {"slow"}}), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer slowConn.Close()
	slow := &peer{t: t, conn: slowConn}
	sender.expect("presence")
	fast.expect("presence")

	// Everyone else gets every message, in order; they read as it flows.
	var sent atomic.Int64
	var wg sync.WaitGroup
	for _, p := range []*peer{sender, fast} {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; ; {
				e := p.next()
				if e.Type == "presence" { // slow leaving
					continue
				}
				m := e.msg(t)
				if m.Message == "end" {
					if i != int(sent.Load()) {
						t.Errorf("got %d messages before end; want %d", i, sent.Load())
					}
					return
				}
				if !strings.HasPrefix(m.Message, fmt.Sprintf("%d ", i)) {
					t.Errorf("message %d is %q", i, m.Message[:10])
					return
				}
				i++
			}
		}()
	}
	// Send at least 1,000 messages, and on until the slow client is gone;
	// the number it takes depends on kernel socket buffers.
	pad := strings.Repeat("p", 300)
	for sent.Load() < atLeast || s.hub.stats.slowConsumers.Load() == 0 {
		if sent.Load() == atMost {
			t.Fatalf("slow client still connected after %d messages", atMost)
		}
		sender.sendRaw(fmt.Sprintf(`{"type":"send_message","payload":{"message":"%d %s"}}`, sent.Load(), pad))
		// Pace the sender so readers slowed by -race keep up: this test is
		// about one slow reader, not about a flood outrunning the CPU.
		if sent.Add(1)%8 == 0 {
			time.Sleep(time.Millisecond)
		}
	}
	sender.say("end")

	wg.Wait()
	t.Logf("slow client evicted after %d messages", sent.Load())
	if n := s.hub.stats.slowConsumers.Load(); n != 1 {
		t.Errorf("slow consumers = %d; want 1", n)
	}
	// Read what the server managed to queue, then the goodbye.
	if code := slow.closeCode(10 * time.Second); code != websocket.CloseTryAgainLater {
		t.Errorf("slow client close code %d; want 1013", code)
	}
}

func TestJoinStormDropsNobody(t *testing.T) {
	if testing.Short() {
		t.Skip("1,000 connections")
	}
	const n = 1000
	s := newTestServer(t, Config{})
	peers := make([]*peer, n)
	for i := range peers {
		peers[i] = s.dial(t, "room", "crowd", "name", fmt.Sprintf("u%d", i))
	}
	peers[n-1].skipUntil("room_changed")
	peers[n-1].say("everyone?")
	for i, p := range peers {
		if m := p.skipUntil("new_message").msg(t); m.Message != "everyone?" {
			t.Fatalf("peer %d got %q", i, m.Message)
		}
	}
	if d := s.hub.stats.slowConsumers.Load(); d != 0 {
		t.Errorf("%d clients dropped as slow during the join storm; want 0", d)
	}
}

// TestEveryoneSeesEverything is the stress test: N clients each send M
// messages into one room, and every client must see all N*M, each sender's
// in order.
func TestEveryoneSeesEverything(t *testing.T) {
	const clients, each = 20, 50
	s := newTestServer(t, Config{SendQueue: clients * each}) // each sends in one burst
	peers := make([]*peer, clients)
	for i := range peers {
		peers[i], _ = s.joined(t, "room", "stress", "name", fmt.Sprintf("c%d", i))
	}
	var wg sync.WaitGroup
	errs := make(chan error, clients)
	for i, p := range peers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for j := range each {
				p.conn.SetWriteDeadline(time.Now().Add(5 * time.Second))
				msg := fmt.Sprintf(`{"type":"send_message","payload":{"message":"%d:%d"}}`, i, j)
				if err := p.conn.WriteMessage(websocket.TextMessage, []byte(msg)); err != nil {
					errs <- err
					return
				}
			}
		}()
	}
	for i, p := range peers {
		next := make([]int, clients) // next expected j per sender
		for got := 0; got < clients*each; {
			e := p.next()
			if e.Type == "presence" {
				continue
			}
			var from, j int
			if _, err := fmt.Sscanf(e.msg(t).Message, "%d:%d", &from, &j); err != nil {
				t.Fatalf("peer %d: bad message %s", i, e.Payload)
			}
			if j != next[from] {
				t.Fatalf("peer %d: from %d got %d; want %d", i, from, j, next[from])
			}
			next[from]++
			got++
		}
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
}

func TestShutdownSaysGoingAway(t *testing.T) {
	base := runtime.NumGoroutine()
	s := NewServer(Config{}, testLogger(t))
	ts := &testServer{Server: s, ts: newHTTPTest(t, s)}
	a, _ := ts.joined(t, "name", "alice")
	x := ts.dial(t, "format", "text", "name", "term")
	x.lineWith("you are term")
	a.expect("presence")

	a.say("last words")
	a.expect("new_message")
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- s.Shutdown(ctx) }()

	// The message queued before shutdown arrives, then 1001.
	if l := x.line(); l != "[general] alice: last words" {
		t.Errorf("term got %q before close; want alice's last words", l)
	}
	for _, p := range []*peer{a, x} {
		if code := p.closeCode(5 * time.Second); code != websocket.CloseGoingAway {
			t.Errorf("close code %d; want 1001", code)
		}
	}
	if err := <-done; err != nil {
		t.Errorf("Shutdown: %v", err)
	}
	ts.ts.Close()
	a.conn.Close()
	x.conn.Close()
	if n, stacks := settleGoroutines(base, 5*time.Second); n > base {
		t.Errorf("%d goroutines after shutdown; %d before\n%s", n, base, stacks)
	}
	// A second Shutdown is harmless, and new connections are refused.
	if err := s.Shutdown(ctx); err != nil {
		t.Errorf("second Shutdown: %v", err)
	}
}

func TestShutdownDeadlineCutsStuckClients(t *testing.T) {
	s := NewServer(Config{SendQueue: 4096}, testLogger(t))
	ts := &testServer{Server: s, ts: newHTTPTest(t, s)}
	// A client with a tiny receive buffer that never reads: its writer
	// blocks on a full socket, so the graceful drain cannot finish.
	d := websocket.Dialer{NetDial: func(network, addr string) (net.Conn, error) {
		c, err := net.Dial(network, addr)
		if err == nil {
			c.(*net.TCPConn).SetReadBuffer(4096)
		}
		return c, err
	}}
	stuck, _, err := d.Dial(ts.wsURL("/ws", map[string][]string{"name": {"stuck"}}), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer stuck.Close()
	a, _ := ts.joined(t, "name", "alice")
	pad := strings.Repeat("z", 400)
	for i := range 2000 {
		a.sendRaw(fmt.Sprintf(`{"type":"send_message","payload":{"message":"%d %s"}}`, i, pad))
	}
	ctx, cancel := context.WithTimeout(context.Background(), 500*time.Millisecond)
	defer cancel()
	start := time.Now()
	err = s.Shutdown(ctx)
	if err == nil {
		t.Errorf("Shutdown with a stuck client returned nil; want deadline error")
	}
	if el := time.Since(start); el > 3*time.Second {
		t.Errorf("Shutdown took %v; want about the 500ms deadline", el)
	}
}

// newHTTPTest serves s on loopback for a test that manages Shutdown itself.
func newHTTPTest(t *testing.T, s *Server) *httptest.Server {
	ts := httptest.NewServer(s.routes())
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		s.Shutdown(ctx)
		ts.Close()
	})
	return ts
}

// TestActionMessages: /me and "action":true send an action message, which
// is numbered and kept like any message, reaches JSON clients marked
// action and reads "* name waves" in the text format, live and replayed.
func TestActionMessages(t *testing.T) {
	s := newTestServer(t, deployed(Config{}))
	j, _ := s.joined(t, "room", "lobby", "name", "jay")
	x := s.dial(t, "format", "text", "name", "tex", "room", "lobby")
	x.lineWith("you are tex")
	j.skipUntil("presence")

	x.sendRaw("/me waves")
	if l := x.lineWith("[lobby]"); l != "[lobby] * tex waves" {
		t.Errorf("text sender saw %q; want [lobby] * tex waves", l)
	}
	if m := j.expect("new_message").msg(t); !m.Action || m.Message != "waves" || m.From != "tex" {
		t.Errorf("JSON client got %+v; want tex's action waves", m)
	}
	j.sendJSON("send_message", map[string]any{"message": "nods", "action": true})
	if l := x.lineWith("[lobby]"); l != "[lobby] * jay nods" {
		t.Errorf("text client saw %q; want [lobby] * jay nods", l)
	}
	j.say("plain")
	if m := j.skipUntil("new_message").msg(t); !m.Action || m.Message != "nods" {
		t.Errorf("jay's own action came back as %+v", m)
	}
	if m := j.skipUntil("new_message").msg(t); m.Action {
		t.Errorf("a plain message came back marked action: %+v", m)
	}
	// Replayed, the action keeps its form.
	y := s.dial(t, "format", "text", "name", "late", "room", "lobby")
	if l := y.lineWith("(history) * "); l != "[lobby] (history) * tex waves" {
		t.Errorf("replay %q; want [lobby] (history) * tex waves", l)
	}
}

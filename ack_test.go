package main

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"
)

// sendID sends a chat message with event id id.
func (p *peer) sendID(msg, id string) {
	p.t.Helper()
	p.sendRaw(fmt.Sprintf(`{"type":"send_message","id":%q,"payload":{"message":%q}}`, id, msg))
}

// ack reads events until an ack arrives and returns it.
func (p *peer) ack() ackPayload {
	p.t.Helper()
	var a ackPayload
	p.skipUntil("ack").decode(p.t, &a)
	return a
}

func TestEventIDs(t *testing.T) {
	s := newTestServer(t, Config{})
	p, _ := s.joined(t, "room", "ids", "name", "idy")
	tests := []struct {
		name    string
		frame   string
		want    string // event type of the reply
		wantID  string // "" for none
		errCode string // for want == "error"
	}{
		{"send_message", `{"type":"send_message","id":"m-1","payload":{"message":"hi"}}`, "ack", "m-1", ""},
		{"every allowed character", `{"type":"send_message","id":"aZ09_.:-","payload":{"message":"hi"}}`, "ack", "aZ09_.:-", ""},
		{"64 characters", `{"type":"send_message","id":"` + strings.Repeat("x", 64) + `","payload":{"message":"hi"}}`, "ack", strings.Repeat("x", 64), ""},
		{"list_members", `{"type":"list_members","id":"w1"}`, "members", "w1", ""},
		{"list_rooms", `{"type":"list_rooms","id":"r1"}`, "rooms", "r1", ""},
		{"change_name", `{"type":"change_name","id":"n1","payload":{"name":"idy2"}}`, "presence", "n1", ""},
		{"change_room", `{"type":"change_room","id":"c1","payload":{"name":"ids2"}}`, "room_changed", "c1", ""},
		{"an error answers with the id", `{"type":"send_message","id":"e1","payload":{"message":"   "}}`, "error", "e1", errEmptyMessage},
		{"unknown event with an id", `{"type":"dance","id":"u1"}`, "error", "u1", errUnknownType},
		{"65 characters", `{"type":"send_message","id":"` + strings.Repeat("x", 65) + `","payload":{"message":"hi"}}`, "error", "", errBadID},
		{"empty", `{"type":"send_message","id":"","payload":{"message":"hi"}}`, "error", "", errBadID},
		{"space", `{"type":"list_rooms","id":"a b"}`, "error", "", errBadID},
		{"slash", `{"type":"list_rooms","id":"a/b"}`, "error", "", errBadID},
		{"not a string", `{"type":"list_rooms","id":17}`, "error", "", errBadID},
		{"unicode", `{"type":"change_room","id":"é","payload":{"name":"x"}}`, "error", "", errBadID},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p.t = t
			p.sendRaw(tt.frame)
			e := p.skipUntil(tt.want)
			var got struct {
				ID   string `json:"id"`
				Code string `json:"code"`
			}
			e.decode(t, &got)
			if got.ID != tt.wantID || got.Code != tt.errCode {
				t.Errorf("%s reply %s; want id %q code %q", tt.want, e.Payload, tt.wantID, tt.errCode)
			}
		})
	}
	p.t = t
	// Text clients cannot give ids, and a message without one gets no ack.
	p.say("no id")
	p.skipUntil("new_message")
	p.sendJSON("list_members", nil)
	if e := p.next(); e.Type != "members" {
		t.Errorf("after a message without an id the next event is %s; want members (no ack)", e.Type)
	}
}

func TestAckAndDuplicate(t *testing.T) {
	s := newTestServer(t, deployed(Config{}))
	a, rc := s.joined(t, "room", "dup", "name", "alice")
	if rc.Seq == nil || *rc.Seq != 0 || rc.Epoch == "" {
		t.Fatalf("room_changed of a new room: seq %v epoch %q; want seq 0 and an epoch", rc.Seq, rc.Epoch)
	}
	watch, _ := s.joined(t, "room", "dup", "name", "watch")
	a.skipUntil("presence")

	a.sendID("hello", "m-1")
	ack := a.ack()
	if ack.ID != "m-1" || ack.Room != "dup" || ack.Seq != 1 || ack.Epoch != rc.Epoch || ack.Duplicate {
		t.Fatalf("ack %+v; want m-1 in dup, seq 1, epoch %s, not a duplicate", ack, rc.Epoch)
	}
	// The same id again: acked with the same seq, marked, not delivered.
	a.sendID("hello", "m-1")
	if again := a.ack(); again.Seq != 1 || !again.Duplicate || again.ID != "m-1" {
		t.Errorf("repeat's ack %+v; want seq 1, duplicate", again)
	}
	a.sendID("next", "m-2")
	if n := a.ack(); n.Seq != 2 || n.Duplicate {
		t.Errorf("new id's ack %+v; want seq 2", n)
	}
	for _, want := range []string{"hello", "next"} {
		if m := watch.skipUntil("new_message").msg(t); m.Message != want {
			t.Fatalf("watcher got %q; want %q (each message once)", m.Message, want)
		}
	}

	// Another sender may use the same id: ids are per sender.
	b, _ := s.joined(t, "room", "dup", "name", "bob")
	b.sendID("bob's", "m-1")
	if ack := b.ack(); ack.Seq != 3 || ack.Duplicate {
		t.Errorf("bob's m-1 ack %+v; want seq 3, new", ack)
	}
	if m := watch.skipUntil("new_message").msg(t); m.Message != "bob's" {
		t.Fatalf("watcher got %q; want bob's message", m.Message)
	}

	// A sender that reconnects — even if its old connection still holds
	// its name, so it is called alice-2 now — resends under the identity
	// it asked for, and is told its message is already there.
	a2, rc2 := s.joined(t, "room", "dup", "name", "alice")
	if rc2.Name != "alice-2" {
		t.Fatalf("second alice is %q; want alice-2 while the first is connected", rc2.Name)
	}
	if rc2.Seq == nil || *rc2.Seq != 3 {
		t.Errorf("room_changed seq %v; want 3, the room's last", rc2.Seq)
	}
	a2.sendID("next", "m-2")
	if again := a2.ack(); again.Seq != 2 || !again.Duplicate {
		t.Errorf("resend after reconnect: ack %+v; want seq 2, duplicate", again)
	}
	watch.sendJSON("list_members", nil)
	for e := watch.next(); e.Type != "members"; e = watch.next() {
		if e.Type == "new_message" {
			t.Errorf("watcher got %s after the resend; want no second copy", e.Payload)
		}
	}
}

func TestDedupeWindow(t *testing.T) {
	s := newTestServer(t, deployed(Config{DedupeWindow: 200 * time.Millisecond}))
	a, _ := s.joined(t, "room", "win", "name", "alice")
	a.sendID("once", "w-1")
	first := a.ack()
	time.Sleep(300 * time.Millisecond)
	// Past the window the id is forgotten: the message is a new one.
	a.sendID("once", "w-1")
	if again := a.ack(); again.Duplicate || again.Seq != first.Seq+1 {
		t.Errorf("after the window: ack %+v; want a new message, seq %d", again, first.Seq+1)
	}
}

func TestSentLogBounds(t *testing.T) {
	l := newSentLog(time.Minute)
	now := time.Unix(1000, 0)
	for i := range maxRemembered + 10 {
		s := l.add(msgKey{"r", fmt.Sprint(i)}, now)
		s.done = true
	}
	if n := l.len(); n != maxRemembered {
		t.Errorf("remembers %d ids; want at most %d", n, maxRemembered)
	}
	if l.lookup(msgKey{"r", "0"}, now) != nil || l.lookup(msgKey{"r", fmt.Sprint(maxRemembered + 9)}, now) == nil {
		t.Error("the oldest ids should go first")
	}
	// An id still in flight outlives the window: its sender must hear.
	inflight := l.add(msgKey{"r", "flying"}, now)
	if l.lookup(msgKey{"r", "flying"}, now.Add(2*time.Minute)) != inflight {
		t.Error("an in-flight id was forgotten at the window's end")
	}
	if n := l.len(); n != 1 {
		t.Errorf("after the window %d ids remain; want only the one in flight", n)
	}
}

func TestAPIIdempotencyKey(t *testing.T) {
	s := newTestServer(t, deployed(Config{APIKey: "k"}))
	w, rc := s.joined(t, "room", "ops", "name", "w")
	post := func(key, msg string) (int, apiResult, string) {
		t.Helper()
		req, _ := http.NewRequest("POST", s.ts.URL+"/api/rooms/ops/messages", strings.NewReader(`{"message":"`+msg+`","from":"ci"}`))
		req.Header.Set("Authorization", "Bearer k")
		if key != "" {
			req.Header.Set("Idempotency-Key", key)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var b strings.Builder
		var res apiResult
		body := readAll(t, resp)
		b.WriteString(body)
		decodeJSONBody(t, body, &res)
		return resp.StatusCode, res, b.String()
	}
	status, first, body := post("deploy-42", "deployed")
	if status != 200 || first.Seq != 1 || first.Epoch != rc.Epoch || first.Duplicate || first.Recipients != 1 {
		t.Fatalf("publish = %d %s; want 200 with seq 1, epoch %s, 1 recipient", status, body, rc.Epoch)
	}
	status, again, body := post("deploy-42", "deployed")
	if status != 200 || again.Seq != 1 || !again.Duplicate {
		t.Errorf("repeat = %d %s; want 200, seq 1, duplicate", status, body)
	}
	if _, plain, body := post("", "plain"); plain.Seq != 2 || plain.Duplicate {
		t.Errorf("publish without a key = %s; want seq 2", body)
	}
	for _, want := range []string{"deployed", "plain"} {
		if m := w.skipUntil("new_message").msg(t); m.Message != want {
			t.Fatalf("member got %q; want %q (the repeat not again)", m.Message, want)
		}
	}
	if status, _, body := post("bad key!", "x"); status != http.StatusBadRequest || !strings.Contains(body, "Idempotency-Key") {
		t.Errorf("bad key = %d %s; want 400 naming the header", status, body)
	}
	// A room with no members on one node keeps nothing: seq 0.
	req, _ := http.NewRequest("POST", s.ts.URL+"/api/rooms/empty/messages", strings.NewReader(`{"message":"void"}`))
	req.Header.Set("Authorization", "Bearer k")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	var res apiResult
	decodeJSONBody(t, readAll(t, resp), &res)
	resp.Body.Close()
	if res.Seq != 0 || res.Recipients != 0 {
		t.Errorf("publish to an empty room = %+v; want seq 0, no recipients", res)
	}
}

// TestDurableAckWaitsForDisk holds the store's commits: a message is then
// neither broadcast nor acked, and both happen once the commit is done.
func TestDurableAckWaitsForDisk(t *testing.T) {
	release := make(chan struct{})
	srv, err := Open(Config{DataDir: t.TempDir(), History: 10}, testLogger(t))
	if err != nil {
		t.Fatal(err)
	}
	srv.hub.history.store.holdCommits(release)
	s := serveTest(t, srv, testLogger(t), nil)
	a, _ := s.joined(t, "room", "d", "name", "alice")
	b, _ := s.joined(t, "room", "d", "name", "bob")
	a.skipUntil("presence")
	a.sendID("on disk first", "d-1")
	// Replies queue behind whatever the hub sent before them: a members
	// reply first means nothing was broadcast or acked yet.
	for _, p := range []*peer{a, b} {
		p.sendJSON("list_members", nil)
		if e := p.next(); e.Type != "members" {
			t.Fatalf("before the commit %s got %s %s; want its members reply first", p.conn.LocalAddr(), e.Type, e.Payload)
		}
	}
	close(release)
	if m := b.skipUntil("new_message").msg(t); m.Message != "on disk first" || m.Seq != 1 {
		t.Errorf("after the commit bob got %+v; want the message, seq 1", m)
	}
	if ack := a.ack(); ack.Seq != 1 || ack.ID != "d-1" {
		t.Errorf("after the commit alice's ack %+v; want d-1, seq 1", ack)
	}
}

// readAll reads an HTTP response body.
func readAll(t *testing.T, resp *http.Response) string {
	t.Helper()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// decodeJSONBody decodes a JSON response body into v.
func decodeJSONBody(t *testing.T, body string, v any) {
	t.Helper()
	if err := json.Unmarshal([]byte(body), v); err != nil {
		t.Fatalf("response %q: %v", body, err)
	}
}

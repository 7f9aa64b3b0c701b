package main

import (
	"bytes"
	"cmp"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"testing"
	"time"
)

// historyPayload is the payload of the history event.
type historyPayload struct {
	Room     string           `json:"room"`
	Epoch    string           `json:"epoch"`
	Messages []messagePayload `json:"messages"`
}

// history reads the next event, which must be history, and decodes it.
func (p *peer) history() historyPayload {
	p.t.Helper()
	var hp historyPayload
	p.expect("history").decode(p.t, &hp)
	return hp
}

// recovery reads the next event, which must be recovery, and decodes it.
func (p *peer) recovery() recoveryPayload {
	p.t.Helper()
	var rp recoveryPayload
	p.expect("recovery").decode(p.t, &rp)
	return rp
}

// seqs lists the seqs of msgs.
func seqs(msgs []messagePayload) []uint64 {
	out := make([]uint64, len(msgs))
	for i, m := range msgs {
		out[i] = m.Seq
	}
	return out
}

// seqRange returns from, from+1, …, to (nil when to < from).
func seqRange(from, to uint64) []uint64 {
	var out []uint64
	for s := from; s <= to; s++ {
		out = append(out, s)
	}
	return out
}

// post sends n messages "prefix0".."prefix{n-1}" from p and reads back its
// own copies, so they are all recorded when post returns. It returns the
// last one.
func (p *peer) post(prefix string, n int) messagePayload {
	p.t.Helper()
	for i := range n {
		p.say(prefix + strconv.Itoa(i))
	}
	var m messagePayload
	for range n {
		m = p.skipUntil("new_message").msg(p.t)
	}
	return m
}

// resume dials with since/epoch and returns the history and recovery that
// follow room_changed.
func (s *testServer) resume(t *testing.T, room, name string, since uint64, epoch string) (*peer, historyPayload, recoveryPayload) {
	t.Helper()
	p := s.dial(t, "room", room, "name", name, "since", strconv.FormatUint(since, 10), "epoch", epoch)
	p.expect("room_changed")
	return p, p.history(), p.recovery()
}

func TestRoomLogRing(t *testing.T) {
	tests := []struct {
		name      string
		size      int
		add       []uint64
		wantLast  uint64
		wantFirst uint64
		want      []uint64
	}{
		{"empty", 3, nil, 0, 1, nil},
		{"partial", 3, []uint64{1, 2}, 2, 1, []uint64{1, 2}},
		{"full", 3, []uint64{1, 2, 3}, 3, 1, []uint64{1, 2, 3}},
		{"wrapped", 3, seqRange(1, 7), 7, 5, []uint64{5, 6, 7}},
		{"duplicate ignored", 3, []uint64{1, 2, 2, 1, 3}, 3, 1, []uint64{1, 2, 3}},
		{"hole clears", 5, []uint64{1, 2, 3, 9, 10}, 10, 9, []uint64{9, 10}},
		{"loaded mid-history", 3, []uint64{41, 42}, 42, 41, []uint64{41, 42}},
		{"history off", 0, []uint64{1, 2, 3}, 3, 4, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			l := &roomLog{room: "r"}
			for _, s := range tt.add {
				l.add(s, &outbound{}, tt.size)
			}
			var got []uint64
			for i := range l.count() {
				got = append(got, l.at(i).seq)
			}
			if l.last != tt.wantLast || l.first() != tt.wantFirst || fmt.Sprint(got) != fmt.Sprint(tt.want) {
				t.Errorf("after %v: last %d first %d kept %v; want %d %d %v",
					tt.add, l.last, l.first(), got, tt.wantLast, tt.wantFirst, tt.want)
			}
		})
	}
}

func TestParseResume(t *testing.T) {
	tests := []struct {
		query   string
		want    *resumePoint
		wantErr string
	}{
		{"", nil, ""},
		{"since=0&epoch=ABC", &resumePoint{0, "ABC"}, ""},
		{"since=18446744073709551615&epoch=a-b_c", &resumePoint{1<<64 - 1, "a-b_c"}, ""},
		{"since=5", nil, "give both"},
		{"epoch=ABC", nil, "give both"},
		{"since=-1&epoch=ABC", nil, "bad since"},
		{"since=%2B1&epoch=ABC", nil, "bad since"},
		{"since=1e3&epoch=ABC", nil, "bad since"},
		{"since=18446744073709551616&epoch=ABC", nil, "bad since"},
		{"since=1&epoch=a%20b", nil, "bad epoch"},
		{"since=1&epoch=" + strings.Repeat("e", 65), nil, "bad epoch"},
	}
	for _, tt := range tests {
		q, err := url.ParseQuery(tt.query)
		if err != nil {
			t.Fatal(err)
		}
		got, err := parseResume(q)
		switch {
		case tt.wantErr != "":
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Errorf("parseResume(%q) error %v; want one saying %q", tt.query, err, tt.wantErr)
			}
		case err != nil:
			t.Errorf("parseResume(%q): %v", tt.query, err)
		case fmt.Sprint(got) != fmt.Sprint(tt.want):
			t.Errorf("parseResume(%q) = %v; want %v", tt.query, got, tt.want)
		}
	}
}

func TestResumeParamsRejected(t *testing.T) {
	s := newTestServer(t, Config{})
	for _, kv := range [][]string{
		{"since", "x", "epoch", "E"},
		{"since", "1"},
		{"since", "1", "epoch", "<e>"},
	} {
		_, resp, err := s.tryDial(kv...)
		if err == nil || resp == nil || resp.StatusCode != http.StatusBadRequest {
			t.Errorf("dial %v: err %v, response %v; want 400", kv, err, resp)
			continue
		}
		body, _ := io.ReadAll(resp.Body)
		if !strings.Contains(string(body), "bad since") && !strings.Contains(string(body), "bad epoch") {
			t.Errorf("dial %v: 400 body %q does not say what was bad", kv, body)
		}
	}
}

func TestMessageCarriesSeqAndEpoch(t *testing.T) {
	s := newTestServer(t, Config{})
	a, _ := s.joined(t, "room", "one", "name", "alice")
	b, _ := s.joined(t, "room", "two", "name", "bob")
	var epochA string
	for i := range 3 {
		a.say("a")
		m := a.expect("new_message").msg(t)
		if m.Seq != uint64(i+1) || m.Epoch == "" || (epochA != "" && m.Epoch != epochA) {
			t.Errorf("message %d in one: seq %d epoch %q; want seq %d, one stable epoch", i, m.Seq, m.Epoch, i+1)
		}
		epochA = m.Epoch
	}
	// Another room counts on its own, under its own epoch.
	b.say("b")
	if m := b.expect("new_message").msg(t); m.Seq != 1 || m.Epoch == epochA {
		t.Errorf("first message in two: seq %d epoch %q; want 1 and an epoch other than %q", m.Seq, m.Epoch, epochA)
	}
	// The encoded payload is found where history slices it out.
	o := encodeMessage(messagePayload{ID: 1, Seq: 2, Epoch: "E", Room: "r", From: "f", Message: "}{"})
	if !bytes.HasPrefix(o.json, []byte(msgEventPrefix)) {
		t.Fatalf("new_message JSON %s does not start with %s", o.json, msgEventPrefix)
	}
	var p messagePayload
	if err := json.Unmarshal(messagePayloadJSON(o), &p); err != nil || p.Seq != 2 || p.Message != "}{" {
		t.Errorf("payload slice %s decodes to %+v, %v", messagePayloadJSON(o), p, err)
	}
}

func TestHistoryOnJoin(t *testing.T) {
	s := newTestServer(t, deployed(Config{History: 6, HistoryOnJoin: 4}))
	a, _ := s.joined(t, "room", "lobby", "name", "alice")
	last := a.post("m", 8) // seqs 1..8; the ring keeps 3..8

	// JSON, on connect: the last 4, oldest first, after room_changed.
	b := s.dial(t, "room", "lobby", "name", "bob")
	b.expect("room_changed")
	hp := b.history()
	if hp.Room != "lobby" || hp.Epoch != last.Epoch || fmt.Sprint(seqs(hp.Messages)) != fmt.Sprint(seqRange(5, 8)) {
		t.Fatalf("history = room %q epoch %q seqs %v; want lobby %q 5..8", hp.Room, hp.Epoch, seqs(hp.Messages), last.Epoch)
	}
	for i, m := range hp.Messages {
		if want := "m" + strconv.Itoa(4+i); m.Message != want || m.From != "alice" || m.Epoch != last.Epoch || m.Time == "" {
			t.Errorf("history message %d = %+v; want alice's %s", i, m, want)
		}
	}
	// Then live messages, unmarked.
	a.say("live")
	if m := b.skipUntil("new_message").msg(t); m.Message != "live" || m.Seq != 9 {
		t.Errorf("after history bob got %+v; want live seq 9", m)
	}

	// Text, on connect: one marked line per message, then live lines.
	x := s.dial(t, "room", "lobby", "name", "term", "format", "text")
	x.lineWith("you are term")
	for i := 6; i <= 9; i++ {
		want := fmt.Sprintf("[lobby] (history) alice: m%d", i-1)
		if i == 9 {
			want = "[lobby] (history) alice: live"
		}
		if l := x.line(); l != want {
			t.Errorf("text history line %q; want %q", l, want)
		}
	}
	a.say("after")
	if l := x.lineWith("after"); l != "[lobby] alice: after" {
		t.Errorf("live text line %q", l)
	}

	// Changing room (JSON) and /join (text) replay the new room's history.
	c, _ := s.joined(t, "room", "other", "name", "carol")
	c.post("o", 2)
	c.sendJSON("change_room", map[string]string{"name": "lobby"})
	c.expect("room_changed")
	if hp := c.history(); fmt.Sprint(seqs(hp.Messages)) != fmt.Sprint(seqRange(7, 10)) {
		t.Errorf("change_room history seqs %v; want 7..10", seqs(hp.Messages))
	}
	x.sendRaw("/join other")
	x.lineWith("you are term in other")
	for _, want := range []string{"[other] (history) carol: o0", "[other] (history) carol: o1"} {
		if l := x.line(); l != want {
			t.Errorf("/join history line %q; want %q", l, want)
		}
	}

	// An empty room still sends history (JSON), carrying the epoch.
	e := s.dial(t, "room", "empty", "name", "eve")
	e.expect("room_changed")
	if hp := e.history(); len(hp.Messages) != 0 || hp.Epoch == "" || hp.Room != "empty" {
		t.Errorf("history of an empty room = %+v; want no messages and an epoch", hp)
	}
}

// TestReconnectDuringStream drops and resumes one client again and again
// while another streams 1,000 messages: in the end it must hold every seq
// exactly once, each resume recovering fully.
func TestReconnectDuringStream(t *testing.T) {
	const total = 1000
	s := newTestServer(t, Config{History: total, SendQueue: 4 * total})
	sender, _ := s.joined(t, "room", "stream", "name", "sender")
	r, _ := s.joined(t, "room", "stream", "name", "r0")
	errc := make(chan error, 1)
	go func() {
		defer close(errc)
		for i := range total {
			sender.conn.SetWriteDeadline(time.Now().Add(5 * time.Second))
			frame := fmt.Sprintf(`{"type":"send_message","payload":{"message":"%d"}}`, i)
			if err := sender.conn.WriteMessage(1, []byte(frame)); err != nil {
				errc <- err
				return
			}
			// A steady stream, not one burst: it must outlast several
			// resumes, each of which replays what was sent meanwhile.
			time.Sleep(time.Millisecond)
		}
	}()

	seen := make(map[uint64]int)
	var last uint64
	var epoch string
	note := func(m messagePayload, how string) {
		if m.Seq <= last {
			t.Fatalf("%s: seq %d after %d", how, m.Seq, last)
		}
		if epoch != "" && m.Epoch != epoch {
			t.Fatalf("%s: epoch changed from %q to %q", how, epoch, m.Epoch)
		}
		seen[m.Seq]++
		last, epoch = m.Seq, m.Epoch
	}
	resumes := 0
	nextDrop := uint64(97)
	for last < total {
		e := r.next()
		if e.Type != "new_message" {
			continue // presence
		}
		note(e.msg(t), "live")
		// Drop the connection every so often, as a network would, and
		// come back asking for everything after the last seq seen. Every
		// 97 seqs at the first live message past the mark: a replay may
		// have carried the mark itself (batching decides that).
		if last >= nextDrop && last < total {
			nextDrop = last + 97
			r.conn.Close()
			resumes++
			var hp historyPayload
			var rec recoveryPayload
			r, hp, rec = s.resume(t, "stream", "r"+strconv.Itoa(resumes), last, epoch)
			if !rec.Recovered || rec.Missed != 0 || rec.Replayed != len(hp.Messages) {
				t.Fatalf("resume %d after seq %d: recovery %+v with %d messages; want recovered", resumes, last, rec, len(hp.Messages))
			}
			for _, m := range hp.Messages {
				note(m, "history")
			}
		}
	}
	if err := <-errc; err != nil {
		t.Fatalf("sender: %v", err)
	}
	for seq := uint64(1); seq <= total; seq++ {
		if seen[seq] != 1 {
			t.Errorf("seq %d seen %d times; want exactly once", seq, seen[seq])
		}
	}
	t.Logf("%d resumes", resumes)
	if len(seen) != total || resumes < 5 {
		t.Errorf("saw %d distinct seqs over %d resumes; want %d over at least 5", len(seen), resumes, total)
	}
}

func TestRecovery(t *testing.T) {
	s := newTestServer(t, Config{History: 10, HistoryOnJoin: 3})
	tests := []struct {
		name     string
		since    uint64
		epoch    string // "" means the room's own
		want     recoveryPayload
		wantSeqs []uint64
	}{
		{"nothing missed", 30, "",
			recoveryPayload{Recovered: true}, nil},
		{"all still kept", 24, "",
			recoveryPayload{Recovered: true, Replayed: 6}, seqRange(25, 30)},
		{"oldest kept is next", 20, "",
			recoveryPayload{Recovered: true, Replayed: 10}, seqRange(21, 30)},
		{"evicted range", 5, "",
			recoveryPayload{Replayed: 10, Missed: 15, MissedFrom: 6, MissedTo: 20}, seqRange(21, 30)},
		{"since 0", 0, "",
			recoveryPayload{Replayed: 10, Missed: 20, MissedFrom: 1, MissedTo: 20}, seqRange(21, 30)},
		{"epoch mismatch", 30, "OLDEPOCH",
			recoveryPayload{Reset: true, Replayed: 10, Missed: 20, MissedFrom: 1, MissedTo: 20}, seqRange(21, 30)},
		{"since beyond newest", 31, "",
			recoveryPayload{Reset: true, Replayed: 10, Missed: 20, MissedFrom: 1, MissedTo: 20}, seqRange(21, 30)},
	}
	for i, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			room := "r" + strconv.Itoa(i)
			a, _ := s.joined(t, "room", room, "name", "alice")
			last := a.post("m", 30) // seqs 1..30; the ring keeps 21..30
			epoch := cmp.Or(tt.epoch, last.Epoch)
			p, hp, rec := s.resume(t, room, "bob", tt.since, epoch)
			tt.want.Room = room
			if rec != tt.want {
				t.Errorf("recovery = %+v; want %+v", rec, tt.want)
			}
			if hp.Epoch != last.Epoch || fmt.Sprint(seqs(hp.Messages)) != fmt.Sprint(tt.wantSeqs) {
				t.Errorf("history epoch %q seqs %v; want %q %v", hp.Epoch, seqs(hp.Messages), last.Epoch, tt.wantSeqs)
			}
			// Live messages follow with no gap and no duplicate.
			a.say("next")
			if m := p.skipUntil("new_message").msg(t); m.Seq != 31 {
				t.Errorf("first live seq %d; want 31", m.Seq)
			}
		})
	}

	// Text clients get the replay as marked lines and the verdict as a notice.
	a, _ := s.joined(t, "room", "text", "name", "alice")
	last := a.post("m", 20)
	x := s.dial(t, "room", "text", "name", "term", "format", "text", "since", "19", "epoch", last.Epoch)
	x.lineWith("you are term")
	if l := x.line(); l != "[text] (history) alice: m19" {
		t.Errorf("text replay line %q; want alice's m19", l)
	}
	if l := x.line(); l != "* reconnected to text: nothing lost (1 missed messages replayed)" {
		t.Errorf("text recovery line %q", l)
	}
	y := s.dial(t, "room", "text", "name", "term2", "format", "text", "since", "1", "epoch", last.Epoch)
	if l := y.lineWith("reconnected"); l != "* reconnected to text: 9 messages missed (2-10) are no longer kept" {
		t.Errorf("text recovery line %q", l)
	}
}

// TestLastMemberRecovers: a room that empties keeps its history, so the
// client that was alone in it recovers after a reconnect.
func TestLastMemberRecovers(t *testing.T) {
	s := newTestServer(t, deployed(Config{}))
	a, _ := s.joined(t, "room", "solo", "name", "alice")
	first := a.post("m", 1)
	a.conn.Close()
	// Someone else posts into another room, then visits solo and leaves
	// again: the room empties and refills while alice is away.
	b, _ := s.joined(t, "room", "elsewhere", "name", "bob")
	b.sendJSON("change_room", map[string]string{"name": "solo"})
	b.skipUntil("history")
	b.post("b", 2)
	b.sendJSON("change_room", map[string]string{"name": "elsewhere"})
	b.skipUntil("history")

	_, hp, rec := s.resume(t, "solo", "alice2", first.Seq, first.Epoch)
	if !rec.Recovered || fmt.Sprint(seqs(hp.Messages)) != "[2 3]" || hp.Epoch != first.Epoch {
		t.Errorf("alice's recovery %+v history %v epoch %q; want recovered 2,3 under %q", rec, seqs(hp.Messages), hp.Epoch, first.Epoch)
	}
}

func TestHistoryDisabled(t *testing.T) {
	s := newTestServer(t, Config{History: 0})
	a, _ := s.joined(t, "room", "r", "name", "alice")
	last := a.post("m", 3)
	if last.Seq != 3 || last.Epoch == "" {
		t.Errorf("with history off, message = %+v; want seq 3 and an epoch", last)
	}
	// A new member gets no history: the next thing it sees is live.
	b, _ := s.joined(t, "room", "r", "name", "bob")
	a.say("live")
	if e := b.next(); e.Type != "new_message" || e.msg(t).Message != "live" {
		t.Errorf("bob's first event after joining is %s %s; want the live message", e.Type, e.Payload)
	}
	// A reconnect learns what it missed but gets no history event.
	c := s.dial(t, "room", "r", "name", "carol", "since", "1", "epoch", last.Epoch)
	c.expect("room_changed")
	if rec := c.recovery(); rec != (recoveryPayload{Room: "r", Missed: 3, MissedFrom: 2, MissedTo: 4}) {
		t.Errorf("recovery with history off = %+v; want 2-4 missed", rec)
	}
	d := s.dial(t, "room", "r", "name", "dave", "since", "4", "epoch", last.Epoch)
	d.expect("room_changed")
	if rec := d.recovery(); !rec.Recovered {
		t.Errorf("up-to-date reconnect with history off = %+v; want recovered", rec)
	}
	// The text client sees no history lines either.
	x := s.dial(t, "room", "r", "name", "term", "format", "text")
	x.lineWith("you are term")
	a.say("hello")
	if l := x.lineWith("alice"); l != "[r] alice: hello" {
		t.Errorf("text client's first chat line %q; want the live hello", l)
	}
}

func TestHistoryBookIdle(t *testing.T) {
	now := time.Unix(1000, 0)
	b := newHistoryBook(Config{History: 5, HistoryIdleRooms: 2, HistoryIdleTTL: time.Minute}.withDefaults(), nil,
		slog.New(slog.DiscardHandler))
	b.now = func() time.Time { return now }
	epochs := map[string]string{}
	for _, r := range []string{"a", "b", "c"} {
		b.record(r, 1, "x", "hi", now, false)
		epochs[r] = b.get(r).epoch
	}
	b.emptied("a")
	b.emptied("b")
	if len(b.logs) != 3 {
		t.Fatalf("%d logs after two rooms emptied; want all 3 kept", len(b.logs))
	}
	b.emptied("c") // three empty rooms, room for two: a goes
	if b.logs["a"] != nil || b.logs["b"] == nil || b.logs["c"] == nil {
		t.Errorf("after a third room emptied, kept %v; want b and c", keys(b.logs))
	}
	b.get("b") // b is in use again: off the idle list
	now = now.Add(2 * time.Minute)
	b.get("d") // creating a log prunes: c has been empty too long
	if b.logs["c"] != nil || b.logs["b"] == nil {
		t.Errorf("after the TTL, kept %v; want b and d", keys(b.logs))
	}
	if l := b.get("a"); l.epoch == epochs["a"] || l.last != 0 {
		t.Errorf("forgotten room a came back with epoch %q last %d; want a new epoch", l.epoch, l.last)
	}
	if l := b.get("b"); l.epoch != epochs["b"] || l.last != 1 {
		t.Errorf("kept room b has epoch %q last %d; want %q 1", l.epoch, l.last, epochs["b"])
	}
}

// keys lists the rooms that have a log.
func keys(m map[string]*roomLog) []string {
	var out []string
	for k := range m {
		out = append(out, k)
	}
	return out
}

func TestHistoryConfig(t *testing.T) {
	c, err := parseFlags([]string{"-history", "0", "-history-on-join", "0", "-history-idle-rooms", "0"},
		func(string) string { return "" }, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	c = c.withDefaults().withDefaults() // twice: "off" must survive
	if c.History != 0 || c.HistoryOnJoin != 0 || c.HistoryIdleRooms != 0 {
		t.Errorf("0 on the command line gave %d %d %d; want all off (0)", c.History, c.HistoryOnJoin, c.HistoryIdleRooms)
	}
	// The same zero in a Config means the same: off.
	if z := (Config{}).withDefaults(); z.History != 0 || z.HistoryOnJoin != 0 || z.HistoryIdleRooms != 0 {
		t.Errorf("a zero Config has history %d %d %d; want off, as on the command line", z.History, z.HistoryOnJoin, z.HistoryIdleRooms)
	}
	d := DefaultConfig().withDefaults()
	if d.History != 100 || d.HistoryOnJoin != 50 || d.HistoryIdleRooms != 1000 || d.HistoryIdleTTL != time.Hour {
		t.Errorf("defaults %d %d %d %v; want 100 50 1000 1h", d.History, d.HistoryOnJoin, d.HistoryIdleRooms, d.HistoryIdleTTL)
	}
	tests := []struct {
		cfg     Config
		wantErr string
	}{
		{Config{}, ""},
		{Config{History: 200}, "half the send queue"},
		{Config{History: 200, SendQueue: 400}, ""},
		{Config{History: 0, DataDir: "/tmp/x"}, "data dir needs history"},
		{Config{History: -1}, "history -1: want 0 or more"},
		{Config{HistoryOnJoin: -5}, "history-on-join -5"},
	}
	for _, tt := range tests {
		err := tt.cfg.withDefaults().validate()
		if (err == nil) != (tt.wantErr == "") || (err != nil && !strings.Contains(err.Error(), tt.wantErr)) {
			t.Errorf("validate(%+v) = %v; want error %q", tt.cfg, err, tt.wantErr)
		}
	}
}

// BenchmarkBroadcastHistory measures one chat message through the hub to a
// room of 10 members: numbering, encoding, keeping it (or not; on disk,
// waiting for its commit too) and queuing it for each member. The hub is driven directly, without run, so the
// numbers are the hub's own cost, not the network's.
func BenchmarkBroadcastHistory(b *testing.B) {
	for _, bc := range []struct {
		name    string
		history int
		store   bool
	}{
		{"off", 0, false},
		{"memory", 100, false},
		{"bbolt", 100, true},
	} {
		b.Run(bc.name, func(b *testing.B) {
			log := slog.New(slog.DiscardHandler)
			cfg := Config{History: bc.history}
			var d deps
			if bc.store {
				st, err := openBoltStore(b.TempDir(), 100, log)
				if err != nil {
					b.Fatal(err)
				}
				d.store = st
			}
			h := newHub(cfg.withDefaults(), log, d)
			b.Cleanup(func() { h.history.close(); h.broker.Close() })
			members := make([]*Client, 10)
			for i := range members {
				c := &Client{hub: h, conn: newMemSink(16),
					wantRoom: "bench", wantName: "m" + strconv.Itoa(i)}
				h.add(c)
				members[i] = c
			}
			for _, m := range members {
				m.conn.(*memSink).take() // greetings and presence
			}
			req := queued{r: clientRequest{c: members[0], cmd: sayCmd{msg: "a message of ordinary length, about sixty bytes long"}}}
			b.ReportAllocs()
			b.ResetTimer()
			for range b.N {
				h.handle(req)
				// The message comes back from the broker through inbound;
				// handle that too, skipping the room's synced marker.
				for r := <-h.inbound; ; r = <-h.inbound {
					h.handle(r)
					if ev, ok := r.r.(*brokerEvent); ok && ev.d.Kind == DeliverMessage {
						break
					}
				}
				if bc.store {
					// On disk first: the broadcast waits for the commit.
					for r := <-h.inbound; ; r = <-h.inbound {
						h.handle(r)
						if _, ok := r.r.(storedRequest); ok {
							break
						}
					}
				}
				for _, m := range members {
					if batch, _ := m.conn.(*memSink).take(); len(batch) != 1 {
						b.Fatalf("member got %d events; want the message", len(batch))
					}
				}
			}
		})
	}
}

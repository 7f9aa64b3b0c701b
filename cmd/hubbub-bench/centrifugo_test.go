package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"maps"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gorilla/websocket"
)

func TestSplitCentrifugo(t *testing.T) {
	m1 := string(appendMessage(nil, marker{1, 1, 100}, 60))
	m2 := string(appendMessage(nil, marker{2, 5, 200}, 60))
	// pub is a publication push as Centrifugo v6 sends it: data first, then
	// the publisher's info.
	pub := func(channel, data string) string {
		return `{"push":{"channel":"` + channel + `","pub":{"data":` + data +
			`,"info":{"user":"","client":"4dbf9036-de86-4850-b5e8-39060535ac04"}}}}`
	}
	text := func(s string) string { return `{"text":"` + s + `"}` }
	tests := []struct {
		name        string
		frame       string
		want        []marker
		wantErrs    map[string]int
		wantPings   int
		wantAcked   []uint32
		wantRefused bool
	}{
		{name: "one push", frame: pub("bench", text(m1)), want: []marker{{1, 1, 100}}},
		{name: "batched with publish reply", frame: pub("bench", text(m1)) + "\n" + `{"id":3,"publish":{}}` + "\n" + pub("bench", text(m2)),
			want: []marker{{1, 1, 100}, {2, 5, 200}}},
		{name: "ping alone", frame: "{}", wantPings: 1},
		{name: "ping in a batch", frame: pub("bench-1", text(m1)) + "\n{}\n", want: []marker{{1, 1, 100}}, wantPings: 1},
		{name: "connect reply", frame: `{"id":1,"connect":{"client":"c1","version":"6.9.1 OSS","ping":25,"pong":true}}`,
			wantAcked: []uint32{centrifugoConnectID}},
		{name: "subscribe reply then push", frame: `{"id":2,"subscribe":{}}` + "\n" + pub("bench", text(m2)),
			want: []marker{{2, 5, 200}}, wantAcked: []uint32{centrifugoSubscribeID}},
		{name: "subscribe refused", frame: `{"id":2,"error":{"code":103,"message":"permission denied"}}`,
			wantErrs: map[string]int{"subscribe 103 permission denied": 1}, wantRefused: true},
		{name: "connect refused", frame: `{"id":1,"error":{"code":101,"message":"unauthorized"}}`,
			wantErrs: map[string]int{"connect 101 unauthorized": 1}, wantRefused: true},
		{name: "publish refused", frame: `{"id":7,"error":{"code":103,"message":"permission denied"}}`,
			wantErrs: map[string]int{"publish 103 permission denied": 1}},
		{name: "publish reply with result", frame: `{"id":9,"publish":{"offset":3}}`},
		{name: "info first", frame: `{"push":{"channel":"bench","pub":{"info":{"user":"u"},"data":` + text(m1) + `}}}`,
			want: []marker{{1, 1, 100}}},
		{name: "channel id instead of name", frame: `{"push":{"id":4,"pub":{"data":` + text(m2) + `,"offset":12}}}`,
			want: []marker{{2, 5, 200}}},
		{name: "escaped text", frame: pub("bench", text(`\"quoted\" `+m1)), want: []marker{{1, 1, 100}}},
		{name: "other data shape", frame: pub("bench", `{"msg":{"body":"`+m2+`"}}`), want: []marker{{2, 5, 200}}},
		{name: "marker in info only", frame: `{"push":{"channel":"bench","pub":{"data":{"text":"hi"},"info":{"user":"hb1 9-9 9"}}}}`},
		{name: "join push", frame: `{"push":{"channel":"bench","join":{"info":{"user":"hb1 9-9 9","client":"c"}}}}`},
		{name: "unsubscribe push", frame: `{"push":{"channel":"bench","unsubscribe":{"code":2500,"reason":"server unsubscribe"}}}`,
			wantErrs: map[string]int{"unsubscribe push 2500 server unsubscribe": 1}},
		{name: "garbage", frame: "not json\n" + pub("bench", text(m1)), want: []marker{{1, 1, 100}},
			wantErrs: map[string]int{"undecodable": 1}},
		{name: "empty", frame: ""},
	}
	for _, tt := range tests {
		var got []marker
		st := splitFrame(formatCentrifugo, []byte(tt.frame), func(m marker) { got = append(got, m) })
		if !slices.Equal(got, tt.want) || st.Markers != len(tt.want) {
			t.Errorf("%s: splitFrame = %+v (count %d); want %+v", tt.name, got, st.Markers, tt.want)
		}
		if !maps.Equal(st.ServerErrors, tt.wantErrs) && (len(st.ServerErrors) != 0 || len(tt.wantErrs) != 0) {
			t.Errorf("%s: server errors = %v; want %v", tt.name, st.ServerErrors, tt.wantErrs)
		}
		if st.Pings != tt.wantPings || !slices.Equal(st.Acked, tt.wantAcked) || st.Refused != tt.wantRefused {
			t.Errorf("%s: pings %d, acked %v, refused %v; want %d, %v, %v",
				tt.name, st.Pings, st.Acked, st.Refused, tt.wantPings, tt.wantAcked, tt.wantRefused)
		}
	}
}

// TestCentrifugoCommands checks that the commands the bench sends are the
// JSON Centrifugo expects, and that a publish at the maximum -size, with the
// longest id and room name, stays within the frame limit.
func TestCentrifugoCommands(t *testing.T) {
	var conn struct {
		ID      uint32
		Connect *struct{}
	}
	if err := json.Unmarshal(centrifugoConnect, &conn); err != nil || conn.ID != centrifugoConnectID || conn.Connect == nil {
		t.Errorf("connect command %s decodes to %+v, %v", centrifugoConnect, conn, err)
	}
	var sub struct {
		ID        uint32
		Subscribe struct{ Channel string }
	}
	frame := appendCentrifugoSubscribe(nil, "bench-3")
	if err := json.Unmarshal(frame, &sub); err != nil || sub.ID != centrifugoSubscribeID || sub.Subscribe.Channel != "bench-3" {
		t.Errorf("subscribe command %s decodes to %+v, %v", frame, sub, err)
	}

	big := marker{4294967295, 18446744073709551615, 9223372036854775807}
	frame = appendCentrifugoPublish(nil, 4294967295, "bench-9999999999", big, maxSize(formatCentrifugo))
	if len(frame) != maxFrame {
		t.Errorf("publish at max size is %d bytes; want %d", len(frame), maxFrame)
	}
	var pub struct {
		ID      uint32
		Publish struct {
			Channel string
			Data    struct{ Text string }
		}
	}
	frame = appendCentrifugoPublish(nil, 3, "bench", marker{1, 2, 3}, 100)
	if err := json.Unmarshal(frame, &pub); err != nil || pub.ID != 3 || pub.Publish.Channel != "bench" || len(pub.Publish.Data.Text) != 100 {
		t.Errorf("publish command %s decodes to %+v, %v", frame, pub, err)
	}
	if m, ok := parseMarker([]byte(pub.Publish.Data.Text)); !ok || m != (marker{1, 2, 3}) {
		t.Errorf("published text %q has marker %+v, %v", pub.Publish.Data.Text, m, ok)
	}
}

// fakeCentrifugo is a test fixture speaking the part of Centrifugo's JSON
// client protocol that the bench uses, as strictly as the real server where
// it matters: connect must come first and every other command needs an id;
// publishes go as pushes to every subscriber of the channel, publisher
// included; replies and pushes queued together are joined by '\n' in one
// frame. Once connected, the server pings ({}) every pingEvery, in a batch
// with whatever is queued. A ping still unanswered at the next one closes
// the connection with 3012 "no pong", and a pong nobody asked for with 3501
// "bad request", like Centrifugo does.
type fakeCentrifugo struct {
	pingEvery time.Duration
	// deny, if set, is a channel whose subscribes are refused with 103.
	deny string

	mu sync.Mutex
	// Guarded by mu.
	subs  map[string]map[*fakeCfConn]struct{}
	conns int // connections so far, for client ids
	pongs int // pings answered, over all connections
}

// fakeCfConn is one fixture connection. Only its reader closes send, right
// after removing it from every channel, so the close happens once.
type fakeCfConn struct {
	ws   *websocket.Conn
	id   string
	send chan []byte
	// connected is set by the reader once connect was accepted; the writer
	// pings only then.
	connected atomic.Bool
	// pingOut is set by the writer when it pings and cleared by the reader
	// when the pong arrives.
	pingOut atomic.Bool
}

// newFakeCentrifugo starts f on an httptest server and returns its URL.
func newFakeCentrifugo(t *testing.T, f *fakeCentrifugo) string {
	t.Helper()
	f.subs = map[string]map[*fakeCfConn]struct{}{}
	ts := httptest.NewServer(f)
	t.Cleanup(ts.Close)
	return "ws" + strings.TrimPrefix(ts.URL, "http") + "/connection/websocket"
}

// ServeHTTP upgrades and runs one client until it leaves.
func (f *fakeCentrifugo) ServeHTTP(w http.ResponseWriter, req *http.Request) {
	up := websocket.Upgrader{ReadBufferSize: 1024, WriteBufferSize: 1024}
	ws, err := up.Upgrade(w, req, nil)
	if err != nil {
		return
	}
	ws.SetReadLimit(65536)
	f.mu.Lock()
	f.conns++
	c := &fakeCfConn{ws: ws, id: fmt.Sprintf("client-%d", f.conns), send: make(chan []byte, 4096)}
	f.mu.Unlock()
	done := make(chan struct{})
	go func() {
		defer close(done)
		f.writeLoop(c)
	}()
	f.readLoop(c)
	<-done
}

// readLoop handles c's commands until c goes away or breaks the protocol,
// then unsubscribes it everywhere and closes c.send.
func (f *fakeCentrifugo) readLoop(c *fakeCfConn) {
	defer func() {
		f.mu.Lock()
		for _, subs := range f.subs {
			delete(subs, c)
		}
		close(c.send)
		f.mu.Unlock()
	}()
	for {
		_, data, err := c.ws.ReadMessage()
		if err != nil {
			return
		}
		for line := range bytes.SplitSeq(data, []byte("\n")) {
			if len(bytes.TrimSpace(line)) == 0 {
				continue
			}
			if !f.handle(c, line) {
				return
			}
		}
	}
}

// handle runs one command of c and reports whether c may go on.
func (f *fakeCentrifugo) handle(c *fakeCfConn, line []byte) bool {
	var cmd struct {
		ID        uint32    `json:"id"`
		Connect   *struct{} `json:"connect"`
		Subscribe *struct {
			Channel string `json:"channel"`
		} `json:"subscribe"`
		Publish *struct {
			Channel string          `json:"channel"`
			Data    json.RawMessage `json:"data"`
		} `json:"publish"`
	}
	if err := json.Unmarshal(line, &cmd); err != nil {
		return c.kick(3501, "bad request")
	}
	switch {
	case cmd.Connect != nil && cmd.ID > 0 && !c.connected.Load():
		c.connected.Store(true)
		c.queue(fmt.Appendf(nil, `{"id":%d,"connect":{"client":%q,"version":"fake","ping":1,"pong":true}}`, cmd.ID, c.id))
	case !c.connected.Load():
		return c.kick(3501, "bad request")
	case cmd.ID == 0 && cmd.Subscribe == nil && cmd.Publish == nil:
		if !c.pingOut.CompareAndSwap(true, false) {
			return c.kick(3501, "bad request") // unnecessary pong
		}
		f.mu.Lock()
		f.pongs++
		f.mu.Unlock()
	case cmd.ID == 0:
		return c.kick(3501, "bad request")
	case cmd.Subscribe != nil:
		ch := cmd.Subscribe.Channel
		// Under mu, so no publication to ch can overtake the reply.
		f.mu.Lock()
		if ch == f.deny {
			c.queue(fmt.Appendf(nil, `{"id":%d,"error":{"code":103,"message":"permission denied"}}`, cmd.ID))
		} else {
			if f.subs[ch] == nil {
				f.subs[ch] = map[*fakeCfConn]struct{}{}
			}
			f.subs[ch][c] = struct{}{}
			c.queue(fmt.Appendf(nil, `{"id":%d,"subscribe":{}}`, cmd.ID))
		}
		f.mu.Unlock()
	case cmd.Publish != nil:
		ch := cmd.Publish.Channel
		push := fmt.Appendf(nil, `{"push":{"channel":%q,"pub":{"data":%s,"info":{"user":"","client":%q}}}}`,
			ch, cmd.Publish.Data, c.id)
		f.mu.Lock()
		for sub := range f.subs[ch] {
			sub.queue(push)
		}
		c.queue(fmt.Appendf(nil, `{"id":%d,"publish":{}}`, cmd.ID))
		f.mu.Unlock()
	default:
		return c.kick(3501, "bad request")
	}
	return true
}

// queue adds msg to c's outgoing frames, or drops it when c is that far
// behind: a fixture may lose messages; the bench must notice. Callers hold
// f.mu or are c's reader, so send is still open.
func (c *fakeCfConn) queue(msg []byte) {
	select {
	case c.send <- msg:
	default:
	}
}

// kick closes c with a Centrifugo disconnect code and reports false.
func (c *fakeCfConn) kick(code int, reason string) bool {
	msg := websocket.FormatCloseMessage(code, reason)
	_ = c.ws.WriteControl(websocket.CloseMessage, msg, time.Now().Add(time.Second))
	return false
}

// writeLoop writes queued frames, coalescing what is already queued, and
// pings c every pingEvery once it is connected.
func (f *fakeCentrifugo) writeLoop(c *fakeCfConn) {
	defer c.ws.Close()
	ping := time.NewTicker(f.pingEvery)
	defer ping.Stop()
	for {
		var frame []byte
		select {
		case msg, ok := <-c.send:
			if !ok {
				return
			}
			frame = append(frame, msg...)
		case <-ping.C:
			if !c.connected.Load() {
				continue
			}
			if c.pingOut.Load() {
				c.kick(3012, "no pong")
				return
			}
			c.pingOut.Store(true)
			frame = append(frame, "{}"...)
		}
		for n := len(c.send); n > 0; n-- {
			more, ok := <-c.send
			if !ok {
				break
			}
			frame = append(append(frame, '\n'), more...)
		}
		_ = c.ws.SetWriteDeadline(time.Now().Add(5 * time.Second))
		if err := c.ws.WriteMessage(websocket.TextMessage, frame); err != nil {
			return // the deferred Close ends the reader too
		}
	}
}

// TestCentrifugoEndToEnd runs the bench in centrifugo mode against the
// fixture, in one room and in several (one channel each), with pings often
// enough that a missed or unasked-for pong would close connections.
func TestCentrifugoEndToEnd(t *testing.T) {
	tests := []struct {
		name     string
		scenario string
		rooms    int
		senders  int
	}{
		{name: "fanout", scenario: scenarioFanout, senders: 3},
		{name: "rooms", scenario: scenarioRooms, rooms: 2, senders: 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := &fakeCentrifugo{pingEvery: 250 * time.Millisecond}
			cfg := testConfig(newFakeCentrifugo(t, f))
			cfg.Proto = protoCentrifugo
			cfg.Scenario, cfg.Rooms, cfg.Senders = tt.scenario, tt.rooms, tt.senders
			rep := runBench(t, cfg)

			if rep.ConnOK != int64(cfg.Clients) || rep.ConnFailed != 0 {
				t.Errorf("connections ok/failed = %d/%d; want %d/0 (%s)", rep.ConnOK, rep.ConnFailed, cfg.Clients, rep.FirstConnError)
			}
			if rep.Proto != protoCentrifugo || rep.Format != formatCentrifugo {
				t.Errorf("report proto/format = %s/%s; want centrifugo/centrifugo", rep.Proto, rep.Format)
			}
			if rep.SentMeasured < 1 || rep.WriteErrors != 0 {
				t.Errorf("sent in window = %d, write errors %d; want >= 1 and 0", rep.SentMeasured, rep.WriteErrors)
			}
			// Every client of a room gets its room's messages, publisher
			// included: clients per room times what was sent.
			if want := rep.SentMeasured * int64(cfg.Clients/rep.Rooms); rep.Expected != want {
				t.Errorf("expected = %d; want sent %d x clients per room %d = %d",
					rep.Expected, rep.SentMeasured, cfg.Clients/rep.Rooms, want)
			}
			if rep.DeliveryRatio != 1 || rep.Duplicates != 0 {
				t.Errorf("delivery ratio = %v (%d of %d), %d duplicates; want 1 and none",
					rep.DeliveryRatio, rep.Received, rep.Expected, rep.Duplicates)
			}
			if l := rep.Latency; l.Count != rep.Received || l.P50 <= 0 || l.Max < l.P50 {
				t.Errorf("latency = %+v; want count %d and 0 < p50 <= max", l, rep.Received)
			}
			if len(rep.UnexpectedCloses) != 0 || len(rep.ServerErrors) != 0 {
				t.Errorf("unexpected closes %v, server errors %v; want none", rep.UnexpectedCloses, rep.ServerErrors)
			}
			f.mu.Lock()
			pongs := f.pongs
			f.mu.Unlock()
			if pongs < cfg.Clients {
				t.Errorf("fixture got %d pongs; want at least one per client (%d)", pongs, cfg.Clients)
			}
		})
	}
}

// TestCentrifugoRefused checks that a refused subscribe is counted as a
// server error, that such clients hang up instead of holding the run until
// the join timeout, and that nobody sends.
func TestCentrifugoRefused(t *testing.T) {
	cfg := testConfig(newFakeCentrifugo(t, &fakeCentrifugo{pingEvery: time.Second, deny: "bench"}))
	cfg.Proto = protoCentrifugo
	cfg.Duration = 300 * time.Millisecond
	start := time.Now()
	rep := runBench(t, cfg)
	if elapsed := time.Since(start); elapsed > cfg.DialTimeout/2 {
		t.Errorf("run took %v; refused clients should not wait out the %v join timeout", elapsed, cfg.DialTimeout)
	}
	if got := rep.ServerErrors["subscribe 103 permission denied"]; got != int64(cfg.Clients) {
		t.Errorf("server errors = %v; want %d x \"subscribe 103 permission denied\"", rep.ServerErrors, cfg.Clients)
	}
	if rep.Sent != 0 || len(rep.UnexpectedCloses) != 0 {
		t.Errorf("sent %d, unexpected closes %v; want 0 and none", rep.Sent, rep.UnexpectedCloses)
	}
}

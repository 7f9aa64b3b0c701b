package main

import (
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net"
	"net/url"
	"os"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gorilla/websocket"
)

// The churn soak's long form: go test -run TestChurnSoak -soak 10m (or
// HUBBUB_SOAK=10m). Without it the test runs a short form sized for CI.
var (
	soakFor     = flag.Duration("soak", 0, "run TestChurnSoak's long form for this long (also HUBBUB_SOAK)")
	soakClients = flag.Int("soak-clients", 2000, "churning clients in TestChurnSoak's long form")
)

// soakPlan returns how long TestChurnSoak churns and with how many
// concurrent churning clients. The short form stays far below -race's
// limit of 8128 goroutines (each churner costs three: its own, and a
// reader and a writer in the server); the long form's default of 2,000
// comes to about 6,000.
func soakPlan(t *testing.T) (time.Duration, int) {
	d := *soakFor
	if v := os.Getenv("HUBBUB_SOAK"); d == 0 && v != "" {
		var err error
		if d, err = time.ParseDuration(v); err != nil {
			t.Fatalf("HUBBUB_SOAK=%q: %v", v, err)
		}
	}
	switch {
	case d > 0:
		return d, *soakClients
	case testing.Short():
		return 3 * time.Second, 100
	}
	return 8 * time.Second, 300
}

// soakPatience bounds every wait in TestChurnSoak. It only has to tell a
// hang from a slow machine: under -race, on two cores shared with other
// work, the hub can be seconds behind and still be right.
const soakPatience = 30 * time.Second

// soakRooms are the rooms of TestChurnSoak.
var soakRooms = []string{"soak-0", "soak-1", "soak-2", "soak-3", "soak-4", "soak-5", "soak-6", "soak-7", "soak-8", "soak-9"}

// TestChurnSoak runs many clients that connect, join rooms, talk, switch
// rooms and leave, some with a close frame, some by dropping the TCP
// connection (FIN) and some by resetting it (RST), for a fixed time. Two
// stable members per room (one JSON, one text) stay connected throughout
// and talk too.
//
// Afterwards: every message a stable member sent reached every stable
// member of its room, complete and in order, and nothing from another room
// ever did; no handshake failed; no panic was recovered; and once the
// stable members leave, the hub holds no connection and the goroutine count
// is back where it started.
func TestChurnSoak(t *testing.T) {
	dur, churners := soakPlan(t)
	// Stable members read continuously but may be starved of CPU under
	// -race while hundreds of handshakes run; a deep queue keeps that from
	// looking like a slow consumer.
	// Thousands of connections come and go: log warnings and errors only
	// (a recovered panic is an error).
	quiet := slog.New(slog.NewTextHandler(tWriter{t}, &slog.HandlerOptions{Level: slog.LevelWarn}))
	s := newServerWith(t, Config{SendQueue: 2048}, quiet, nil)
	base := runtime.NumGoroutine()

	var stable []*soakMember
	for i := range 2 * len(soakRooms) {
		m := &soakMember{idx: i, room: soakRooms[i/2], text: i%2 == 1}
		p := s.dial(t, "room", m.room, "name", fmt.Sprintf("s%d", i), "format", m.format())
		m.conn = p.conn
		if m.text {
			p.lineWith("* you are")
		} else {
			p.skipUntil("room_changed")
		}
		stable = append(stable, m)
	}
	stop := make(chan struct{})
	var talk sync.WaitGroup
	errc := make(chan error, 2*len(stable))
	for _, m := range stable {
		talk.Add(2)
		go func() { defer talk.Done(); errc <- m.talk(stop) }()
		go func() { defer talk.Done(); errc <- m.listen(stable) }()
	}

	t.Logf("churning %d clients over %d rooms for %v", churners, len(soakRooms), dur)
	var st soakStats
	end := time.Now().Add(dur)
	var churn sync.WaitGroup
	for w := range churners {
		churn.Add(1)
		go func() {
			defer churn.Done()
			for n := 0; time.Now().Before(end); n++ {
				if err := churnOnce(s, w, n, &st); err != nil {
					st.fail(err)
				}
				time.Sleep(time.Duration(10+rand.IntN(50)) * time.Millisecond)
			}
		}()
	}
	churn.Wait()
	close(stop)
	talk.Wait()
	close(errc)
	for err := range errc {
		if err != nil {
			t.Error(err)
		}
	}
	sent := 0
	for _, m := range stable {
		sent += m.sent
	}
	t.Logf("%d connections (%d closed cleanly, %d dropped, %d reset); %d churner messages, %d from stable members; "+
		"hub: %d messages, %d slow consumers", st.cycles.Load(), st.clean.Load(), st.dropped.Load(), st.reset.Load(),
		st.said.Load(), sent, s.hub.stats.messages.Load(), s.hub.stats.slowConsumers.Load())
	if n := st.failures.Load(); n > 0 {
		t.Errorf("%d churn cycles failed; first: %v", n, st.firstErr.Load())
	}
	if n := s.hub.stats.panics.Load(); n != 0 {
		t.Errorf("%d panics recovered during the soak; want 0", n)
	}
	for _, m := range stable {
		m.conn.Close()
	}
	waitConns(t, s.hub, 0)
	if n, stacks := settleGoroutines(base, 10*time.Second); n > base {
		t.Errorf("%d goroutines after the soak; %d before\n%s", n, base, stacks)
	}
}

// soakStats counts churn cycles by how they ended.
type soakStats struct {
	cycles, clean, dropped, reset, said, failures atomic.Int64
	firstErr                                      atomic.Value // error
}

func (st *soakStats) fail(err error) {
	if st.failures.Add(1) == 1 {
		st.firstErr.Store(err)
	}
}

// churnOnce is one short-lived client: connect to a random room in a
// random format, wait for the greeting, do up to three things (talk,
// switch rooms, ask who is there), then leave in one of three ways.
func churnOnce(s *testServer, w, n int, st *soakStats) error {
	text := rand.IntN(2) == 0
	q := url.Values{"room": {soakRooms[rand.IntN(len(soakRooms))]}, "name": {fmt.Sprintf("c%d-%d", w, n)}}
	if text {
		q.Set("format", "text")
	}
	d := websocket.Dialer{HandshakeTimeout: soakPatience}
	conn, _, err := d.Dial(s.wsURL("/ws", q), nil)
	if err != nil {
		return fmt.Errorf("dial: %w", err)
	}
	defer conn.Close()
	st.cycles.Add(1)
	conn.SetReadDeadline(time.Now().Add(soakPatience))
	if _, greeting, err := conn.ReadMessage(); err != nil {
		return fmt.Errorf("greeting: %w", err)
	} else if !strings.Contains(string(greeting), "room_changed") && !strings.HasPrefix(string(greeting), "* you are") {
		return fmt.Errorf("greeting %q", greeting)
	}
	conn.SetWriteDeadline(time.Now().Add(soakPatience))
	for k := range rand.IntN(4) {
		var frame string
		switch rand.IntN(3) {
		case 0:
			msg := fmt.Sprintf("c%d-%d %d", w, n, k)
			frame = msg
			if !text {
				frame = `{"type":"send_message","payload":{"message":"` + msg + `"}}`
			}
			st.said.Add(1)
		case 1:
			room := soakRooms[rand.IntN(len(soakRooms))]
			frame = "/join " + room
			if !text {
				frame = `{"type":"change_room","payload":{"name":"` + room + `"}}`
			}
		default:
			frame = "/who"
			if !text {
				frame = `{"type":"list_members"}`
			}
		}
		if err := conn.WriteMessage(websocket.TextMessage, []byte(frame)); err != nil {
			return fmt.Errorf("send: %w", err)
		}
		time.Sleep(time.Duration(rand.IntN(20)) * time.Millisecond)
	}
	switch r := rand.IntN(100); {
	case r < 45: // clean: close frame, then wait for the server's reply
		st.clean.Add(1)
		conn.WriteControl(websocket.CloseMessage, websocket.FormatCloseMessage(websocket.CloseNormalClosure, ""),
			time.Now().Add(5*time.Second))
		conn.SetReadDeadline(time.Now().Add(soakPatience))
		for {
			if _, _, err := conn.ReadMessage(); err != nil {
				if !websocket.IsCloseError(err, websocket.CloseNormalClosure) {
					return fmt.Errorf("clean close answered with %w", err)
				}
				return nil
			}
		}
	case r < 85: // vanish: FIN, no close frame
		st.dropped.Add(1)
	default: // crash: RST
		st.reset.Add(1)
		conn.NetConn().(*net.TCPConn).SetLinger(0)
	}
	return nil
}

// soakMember is a stable member of TestChurnSoak: it stays connected in
// one room for the whole run, talks at a steady pace and checks what it
// hears.
type soakMember struct {
	idx  int
	room string
	text bool
	conn *websocket.Conn
	sent int // messages sent; written by talk, read after it returns
}

func (m *soakMember) format() string {
	if m.text {
		return "text"
	}
	return "json"
}

// send sends one chat message in m's format.
func (m *soakMember) send(msg string) error {
	if !m.text {
		return sendMessage(m.conn, msg)
	}
	m.conn.SetWriteDeadline(time.Now().Add(10 * time.Second))
	return m.conn.WriteMessage(websocket.TextMessage, []byte(msg))
}

// talk sends "s<idx> <seq>" every 50ms or so until stop, then
// "s<idx> end <count>".
func (m *soakMember) talk(stop <-chan struct{}) error {
	for {
		select {
		case <-stop:
			return m.send(fmt.Sprintf("s%d end %d", m.idx, m.sent))
		case <-time.After(time.Duration(40+rand.IntN(20)) * time.Millisecond):
		}
		if err := m.send(fmt.Sprintf("s%d %d", m.idx, m.sent)); err != nil {
			return fmt.Errorf("stable s%d send: %w", m.idx, err)
		}
		m.sent++
	}
}

// listen reads until every stable member of m's room has said end. Each
// stable member's messages must arrive complete and in order, and every
// chat message must come from m's own room.
func (m *soakMember) listen(stable []*soakMember) error {
	next := make(map[int]int) // stable sender -> next sequence number
	peers := 0
	for _, o := range stable {
		if o.room == m.room {
			peers++
		}
	}
	for ends := 0; ends < peers; {
		m.conn.SetReadDeadline(time.Now().Add(soakPatience))
		_, data, err := m.conn.ReadMessage()
		if err != nil {
			return fmt.Errorf("stable s%d: read: %w", m.idx, err)
		}
		for line := range strings.SplitSeq(string(data), "\n") {
			room, msg, err := m.chat(line)
			if err != nil {
				return fmt.Errorf("stable s%d: %w", m.idx, err)
			}
			if room == "" {
				continue // not a chat message
			}
			if room != m.room {
				return fmt.Errorf("stable s%d in %s heard from %s: %q", m.idx, m.room, room, msg)
			}
			var from, seq int
			if strings.HasPrefix(msg, "c") {
				continue // a churner's message: it may or may not arrive
			}
			if _, err := fmt.Sscanf(msg, "s%d end %d", &from, &seq); err == nil {
				if next[from] != seq {
					return fmt.Errorf("stable s%d: s%d ended after %d messages; %d arrived", m.idx, from, seq, next[from])
				}
				ends++
				continue
			}
			if _, err := fmt.Sscanf(msg, "s%d %d", &from, &seq); err != nil {
				return fmt.Errorf("stable s%d: unexpected message %q", m.idx, msg)
			}
			if seq != next[from] {
				return fmt.Errorf("stable s%d: from s%d got message %d; want %d", m.idx, from, seq, next[from])
			}
			next[from]++
		}
	}
	return nil
}

// chat extracts room and message from one received line, or returns an
// empty room for anything that is not a chat message. Errors are refused
// outright: a stable member only ever sends valid frames.
func (m *soakMember) chat(line string) (room, msg string, err error) {
	if m.text {
		switch {
		case strings.HasPrefix(line, "!"):
			return "", "", errors.New("error line " + line)
		case !strings.HasPrefix(line, "["):
			return "", "", nil
		}
		head, msg, ok := strings.Cut(line, ": ")
		room, _, _ = strings.Cut(strings.TrimPrefix(head, "["), "]")
		if !ok || room == "" {
			return "", "", fmt.Errorf("malformed chat line %q", line)
		}
		return room, msg, nil
	}
	var e event
	if err := json.Unmarshal([]byte(line), &e); err != nil {
		return "", "", fmt.Errorf("bad event %q: %w", line, err)
	}
	switch e.Type {
	case "error":
		return "", "", errors.New("error event " + string(e.Payload))
	case "new_message":
		var p messagePayload
		if err := json.Unmarshal(e.Payload, &p); err != nil {
			return "", "", err
		}
		return p.Room, p.Message, nil
	}
	return "", "", nil
}

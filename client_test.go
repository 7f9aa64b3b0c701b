package main

import (
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/gorilla/websocket"
)

// pumpClient builds a Client around a wired connection for a hub that is
// not running: done is closed so the pump's reports to the hub return.
func pumpClient(t testing.TB, w *wiredConn, f format, queued int) *Client {
	h := newHub(Config{}.withDefaults(), testLogger(t))
	close(h.done)
	return &Client{
		hub: h, conn: w.conn, bc: w.bc, format: f,
		send: newSendQueue(queued + 1),
	}
}

func TestWritePumpCoalesces(t *testing.T) {
	const queued = 5
	tests := []struct {
		format     format
		wantFrames int
	}{
		{formatJSON, 1},
		{formatText, queued},
	}
	for _, tt := range tests {
		t.Run(fmt.Sprint(tt.format), func(t *testing.T) {
			conns, u := wireServer(t)
			cc, _, err := websocket.DefaultDialer.Dial(u, nil)
			if err != nil {
				t.Fatal(err)
			}
			defer cc.Close()
			w := <-conns
			c := pumpClient(t, w, tt.format, queued)
			for i := range queued {
				c.send.push(messageEvent(uint64(i+1), "r", "alice", fmt.Sprintf("m%d", i), time.Now()))
			}
			pumpDone := make(chan struct{})
			go func() { c.writePump(); close(pumpDone) }()

			var lines []string
			for frames := 0; frames < tt.wantFrames; frames++ {
				cc.SetReadDeadline(time.Now().Add(5 * time.Second))
				_, data, err := cc.ReadMessage()
				if err != nil {
					t.Fatalf("read frame %d: %v", frames, err)
				}
				lines = append(lines, strings.Split(string(data), "\n")...)
			}
			if len(lines) != queued {
				t.Fatalf("got %d events in %d frames; want %d", len(lines), tt.wantFrames, queued)
			}
			for i, l := range lines {
				want := fmt.Sprintf("m%d", i)
				if tt.format == formatJSON {
					var e event
					if err := json.Unmarshal([]byte(l), &e); err != nil {
						t.Fatalf("line %d %q: %v", i, l, err)
					}
					if got := e.msg(t).Message; got != want {
						t.Errorf("event %d message %q; want %q", i, got, want)
					}
				} else if l != "[r] alice: "+want {
					t.Errorf("line %d = %q; want %q", i, l, "[r] alice: "+want)
				}
			}
			if n := w.writes.n.Load(); n != 1 {
				t.Errorf("%d socket writes for %d queued events; want 1", n, queued)
			}
			c.send.close()
			c.send.readerExited()
			<-pumpDone
		})
	}
}

func TestReadLimit(t *testing.T) {
	s := newTestServer(t, Config{})
	a, _ := s.joined(t, "name", "alice")

	// Exactly at the limit is fine.
	msg := strings.Repeat("x", 512-len(`{"type":"send_message","payload":{"message":""}}`))
	a.say(msg)
	if got := a.expect("new_message").msg(t).Message; got != msg[:maxMessageRunes] {
		t.Errorf("512-byte frame: message of %d bytes; want %d", len(got), maxMessageRunes)
	}
	a.sendRaw(strings.Repeat("y", 513))
	if code := a.closeCode(5 * time.Second); code != websocket.CloseMessageTooBig {
		t.Errorf("513-byte frame: close code %d; want 1009", code)
	}
}

func TestSilentPeerDropped(t *testing.T) {
	cfg := Config{PongWait: 300 * time.Millisecond, PingPeriod: 100 * time.Millisecond}
	s := newTestServer(t, cfg)
	watcher, _ := s.joined(t, "name", "watcher")
	// A gorilla client only answers pings while it reads; this one never
	// reads, so from the server's side it has gone silent.
	start := time.Now()
	s.dial(t, "name", "silent")
	watcher.expect("presence") // silent joined
	var p presencePayload
	watcher.expect("presence").decode(t, &p)
	if p.Event != "leave" || p.Name != "silent" {
		t.Fatalf("presence %+v; want silent leaving", p)
	}
	if el := time.Since(start); el < cfg.PongWait {
		t.Errorf("silent peer dropped after %v; want at least PongWait %v", el, cfg.PongWait)
	}
	// The watcher reads, so it answers pings and must still be here.
	watcher.say("still here")
	if m := watcher.expect("new_message").msg(t); m.Message != "still here" {
		t.Errorf("watcher got %q", m.Message)
	}
}

func TestQuitClosesNormally(t *testing.T) {
	s := newTestServer(t, Config{})
	b, _ := s.joined(t, "name", "bob")
	q := s.dial(t, "format", "text", "name", "quitter")
	q.lineWith("you are quitter")
	b.expect("presence")
	q.sendRaw("/quit\n")
	if code := q.closeCode(5 * time.Second); code != websocket.CloseNormalClosure {
		t.Errorf("/quit: close code %d; want 1000", code)
	}
	var p presencePayload
	b.expect("presence").decode(t, &p)
	if p.Event != "leave" || p.Name != "quitter" {
		t.Errorf("after /quit bob saw %+v; want quitter leaving", p)
	}
}

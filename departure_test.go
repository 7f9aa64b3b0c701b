package main

import (
	"encoding/json"
	"fmt"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gorilla/websocket"
)

// TestLastWordsBeforeLeaving has clients send a burst of messages and leave
// at once — with a close frame, with /quit in the same frame, by dropping
// the connection (FIN) — while a watcher listens. Every message the server
// read before the client left must be broadcast: the departure must not
// overtake the client's own requests on their way to the hub.
func TestLastWordsBeforeLeaving(t *testing.T) {
	const (
		leavers = 30 // concurrent, so the hub has a backlog to overtake
		burst   = 5
	)
	s := newTestServer(t, Config{SendQueue: 4 * leavers * burst})
	watcher, _ := s.joined(t, "room", "last", "name", "watcher")
	ways := []string{"close frame", "quit", "fin"}
	var wg sync.WaitGroup
	errc := make(chan error, leavers)
	for i := range leavers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			way := ways[i%len(ways)]
			q := map[string][]string{"room": {"last"}, "name": {fmt.Sprintf("l%d", i)}, "format": {"text"}}
			conn, _, err := websocket.DefaultDialer.Dial(s.wsURL("/ws", q), nil)
			if err != nil {
				errc <- err
				return
			}
			defer conn.Close()
			conn.SetReadDeadline(time.Now().Add(10 * time.Second))
			if _, _, err := conn.ReadMessage(); err != nil { // greeting: we are in the room
				errc <- err
				return
			}
			frame := ""
			for j := range burst {
				frame += fmt.Sprintf("l%d %d\n", i, j)
			}
			if way == "quit" {
				frame += "/quit\n"
			}
			if err := conn.WriteMessage(websocket.TextMessage, []byte(frame)); err != nil {
				errc <- err
				return
			}
			switch way {
			case "close frame":
				conn.WriteMessage(websocket.CloseMessage, websocket.FormatCloseMessage(websocket.CloseNormalClosure, ""))
			case "fin":
				conn.NetConn().(*net.TCPConn).CloseWrite()
			}
			// Wait for the server to hang up, so the frame surely arrived.
			for {
				if _, _, err := conn.ReadMessage(); err != nil {
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errc)
	for err := range errc {
		t.Fatal(err)
	}
	// Everything was broadcast before the last leaver's goodbye came back,
	// so a quiet second means nothing more is coming.
	got := map[string]bool{}
	for len(got) < leavers*burst {
		watcher.conn.SetReadDeadline(time.Now().Add(time.Second))
		_, data, err := watcher.conn.ReadMessage()
		if err != nil {
			break
		}
		for line := range strings.SplitSeq(string(data), "\n") {
			var e event
			if json.Unmarshal([]byte(line), &e) == nil && e.Type == "new_message" {
				got[e.msg(t).Message] = true
			}
		}
	}
	if len(got) != leavers*burst {
		t.Errorf("watcher heard %d of the %d messages sent before leaving", len(got), leavers*burst)
		for i := range leavers {
			for j := range burst {
				if m := fmt.Sprintf("l%d %d", i, j); !got[m] {
					t.Logf("missing %q from a leaver using %s", m, ways[i%len(ways)])
				}
			}
		}
	}
}

// TestQuitAfterQueuedReplies sends /who, a message and /quit in one frame:
// the answer to /who must arrive before the goodbye, not be cut off by it,
// and the room must get the message. (The quitter's own copy of it comes
// back through the broker and may arrive after the hub has let it go.)
func TestQuitAfterQueuedReplies(t *testing.T) {
	s := newTestServer(t, Config{})
	w, _ := s.joined(t, "name", "watcher")
	for i := range 20 { // the race was timing-dependent
		q := s.dial(t, "format", "text", "name", fmt.Sprintf("q%d", i))
		q.lineWith("you are")
		q.sendRaw("/who\nlast words\n/quit")
		if l := q.lineWith("members"); !strings.HasPrefix(l, "* members of general") {
			t.Fatalf("got %q; want the /who answer", l)
		}
		if m := w.skipUntil("new_message").msg(t); m.Message != "last words" || m.From != fmt.Sprintf("q%d", i) {
			t.Fatalf("watcher got %+v; want q%d's last words", m, i)
		}
		if code := q.closeCode(5 * time.Second); code != websocket.CloseNormalClosure {
			t.Fatalf("close code %d; want 1000", code)
		}
	}
}

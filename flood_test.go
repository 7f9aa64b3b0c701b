package main

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/gorilla/websocket"
)

// TestFloodRateLimitedThenClosed: a client that keeps sending past its
// budget is told rate_limited, then closed with 1008; the others in the
// room hear only what the budget allowed.
func TestFloodRateLimitedThenClosed(t *testing.T) {
	const burst = 3
	s := newTestServer(t, Config{MsgRate: 0.01, MsgBurst: burst}) // no refill within the test
	watcher, _ := s.joined(t, "name", "watcher")
	flooder, _ := s.joined(t, "name", "flooder")
	watcher.expect("presence")

	// Enough frames to use up the burst and then collect every strike.
	for i := range burst + floodStrikes {
		flooder.say(fmt.Sprint(i))
	}
	// Errors come from the hub at once; the flooder's own messages come
	// back through the broker, possibly after the hub has closed it. So
	// count the errors, and let the messages be any prefix of the burst.
	var said, limited int
	for limited < floodStrikes-1 {
		switch e := flooder.next(); e.Type {
		case "new_message":
			said++
		case "error":
			if !strings.Contains(string(e.Payload), errRateLimited) {
				t.Fatalf("error %s; want %s", e.Payload, errRateLimited)
			}
			limited++
		}
	}
	if said > burst {
		t.Errorf("flooder saw %d of its messages; want at most %d", said, burst)
	}
	if code := flooder.closeCode(5 * time.Second); code != websocket.ClosePolicyViolation {
		t.Errorf("flooder closed with %d; want 1008", code)
	}
	// The watcher hears the burst, in order, and the flooder leaving,
	// which may come first for the same reason.
	var got []string
	left := false
	for len(got) < burst || !left {
		switch e := watcher.next(); e.Type {
		case "new_message":
			got = append(got, e.msg(t).Message)
		case "presence":
			left = true
		default:
			t.Fatalf("watcher got %s %s; want the burst and a leave", e.Type, e.Payload)
		}
	}
	if strings.Join(got, ",") != "0,1,2" {
		t.Errorf("watcher got %v; want the burst 0,1,2", got)
	}
}

// TestPasteIsOneStrike: a text frame of many lines spends one token per
// line, and the lines over budget cost a single strike and a single error,
// so pasting once does not get anyone closed.
func TestPasteIsOneStrike(t *testing.T) {
	const burst = 5
	s := newTestServer(t, Config{MsgRate: 0.01, MsgBurst: burst}) // no refill within the test
	p := s.dial(t, "format", "text", "name", "paster")
	p.lineWith("you are paster")
	var lines []string
	for i := range 2 * floodStrikes { // closed at once, were lines counted as strikes
		lines = append(lines, fmt.Sprint("line ", i))
	}
	p.sendRaw(strings.Join(lines, "\n"))
	// Chat comes back through the broker, so the notice, which the hub
	// sends directly, may overtake it: expect the lines in order and one
	// notice somewhere among them.
	chat, notices := 0, 0
	for range burst + 1 {
		switch l := p.line(); {
		case strings.HasPrefix(l, "! slow down"):
			notices++
			if want := fmt.Sprintf("%d of the %d lines of this frame were dropped", 2*floodStrikes-burst, 2*floodStrikes); !strings.Contains(l, want) {
				t.Errorf("notice %q; want it to say %q", l, want)
			}
		case l == fmt.Sprint("[general] paster: line ", chat):
			chat++
		default:
			t.Fatalf("after %d chat lines: got %q", chat, l)
		}
	}
	if chat != burst || notices != 1 {
		t.Fatalf("got %d chat lines and %d notices; want %d and 1", chat, notices, burst)
	}
	// Still connected: the next frame is one more strike, not a close.
	p.sendRaw("still here?")
	if l := p.line(); !strings.HasPrefix(l, "! slow down") {
		t.Errorf("after the paste: got %q; want another rate limit notice", l)
	}
}

// TestFloodOff: a negative rate means no limit.
func TestFloodOff(t *testing.T) {
	s := newTestServer(t, Config{MsgRate: 0, MsgBurst: 1})
	p, _ := s.joined(t)
	const n = 100
	for i := range n {
		p.say(fmt.Sprint(i))
	}
	for i := range n {
		if m := p.next().msg(t); m.Message != fmt.Sprint(i) {
			t.Fatalf("message %d is %q", i, m.Message)
		}
	}
}

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
	var said, limited int
	for said+limited < burst+floodStrikes-1 {
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
	if said != burst || limited != floodStrikes-1 {
		t.Errorf("flooder saw %d messages and %d rate_limited errors; want %d and %d", said, limited, burst, floodStrikes-1)
	}
	if code := flooder.closeCode(5 * time.Second); code != websocket.ClosePolicyViolation {
		t.Errorf("flooder closed with %d; want 1008", code)
	}
	for i := range burst {
		if m := watcher.next().msg(t); m.Message != fmt.Sprint(i) {
			t.Errorf("watcher got %q; want %d", m.Message, i)
		}
	}
	if e := watcher.next(); e.Type != "presence" {
		t.Errorf("watcher got %s %s after the burst; want the flooder leaving", e.Type, e.Payload)
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
	for i := range burst {
		if l := p.line(); l != fmt.Sprint("[general] paster: line ", i) {
			t.Fatalf("line %d: got %q", i, l)
		}
	}
	if l := p.line(); !strings.HasPrefix(l, "! slow down") {
		t.Fatalf("after the burst: got %q; want one rate limit notice", l)
	}
	// Still connected: the next frame is one more strike, not a close.
	p.sendRaw("still here?")
	if l := p.line(); !strings.HasPrefix(l, "! slow down") {
		t.Errorf("after the paste: got %q; want another rate limit notice", l)
	}
}

// TestFloodOff: a negative rate means no limit.
func TestFloodOff(t *testing.T) {
	s := newTestServer(t, Config{MsgRate: -1, MsgBurst: 1})
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

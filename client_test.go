package main

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/gorilla/websocket"
)

func TestReadLimit(t *testing.T) {
	s := newTestServer(t, Config{})
	a, _ := s.joined(t, "name", "alice")

	// Exactly at the frame limit is read, and a message of 400
	// characters is delivered; one over 400 is refused whole, not cut.
	a.say(strings.Repeat("x", maxMessageRunes))
	if got := a.expect("new_message").msg(t).Message; len(got) != maxMessageRunes {
		t.Errorf("400-character message arrived with %d", len(got))
	}
	msg := strings.Repeat("x", 512-len(`{"type":"send_message","payload":{"message":""}}`))
	a.say(msg)
	var pe protoError
	a.expect("error").decode(t, &pe)
	if pe.Code != errTooLong || !strings.Contains(pe.Message, "at most 400") || !strings.Contains(pe.Message, fmt.Sprint(len(msg))) {
		t.Errorf("464-character message: error %+v; want too_long naming both lengths", pe)
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

package main

import (
	"bytes"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gorilla/websocket"
)

// logBuffer collects log output for assertions and mirrors it to t.Log.
type logBuffer struct {
	t  testing.TB
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *logBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	l.b.Write(p)
	l.mu.Unlock()
	l.t.Log(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}

func (l *logBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// TestReaderPanicIsContained makes one client's message handling panic
// through panicHook. The server must survive, log the panic with the client
// and a stack, close only that client with 1011, keep the hub's books exact
// (the room sees the leave, the connection gauge falls back) and go on
// serving everyone else. A panic in a connection's writer is wsconn's
// business and tested there (its Closed report is the same).
func TestReaderPanicIsContained(t *testing.T) {
	const victim = "boom"
	// Registered before the server, so it is cleared only after the
	// server's Shutdown has waited for every connection.
	t.Cleanup(func() { panicHook = nil })
	panicHook = func(c *Client) {
		if c.wantName == victim {
			panic("test panic in the reader")
		}
	}
	logs := &logBuffer{t: t}
	s := NewServer(Config{}, slog.New(slog.NewTextHandler(logs, nil)))
	ts := &testServer{Server: s, ts: newHTTPTest(t, s)}

	bystander, _ := ts.joined(t, "name", "bystander")
	v := ts.dial(t, "name", victim)
	// The greeting gets through; the first frame it sends panics.
	v.skipUntil("room_changed")
	bystander.expect("presence") // victim joined
	v.say("this frame panics the reader")
	if code, text := v.closeFrame(5 * time.Second); code != websocket.CloseInternalServerErr || text != "internal error" {
		t.Errorf("victim's close frame %d %q; want 1011 internal error", code, text)
	}
	// The hub let go of the victim cleanly: the room hears it leave and
	// the gauge counts only the bystander.
	var p presencePayload
	for p.Event != "leave" {
		bystander.expect("presence").decode(t, &p)
	}
	if p.Name != victim {
		t.Errorf("leave notice for %q; want %q", p.Name, victim)
	}
	waitConns(t, s.hub, 1)
	if n := s.hub.stats.panics.Load(); n != 1 {
		t.Errorf("panics counted = %d; want 1", n)
	}
	out := logs.String()
	for _, want := range []string{"recovered panic", "goroutine=reader", "client=127.0.0.1:",
		"name=" + victim, "test panic in the reader",
		"panics_test.go"} { // the stack shows where it struck, even on the reader's helper
		if !strings.Contains(out, want) {
			t.Errorf("log lacks %q", want)
		}
	}
	// Everyone else carries on, newcomers included.
	late, _ := ts.joined(t, "name", "late")
	bystander.say("still serving")
	for _, p := range []*peer{bystander, late} {
		if m := p.skipUntil("new_message").msg(t); m.Message != "still serving" {
			t.Errorf("got %q; want still serving", m.Message)
		}
	}
}

// waitConns waits until the hub's connection gauge reads want.
func waitConns(t testing.TB, h *Hub, want int64) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for h.stats.conns.Load() != want {
		if time.Now().After(deadline) {
			t.Fatalf("hub holds %d connections; want %d", h.stats.conns.Load(), want)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

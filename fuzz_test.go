package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http/httptest"
	"strings"
	"syscall"
	"testing"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/gorilla/websocket"
)

// Fuzzers beyond FuzzDecode (protocol_test.go). Seeds live in
// testdata/fuzz/<name>/; scripts/ci-fuzz.sh runs every fuzzer for a bounded
// time, and any crasher it finds is saved there and so becomes a
// regression test of the ordinary test run.

// FuzzParseLine checks the text-mode parser alone, with properties the
// shared FuzzDecode does not: a plain line is always chat (or refused as
// empty or too long, and then only when it is), a command is never chat,
// and splitting a frame yields single lines.
func FuzzParseLine(f *testing.F) {
	f.Fuzz(func(t *testing.T, line string) {
		lines := splitLines([]byte(line))
		if len(lines) == 0 {
			t.Fatalf("splitLines(%q) returned nothing", line)
		}
		for _, l := range lines {
			if strings.Contains(l, "\n") || (len(lines) > 1 && strings.TrimSpace(l) == "") {
				t.Fatalf("splitLines(%q) gave line %q", line, l)
			}
		}
		r := flat(parseLine(line))
		switch {
		case r.op == opNone:
			t.Fatalf("parseLine(%q) = op %d; not a client op", line, r.op)
		case r.op == opFail && (r.err == nil || r.err.Code == "" || r.err.Message == ""):
			t.Fatalf("parseLine(%q) failed without code and message", line)
		case strings.HasPrefix(line, "/") && r.op == opSay:
			t.Fatalf("parseLine(%q) treated a command as chat", line)
		case !strings.HasPrefix(line, "/") && r.op != opSay && (r.err == nil || r.err.Code != errEmptyMessage && r.err.Code != errTooLong):
			t.Fatalf("parseLine(%q) = op %d %v; plain lines are chat", line, r.op, r.err)
		case r.err != nil && r.err.Code == errTooLong && utf8.RuneCountInString(cleanMessage(line)) <= maxMessageRunes:
			t.Fatalf("parseLine(%q) refused a message of %d characters as too long", line, utf8.RuneCountInString(cleanMessage(line)))
		case r.op == opSay && r.arg != cleanMessage(line):
			t.Fatalf("parseLine(%q) said %q; want the cleaned line %q", line, r.arg, cleanMessage(line))
		case r.op == opJoin && !validRoom(r.arg), r.op == opNick && !validName(r.arg):
			t.Fatalf("parseLine(%q) accepted bad argument %q", line, r.arg)
		}
		if r.err != nil && !utf8.ValidString(r.err.Message) {
			t.Fatalf("parseLine(%q) error message is not UTF-8: %q", line, r.err.Message)
		}
	})
}

// FuzzFrames sends each input as one frame to a real server and checks
// what the protocol promises: a frame over 512 bytes closes the connection
// with 1009, a text-mode frame containing /quit closes it with 1000, and
// anything else leaves it usable — a chat message sent next comes back.
// Every frame the server sends meanwhile must be well formed and free of
// control characters, and no connection may have panicked (panics are recovered,
// so without this check a crasher would pass unseen).
//
// Each fuzzing process runs one server and keeps one connection per format
// open across inputs, dialling again only after a close: fresh connections
// per input would cost most of the time and churn through ephemeral ports.
//
// The server's goroutines make coverage vary from run to run, so the
// engine keeps finding "new" inputs; scripts/ci-fuzz.sh therefore runs this
// fuzzer with -fuzzminimizetime 0x, or minimising them would take all its
// time.
func FuzzFrames(f *testing.F) {
	// Flood control off: it would rightly drop a 256-line frame, which is
	// not what this fuzzer is about (flood_test.go covers it).
	s := NewServer(Config{SendQueue: 4096}, slog.New(slog.DiscardHandler))
	ts := httptest.NewUnstartedServer(nil)
	ts.Config = newHTTPServer(s.cfg, s.routes(), slog.New(slog.DiscardHandler))
	ts.Start()
	f.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		s.Shutdown(ctx)
		ts.Close()
	})
	srv := &testServer{Server: s, ts: ts}
	var conns [2]*websocket.Conn // [0] JSON, [1] text
	f.Cleanup(func() {
		for _, c := range conns {
			if c != nil {
				c.Close()
			}
		}
	})
	var seq int

	f.Fuzz(func(t *testing.T, text, binary bool, frame []byte) {
		fc := &fuzzConn{t: t, text: text}
		slot := &conns[fc.index()]
		if *slot == nil {
			*slot = fc.dial(srv)
		}
		fc.conn = *slot
		defer func() {
			if t.Failed() || fc.closed {
				fc.conn.Close()
				*slot = nil
			}
			if n := s.hub.stats.panics.Load(); n != 0 {
				t.Fatalf("a connection panicked on frame %q (text %v, binary %v)", frame, text, binary)
			}
		}()

		mt := websocket.TextMessage
		if binary {
			mt = websocket.BinaryMessage
		}
		fc.conn.SetWriteDeadline(time.Now().Add(5 * time.Second))
		werr := fc.conn.WriteMessage(mt, frame)
		switch {
		case len(frame) > s.cfg.MaxMessageSize:
			// The server stops reading at the limit, sends 1009 and closes
			// with the rest of our frame unread, so its kernel answers with
			// a reset: our write may fail, and the reset may even discard
			// the close frame before we read it. Either way the connection
			// must end promptly, and never with another code.
			fc.expectClose(websocket.CloseMessageTooBig, true)
			return
		case werr != nil:
			t.Fatalf("write: %v", werr)
		case text && !binary && hasQuit(frame):
			fc.expectClose(websocket.CloseNormalClosure, false)
			return
		}
		seq++
		marker := fmt.Sprintf("fuzz-ping-%d", seq)
		ping := marker
		if !text {
			ping = `{"type":"send_message","payload":{"message":"` + marker + `"}}`
		}
		if err := fc.conn.WriteMessage(websocket.TextMessage, []byte(ping)); err != nil {
			t.Fatalf("write follow-up: %v", err)
		}
		for !fc.read(marker) {
		}
	})
}

// hasQuit reports whether a text-mode frame contains a /quit line.
func hasQuit(frame []byte) bool {
	for _, l := range splitLines(frame) {
		if _, ok := parseLine(l).(quitCmd); ok {
			return true
		}
	}
	return false
}

// fuzzConn is FuzzFrames' client for one input.
type fuzzConn struct {
	t      *testing.T
	text   bool
	conn   *websocket.Conn
	closed bool // the server closed the connection
}

func (fc *fuzzConn) index() int {
	if fc.text {
		return 1
	}
	return 0
}

// dial connects a client in fc's format to its own room and reads the
// greeting.
func (fc *fuzzConn) dial(s *testServer) *websocket.Conn {
	q := map[string][]string{"room": {"fuzz-json"}, "name": {"fuzz"}}
	if fc.text {
		q = map[string][]string{"room": {"fuzz-text"}, "name": {"fuzz"}, "format": {"text"}}
	}
	conn, _, err := websocket.DefaultDialer.Dial(s.wsURL("/ws", q), nil)
	if err != nil {
		fc.t.Fatalf("dial: %v", err)
	}
	fc.conn = conn
	fc.read("") // the greeting
	return conn
}

// read reads one frame, checks it and reports whether it carried a chat
// message equal to marker (any frame counts when marker is empty).
func (fc *fuzzConn) read(marker string) bool {
	fc.t.Helper()
	fc.conn.SetReadDeadline(time.Now().Add(10 * time.Second))
	_, data, err := fc.conn.ReadMessage()
	if err != nil {
		fc.t.Fatalf("connection lost: %v", err)
	}
	return fc.check(data, marker)
}

// check validates one server frame and reports whether it carried marker.
func (fc *fuzzConn) check(data []byte, marker string) bool {
	fc.t.Helper()
	if !utf8.Valid(data) {
		fc.t.Fatalf("server sent invalid UTF-8: %q", data)
	}
	if fc.text {
		if strings.ContainsFunc(string(data), unicode.IsControl) {
			fc.t.Fatalf("server sent a control character to a terminal: %q", data)
		}
		return marker == "" || strings.HasSuffix(string(data), ": "+marker)
	}
	found := marker == ""
	for line := range strings.SplitSeq(string(data), "\n") {
		var e event
		if err := json.Unmarshal([]byte(line), &e); err != nil || e.Type == "" {
			fc.t.Fatalf("server sent %q, not a JSON event: %v", line, err)
		}
		if e.Type != "new_message" {
			continue
		}
		var m messagePayload
		if err := json.Unmarshal(e.Payload, &m); err != nil {
			fc.t.Fatalf("new_message payload %s: %v", e.Payload, err)
		}
		if strings.ContainsFunc(m.Message, unicode.IsControl) {
			fc.t.Fatalf("server relayed a control character: %q", m.Message)
		}
		found = found || m.Message == marker
	}
	return found
}

// expectClose reads until the server closes and checks the close code.
// With resetOK, a connection reset (or EOF) in place of the close frame is
// accepted too.
func (fc *fuzzConn) expectClose(code int, resetOK bool) {
	fc.t.Helper()
	fc.closed = true
	for {
		fc.conn.SetReadDeadline(time.Now().Add(10 * time.Second))
		_, data, err := fc.conn.ReadMessage()
		if err == nil {
			fc.check(data, "")
			continue
		}
		var ce *websocket.CloseError
		reset := errors.Is(err, syscall.ECONNRESET) || errors.Is(err, syscall.EPIPE) ||
			errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) ||
			errors.As(err, &ce) && ce.Code == websocket.CloseAbnormalClosure
		if !websocket.IsCloseError(err, code) && !(resetOK && reset) {
			fc.t.Fatalf("connection ended with %v; want close %d", err, code)
		}
		return
	}
}

package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"runtime"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/gorilla/websocket"
)

// TestMain fails the run if any test leaves goroutines behind: every
// goroutine hubbub starts must have an exit.
func TestMain(m *testing.M) {
	if os.Getenv(childEnv) != "" {
		os.Exit(runChild())
	}
	base := runtime.NumGoroutine()
	code := m.Run()
	// Under -fuzz the engine runs goroutines of its own (signal handling).
	fuzzing := flag.Lookup("test.fuzz").Value.String() != ""
	if code == 0 && !fuzzing {
		http.DefaultClient.CloseIdleConnections()
		if n, stacks := settleGoroutines(base, 10*time.Second); n > base {
			fmt.Fprintf(os.Stderr, "goroutine leak: %d running after tests, %d before\n%s\n", n, base, stacks)
			code = 1
		}
	}
	os.Exit(code)
}

// settleGoroutines waits up to d for the goroutine count to fall to want and
// returns the final count with a stack dump when it does not.
func settleGoroutines(want int, d time.Duration) (int, string) {
	deadline := time.Now().Add(d)
	for {
		n := runtime.NumGoroutine()
		if n <= want {
			return n, ""
		}
		if time.Now().After(deadline) {
			buf := make([]byte, 1<<20)
			return n, string(buf[:runtime.Stack(buf, true)])
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// testLogger returns a logger that writes through t.Log, so a failing
// test shows the server's side of the story and a passing one stays quiet.
func testLogger(t testing.TB) *slog.Logger {
	return slog.New(slog.NewTextHandler(tWriter{t}, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

type tWriter struct{ t testing.TB }

func (w tWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}

// testServer is a hubbub server on a real loopback socket.
type testServer struct {
	*Server
	ts *httptest.Server
}

// newTestServer starts a server for cfg and stops it (hub first, then the
// listener) when the test ends. Each setup function runs on the server
// before it starts serving. Flood control is off unless cfg sets MsgRate:
// tests drive clients far faster than people type, and the limiter has
// tests of its own (flood_test.go).
func newTestServer(t testing.TB, cfg Config, setup ...func(*Server)) *testServer {
	t.Helper()
	return newServerWith(t, cfg, testLogger(t), nil, setup...)
}

// newServerWith is newTestServer with a chosen logger and, if wrap is not
// nil, a wrapper around the listener. It serves through the production
// http.Server, so tests meet the same timeouts.
func newServerWith(t testing.TB, cfg Config, log *slog.Logger, wrap func(net.Listener) net.Listener, setup ...func(*Server)) *testServer {
	t.Helper()
	return serveTest(t, NewServer(cfg, log), log, wrap, setup...)
}

// deployed returns c with history on at its defaults wherever c leaves it
// unset, as on a server a user runs, for tests of behaviour that follows
// from history: replay on join, recovery, idle rooms. A zero Config has
// history off. Flood control stays as c says (off unless set): tests drive
// clients faster than people type.
func deployed(c Config) Config {
	d := DefaultConfig()
	if c.History == 0 {
		c.History = d.History
	}
	if c.HistoryOnJoin == 0 {
		c.HistoryOnJoin = d.HistoryOnJoin
	}
	if c.HistoryIdleRooms == 0 {
		c.HistoryIdleRooms = d.HistoryIdleRooms
	}
	return c
}

// newTestServerOn is newTestServer for a server on dependencies the test
// opened itself (a broker, a store).
func newTestServerOn(t testing.TB, cfg Config, d deps) *testServer {
	t.Helper()
	return serveTest(t, newServer(cfg, testLogger(t), d), testLogger(t), nil)
}

// serveTest serves s on loopback for the rest of the test.
func serveTest(t testing.TB, s *Server, log *slog.Logger, wrap func(net.Listener) net.Listener, setup ...func(*Server)) *testServer {
	t.Helper()
	for _, f := range setup {
		f(s)
	}
	ts := httptest.NewUnstartedServer(nil)
	ts.Config = newHTTPServer(s.cfg, s.routes(), log)
	if wrap != nil {
		ts.Listener = wrap(ts.Listener)
	}
	ts.Start()
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := s.Shutdown(ctx); err != nil {
			t.Errorf("shutdown: %v", err)
		}
		ts.Close()
	})
	return &testServer{Server: s, ts: ts}
}

// wsURL returns the ws:// URL of path with query q.
func (s *testServer) wsURL(path string, q url.Values) string {
	return "ws" + strings.TrimPrefix(s.ts.URL, "http") + path + "?" + q.Encode()
}

// event is a decoded server event.
type event struct {
	Type    string          `json:"type"`
	Payload json.RawMessage `json:"payload"`
}

// decode unmarshals the payload into v or fails the test.
func (e event) decode(t testing.TB, v any) {
	t.Helper()
	if err := json.Unmarshal(e.Payload, v); err != nil {
		t.Fatalf("decode %s payload %s: %v", e.Type, e.Payload, err)
	}
}

// msg returns the payload of a new_message event.
func (e event) msg(t testing.TB) messagePayload {
	t.Helper()
	if e.Type != "new_message" {
		t.Fatalf("got %s event %s; want new_message", e.Type, e.Payload)
	}
	var p messagePayload
	e.decode(t, &p)
	return p
}

// peer is a test WebSocket client.
type peer struct {
	t       testing.TB
	conn    *websocket.Conn
	pending []event // events of the last frame not yet consumed
	frames  int     // data frames read so far
}

// dial connects to /ws with the given query (room, name, format).
func (s *testServer) dial(t testing.TB, kv ...string) *peer {
	t.Helper()
	p, resp, err := s.tryDial(kv...)
	if err != nil {
		t.Fatalf("dial %v: %v (response %v)", kv, err, resp)
	}
	p.t = t
	t.Cleanup(func() { p.conn.Close() })
	return p
}

// tryDial connects to /ws and returns the handshake response on failure.
func (s *testServer) tryDial(kv ...string) (*peer, *http.Response, error) {
	q := url.Values{}
	for i := 0; i+1 < len(kv); i += 2 {
		q.Set(kv[i], kv[i+1])
	}
	conn, resp, err := websocket.DefaultDialer.Dial(s.wsURL("/ws", q), nil)
	if err != nil {
		return nil, resp, err
	}
	return &peer{conn: conn}, resp, nil
}

// readFrame reads one data frame, failing the test after 15s: generous,
// because CI machines are shared and -race is slow; a healthy read takes ms.
func (p *peer) readFrame() []byte {
	p.t.Helper()
	p.conn.SetReadDeadline(time.Now().Add(15 * time.Second))
	_, data, err := p.conn.ReadMessage()
	if err != nil {
		p.t.Fatalf("read: %v", err)
	}
	p.frames++
	return data
}

// next returns the next JSON event, splitting coalesced frames.
func (p *peer) next() event {
	p.t.Helper()
	for len(p.pending) == 0 {
		for line := range strings.SplitSeq(string(p.readFrame()), "\n") {
			var e event
			if err := json.Unmarshal([]byte(line), &e); err != nil {
				p.t.Fatalf("frame line %q is not a JSON event: %v", line, err)
			}
			p.pending = append(p.pending, e)
		}
	}
	e := p.pending[0]
	p.pending = p.pending[1:]
	return e
}

// expect returns the next event and fails unless it has type typ.
func (p *peer) expect(typ string) event {
	p.t.Helper()
	e := p.next()
	if e.Type != typ {
		p.t.Fatalf("got %s event %s; want %s", e.Type, e.Payload, typ)
	}
	return e
}

// skipUntil discards events until one of type typ arrives and returns it.
func (p *peer) skipUntil(typ string) event {
	p.t.Helper()
	for {
		if e := p.next(); e.Type == typ {
			return e
		}
	}
}

// line returns the next text-mode line.
func (p *peer) line() string {
	p.t.Helper()
	return string(p.readFrame())
}

// lineWith discards lines until one contains sub and returns it.
func (p *peer) lineWith(sub string) string {
	p.t.Helper()
	for {
		if l := p.line(); strings.Contains(l, sub) {
			return l
		}
	}
}

// sendJSON sends one JSON event frame.
func (p *peer) sendJSON(typ string, payload any) {
	p.t.Helper()
	b, err := json.Marshal(map[string]any{"type": typ, "payload": payload})
	if err != nil {
		p.t.Fatal(err)
	}
	p.sendRaw(string(b))
}

// say sends a chat message in JSON format.
func (p *peer) say(msg string) {
	p.t.Helper()
	p.sendJSON("send_message", map[string]string{"message": msg})
}

// sendRaw sends one text frame as is.
func (p *peer) sendRaw(s string) {
	p.t.Helper()
	p.conn.SetWriteDeadline(time.Now().Add(5 * time.Second))
	if err := p.conn.WriteMessage(websocket.TextMessage, []byte(s)); err != nil {
		p.t.Fatalf("write: %v", err)
	}
}

// closeCode reads until the connection ends and returns the close code the
// server sent (or -1 if the connection ended without a close frame).
func (p *peer) closeCode(within time.Duration) int {
	p.t.Helper()
	code, _ := p.closeFrame(within)
	return code
}

// closeFrame reads until the connection ends and returns the close code
// and reason the server sent (-1 and "" if it ended without a close frame).
func (p *peer) closeFrame(within time.Duration) (code int, reason string) {
	p.t.Helper()
	p.conn.SetReadDeadline(time.Now().Add(within))
	for {
		_, _, err := p.conn.ReadMessage()
		if err == nil {
			continue
		}
		var ce *websocket.CloseError
		if errors.As(err, &ce) {
			return ce.Code, ce.Text
		}
		p.t.Logf("connection ended without close frame: %v", err)
		return -1, ""
	}
}

// dialTinyBuffer connects like dial, with a 4 KiB socket receive buffer:
// a client that does not read then fills the server's socket quickly, so
// the server's writes block.
func (s *testServer) dialTinyBuffer(t testing.TB, kv ...string) *websocket.Conn {
	t.Helper()
	q := url.Values{}
	for i := 0; i+1 < len(kv); i += 2 {
		q.Set(kv[i], kv[i+1])
	}
	d := websocket.Dialer{NetDial: func(network, addr string) (net.Conn, error) {
		c, err := net.Dial(network, addr)
		if err == nil {
			c.(*net.TCPConn).SetReadBuffer(4096)
		}
		return c, err
	}}
	conn, _, err := d.Dial(s.wsURL("/ws", q), nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	return conn
}

// joined dials and consumes the room_changed greeting and, for a JSON
// client of a server with history on, the history event after it.
func (s *testServer) joined(t testing.TB, kv ...string) (*peer, roomPayload) {
	t.Helper()
	p := s.dial(t, kv...)
	var rp roomPayload
	p.skipUntil("room_changed").decode(t, &rp)
	if s.cfg.History > 0 && !slices.Contains(kv, "text") {
		p.expect("history")
	}
	return p, rp
}

func TestHomeAndStatic(t *testing.T) {
	s := newTestServer(t, Config{})
	tests := []struct {
		path, wantType, wantBody string
		wantCode                 int
	}{
		{"/", "text/html; charset=utf-8", `<script type="module" src="/static/app.js">`, 200},
		{"/static/app.js", "text/javascript; charset=utf-8", `from "./hubbub.js"`, 200},
		{"/static/hubbub.js", "text/javascript; charset=utf-8", "export class Client", 200},
		{"/static/style.css", "text/css; charset=utf-8", "", 200},
		{"/static/nope.js", "", "", 404},
		{"/main.go", "", "", 404},
	}
	for _, tt := range tests {
		resp, err := http.Get(s.ts.URL + tt.path)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != tt.wantCode {
			t.Errorf("GET %s: status %d; want %d", tt.path, resp.StatusCode, tt.wantCode)
			continue
		}
		if tt.wantType != "" && resp.Header.Get("Content-Type") != tt.wantType {
			t.Errorf("GET %s: Content-Type %q; want %q", tt.path, resp.Header.Get("Content-Type"), tt.wantType)
		}
		if !strings.Contains(string(body), tt.wantBody) {
			t.Errorf("GET %s: body lacks %q", tt.path, tt.wantBody)
		}
	}
	resp, err := http.Get(s.ts.URL + "/")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if csp := resp.Header.Get("Content-Security-Policy"); !strings.Contains(csp, "script-src 'self'") {
		t.Errorf("CSP on / = %q; want script-src 'self'", csp)
	}
}

func TestEcho(t *testing.T) {
	s := newTestServer(t, Config{})
	conn, _, err := websocket.DefaultDialer.Dial(s.wsURL("/echo", nil), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	frames := []struct {
		mt   int
		data []byte
	}{
		{websocket.TextMessage, []byte("hello\n")},
		{websocket.BinaryMessage, []byte{0, 1, 2, 255}},
		{websocket.TextMessage, []byte(strings.Repeat("x", 4000))},
	}
	for _, f := range frames {
		if err := conn.WriteMessage(f.mt, f.data); err != nil {
			t.Fatal(err)
		}
		conn.SetReadDeadline(time.Now().Add(5 * time.Second))
		mt, data, err := conn.ReadMessage()
		if err != nil {
			t.Fatal(err)
		}
		if mt != f.mt || string(data) != string(f.data) {
			t.Errorf("echo of type %d %q = type %d %q", f.mt, f.data[:min(len(f.data), 10)], mt, data[:min(len(data), 10)])
		}
	}
}

func TestConnectParamsRejected(t *testing.T) {
	s := newTestServer(t, Config{})
	tests := []struct {
		name string
		kv   []string
	}{
		{"bad room", []string{"room", "no spaces"}},
		{"long room", []string{"room", strings.Repeat("r", 65)}},
		{"bad name", []string{"name", "<script>"}},
		{"bad format", []string{"format", "xml"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, resp, err := s.tryDial(tt.kv...)
			if err == nil {
				t.Fatalf("dial %v succeeded; want 400", tt.kv)
			}
			if resp == nil || resp.StatusCode != http.StatusBadRequest {
				t.Fatalf("dial %v: response %v; want 400", tt.kv, resp)
			}
			body, _ := io.ReadAll(resp.Body)
			if !strings.Contains(string(body), "bad ") {
				t.Errorf("400 body %q does not say what was bad", body)
			}
		})
	}
}

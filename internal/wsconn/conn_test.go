package wsconn

import (
	"bytes"
	"errors"
	"flag"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gorilla/websocket"
)

// TestMain fails the run if a test leaves goroutines behind: every
// connection's reader, writer and helpers must be gone once Closed has
// been called and the test has cleaned up.
func TestMain(m *testing.M) {
	before := runtime.NumGoroutine()
	code := m.Run()
	// Under -fuzz the engine runs goroutines of its own (signal handling).
	if code == 0 && flag.Lookup("test.fuzz").Value.String() == "" {
		deadline := time.Now().Add(5 * time.Second)
		for runtime.NumGoroutine() > before && time.Now().Before(deadline) {
			time.Sleep(20 * time.Millisecond)
		}
		if n := runtime.NumGoroutine(); n > before {
			buf := make([]byte, 1<<20)
			fmt.Fprintf(os.Stderr, "leaked %d goroutines:\n%s\n", n-before, buf[:runtime.Stack(buf, true)])
			code = 1
		}
	}
	os.Exit(code)
}

// testDisconnects are the ends a test connection decides on itself.
var (
	testTooBig       = Disconnect{Code: CloseTooBig, Reason: "message over 512 bytes", Label: "too_big"}
	testPongTimeout  = Disconnect{Code: 1008, Reason: "no pong in time", Label: "pong_timeout"}
	testWriteTimeout = Disconnect{Reason: "write timed out", Label: "write_timeout"}
	testProtocol     = Disconnect{Code: CloseProtocol, Reason: "protocol error", Label: "protocol_error"}
	testInternal     = Disconnect{Code: CloseInternal, Reason: "internal error", Label: "internal_error"}
)

// testConfig returns a Config with short, test-sized durations.
func testConfig() *Config {
	return &Config{
		ReadLimit:    512,
		QueueLimit:   64,
		PongWait:     5 * time.Second,
		WriteWait:    5 * time.Second,
		CloseGrace:   time.Second,
		WriterIdle:   50 * time.Millisecond,
		NDJSON:       true,
		TooBig:       testTooBig,
		PongTimeout:  testPongTimeout,
		WriteTimeout: testWriteTimeout,
		Protocol:     testProtocol,
		Internal:     testInternal,
	}
}

// recorder is a Handler that keeps what it is told.
type recorder struct {
	msgs   chan string
	closed chan closedCall
	calls  atomic.Int32 // Closed calls
}

type closedCall struct {
	d   Disconnect
	err error
}

func newRecorder() *recorder {
	return &recorder{msgs: make(chan string, 1024), closed: make(chan closedCall, 2)}
}

func (r *recorder) Message(data []byte, binary bool) {
	if binary {
		r.msgs <- "binary:" + string(data)
		return
	}
	r.msgs <- string(data)
}

func (r *recorder) Closed(d Disconnect, err error) {
	r.calls.Add(1)
	r.closed <- closedCall{d, err}
}

// waitClosed returns the Closed call, failing the test if none comes.
func (r *recorder) waitClosed(t testing.TB) closedCall {
	t.Helper()
	select {
	case c := <-r.closed:
		return c
	case <-time.After(10 * time.Second):
		t.Fatal("Closed was not called")
		return closedCall{}
	}
}

// message returns the next message the handler got.
func (r *recorder) message(t *testing.T) string {
	t.Helper()
	select {
	case m := <-r.msgs:
		return m
	case <-time.After(5 * time.Second):
		t.Fatal("no message reached the handler")
		return ""
	}
}

// pair is a started server Conn and the gorilla client talking to it.
type pair struct {
	conn   *Conn
	client *websocket.Conn
	rec    *recorder
	writes *atomic.Int64 // socket writes on the server side, when counted
}

// dialPair starts a server that accepts one connection with cfg and dials
// it. With count, the server's socket is wrapped to count writes (which
// turns off the readability wait: the wrapper is not a plain socket).
func dialPair(t testing.TB, cfg *Config, count bool) *pair {
	t.Helper()
	accepted := make(chan *pair, 1)
	ts := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		up := &websocket.Upgrader{WriteBufferPool: &sync.Pool{}}
		hw := &hijackWrapper{ResponseWriter: w}
		if _, err := up.Upgrade(hw, r, nil); err != nil {
			t.Errorf("upgrade: %v", err)
			return
		}
		p := &pair{rec: newRecorder()}
		raw := hw.conn
		if count {
			cc := &countingConn{Conn: raw}
			raw, p.writes = cc, &cc.n
		}
		p.conn = newConn(raw, hw.br, cfg)
		accepted <- p
	}))
	t.Cleanup(ts.Close)
	client, _, err := websocket.DefaultDialer.Dial("ws"+strings.TrimPrefix(ts.URL, "http"), nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { client.Close() })
	p := <-accepted
	p.client = client
	return p
}

// start starts p's reader, and makes sure the test ends only after
// Closed.
func (p *pair) start(t testing.TB) {
	p.conn.Start(p.rec)
	t.Cleanup(func() {
		p.conn.Abort()
		if p.rec.calls.Load() == 0 {
			p.rec.waitClosed(t)
		}
	})
}

// countingConn counts Write calls on a socket.
type countingConn struct {
	net.Conn
	n atomic.Int64
}

func (c *countingConn) Write(p []byte) (int, error) {
	c.n.Add(1)
	return c.Conn.Write(p)
}

// readFrame reads one frame on the client, failing the test on error.
func readFrame(t *testing.T, c *websocket.Conn) string {
	t.Helper()
	c.SetReadDeadline(time.Now().Add(5 * time.Second))
	_, data, err := c.ReadMessage()
	if err != nil {
		t.Fatalf("client read: %v", err)
	}
	return string(data)
}

// closeFrame reads until the client sees the server's close frame and
// returns it.
func closeFrame(t *testing.T, c *websocket.Conn) *websocket.CloseError {
	t.Helper()
	c.SetReadDeadline(time.Now().Add(10 * time.Second))
	for {
		_, _, err := c.ReadMessage()
		if err == nil {
			continue
		}
		var ce *websocket.CloseError
		if !errors.As(err, &ce) {
			t.Fatalf("client read ended with %v; want a close frame", err)
		}
		return ce
	}
}

func TestEverythingQueuedLeavesInOneWrite(t *testing.T) {
	tests := []struct {
		ndjson     bool
		wantFrames int
	}{
		{true, 1},
		{false, 5},
	}
	for _, tt := range tests {
		t.Run(fmt.Sprintf("ndjson=%v", tt.ndjson), func(t *testing.T) {
			cfg := testConfig()
			cfg.NDJSON = tt.ndjson
			wrote := make(chan [2]int, 10)
			cfg.Wrote = func(messages, frames int) { wrote <- [2]int{messages, frames} }
			p := dialPair(t, cfg, true)
			p.start(t)
			// Queue five under the lock, as if they had arrived while a
			// write was under way; then let one writer find them.
			p.conn.mu.Lock()
			for i := range 5 {
				p.conn.q.push([]byte(fmt.Sprintf("m%d", i)), cfg.QueueLimit)
			}
			p.conn.wakeLocked()
			p.conn.mu.Unlock()

			var got []string
			for range tt.wantFrames {
				got = append(got, strings.Split(readFrame(t, p.client), "\n")...)
			}
			if want := []string{"m0", "m1", "m2", "m3", "m4"}; fmt.Sprint(got) != fmt.Sprint(want) {
				t.Errorf("client got %q; want %q", got, want)
			}
			if n := p.writes.Load(); n != 1 {
				t.Errorf("%d socket writes for 5 queued messages; want 1", n)
			}
			if w := <-wrote; w != [2]int{5, tt.wantFrames} {
				t.Errorf("Wrote(%d, %d); want (5, %d)", w[0], w[1], tt.wantFrames)
			}
			if len(wrote) != 0 {
				t.Errorf("Wrote called more than once")
			}
		})
	}
}

func TestMessageAloneGoesOutAtOnce(t *testing.T) {
	p := dialPair(t, testConfig(), false)
	p.start(t)
	start := time.Now()
	if _, err := p.conn.Push([]byte("hello")); err != nil {
		t.Fatal(err)
	}
	if got := readFrame(t, p.client); got != "hello" {
		t.Fatalf("client got %q", got)
	}
	// No timer may hold a lone message; a generous bound keeps this
	// robust on a loaded machine while still catching a batch window.
	if el := time.Since(start); el > 500*time.Millisecond {
		t.Errorf("a lone message took %v", el)
	}
}

func TestWriterExitsWhenIdle(t *testing.T) {
	cfg := testConfig()
	cfg.WriterIdle = 20 * time.Millisecond
	p := dialPair(t, cfg, false)
	p.start(t)
	writing := func() bool {
		p.conn.mu.Lock()
		defer p.conn.mu.Unlock()
		return p.conn.writing
	}
	waitFor := func(what string, cond func() bool) {
		t.Helper()
		deadline := time.Now().Add(5 * time.Second)
		for !cond() {
			if time.Now().After(deadline) {
				t.Fatalf("timed out waiting until %s", what)
			}
			time.Sleep(5 * time.Millisecond)
		}
	}
	if writing() {
		t.Fatal("a writer exists before anything was pushed")
	}
	p.conn.Push([]byte("one"))
	if !writing() {
		t.Fatal("no writer right after a push")
	}
	readFrame(t, p.client)
	waitFor("the writer has gone", func() bool { return !writing() })
	p.conn.mu.Lock()
	items, spare := p.conn.q.items, p.conn.q.spare
	p.conn.mu.Unlock()
	if items != nil || spare != nil {
		t.Errorf("an idle connection holds queue arrays: items cap %d, spare cap %d", cap(items), cap(spare))
	}
	// The next push starts a new writer; the message still arrives.
	p.conn.Push([]byte("two"))
	if got := readFrame(t, p.client); got != "two" {
		t.Errorf("after the writer left, client got %q; want two", got)
	}
	// A ping starts a writer that leaves as soon as the ping is out.
	waitFor("the second writer has gone", func() bool { return !writing() })
	pinged := make(chan struct{}, 1)
	p.client.SetPingHandler(func(string) error { pinged <- struct{}{}; return nil })
	go p.client.ReadMessage() // runs the ping handler; ends at cleanup
	p.conn.Ping()
	select {
	case <-pinged:
	case <-time.After(5 * time.Second):
		t.Fatal("no ping reached the client")
	}
	waitFor("the ping writer has gone", func() bool { return !writing() })
}

// TestOrderAcrossWriters pushes from one goroutine with pauses longer and
// shorter than WriterIdle, so that writers come and go while messages
// flow; the client must see every message once, in order.
func TestOrderAcrossWriters(t *testing.T) {
	cfg := testConfig()
	cfg.WriterIdle = time.Millisecond
	cfg.QueueLimit = 1000
	p := dialPair(t, cfg, false)
	p.start(t)
	const n = 300
	go func() {
		for i := range n {
			if _, err := p.conn.Push([]byte(fmt.Sprint(i))); err != nil {
				t.Errorf("push %d: %v", i, err)
				return
			}
			if i%7 == 0 {
				time.Sleep(2 * time.Millisecond) // past WriterIdle: the writer may leave
			}
		}
	}()
	readNumbered(t, p.client, n)
}

// readNumbered reads until the client has seen messages "0" to n-1, and
// fails the test on any other message or order.
func readNumbered(t *testing.T, c *websocket.Conn, n int) {
	t.Helper()
	for next := 0; next < n; {
		for _, m := range strings.Split(readFrame(t, c), "\n") {
			if m != fmt.Sprint(next) {
				t.Fatalf("got %q; want %d", m, next)
			}
			next++
		}
	}
}

// TestCloseRacesPush closes a connection while several goroutines push:
// the client must see a gapless prefix of each pusher's messages, then the
// close frame; Closed comes once; pushes after the close fail with
// ErrClosed.
func TestCloseRacesPush(t *testing.T) {
	for round := range 20 {
		t.Run(fmt.Sprint(round), func(t *testing.T) {
			cfg := testConfig()
			cfg.WriterIdle = time.Millisecond
			cfg.QueueLimit = 10000
			p := dialPair(t, cfg, false)
			p.start(t)
			const pushers, most = 4, 2000 // together below QueueLimit
			var wg sync.WaitGroup
			for g := range pushers {
				wg.Add(1)
				go func() {
					defer wg.Done()
					for i := range most {
						if _, err := p.conn.Push([]byte(fmt.Sprintf("%d:%d", g, i))); err != nil {
							if !errors.Is(err, ErrClosed) {
								t.Errorf("push: %v", err)
							}
							return
						}
					}
				}()
			}
			time.Sleep(time.Duration(round%5) * time.Millisecond)
			bye := Disconnect{Code: CloseNormal, Reason: "bye"}
			p.conn.Close(bye)
			wg.Wait()
			next := make([]int, pushers)
			p.client.SetReadDeadline(time.Now().Add(10 * time.Second))
			for {
				_, data, err := p.client.ReadMessage()
				if err != nil {
					var ce *websocket.CloseError
					if !errors.As(err, &ce) || ce.Code != CloseNormal || ce.Text != "bye" {
						t.Fatalf("client read ended with %v; want close 1000 bye", err)
					}
					break
				}
				for _, m := range strings.Split(string(data), "\n") {
					var g, i int
					if _, err := fmt.Sscanf(m, "%d:%d", &g, &i); err != nil || g >= pushers {
						t.Fatalf("bad message %q", m)
					}
					if i != next[g] {
						t.Fatalf("pusher %d: got %d; want %d", g, i, next[g])
					}
					next[g]++
				}
			}
			if c := p.rec.waitClosed(t); c.d != bye {
				t.Errorf("Closed(%+v); want %+v", c.d, bye)
			}
			if _, err := p.conn.Push([]byte("late")); !errors.Is(err, ErrClosed) {
				t.Errorf("push after close: %v; want ErrClosed", err)
			}
			if n := p.rec.calls.Load(); n != 1 {
				t.Errorf("Closed called %d times; want 1", n)
			}
		})
	}
}

func TestQueueLimit(t *testing.T) {
	cfg := testConfig()
	cfg.QueueLimit = 3
	p := dialPair(t, cfg, false)
	p.start(t)
	// Hold the lock so that no writer can drain while we fill the queue.
	p.conn.mu.Lock()
	for i := range 3 {
		p.conn.q.push([]byte("x"), cfg.QueueLimit)
		_ = i
	}
	p.conn.mu.Unlock()
	if n, err := p.conn.Push([]byte("over")); !errors.Is(err, ErrQueueFull) || n != 3 {
		t.Errorf("Push on a full queue = %d, %v; want 3, ErrQueueFull", n, err)
	}
}

func TestServerClose(t *testing.T) {
	p := dialPair(t, testConfig(), false)
	p.start(t)
	p.conn.Push([]byte("last words"))
	d := Disconnect{Code: 1013, Reason: "slow consumer", Label: "slow_consumer"}
	p.conn.Close(d)
	if got := readFrame(t, p.client); got != "last words" {
		t.Errorf("before the close the client got %q; want the queued message", got)
	}
	ce := closeFrame(t, p.client) // gorilla's client replies to it
	if ce.Code != 1013 || ce.Text != "slow consumer" {
		t.Errorf("close frame %d %q; want 1013 slow consumer", ce.Code, ce.Text)
	}
	if c := p.rec.waitClosed(t); c.d != d || c.err != nil {
		t.Errorf("Closed(%+v, %v); want %+v, nil", c.d, c.err, d)
	}
}

func TestPeerClose(t *testing.T) {
	p := dialPair(t, testConfig(), false)
	p.start(t)
	p.client.WriteMessage(websocket.TextMessage, []byte("said first"))
	p.client.WriteMessage(websocket.CloseMessage, websocket.FormatCloseMessage(1001, "tab closed"))
	if got := p.rec.message(t); got != "said first" {
		t.Errorf("handler got %q; want the message sent before the close", got)
	}
	c := p.rec.waitClosed(t)
	if c.d != PeerClosed(1001) || c.d.Label != "" {
		t.Errorf("Closed(%+v); want PeerClosed(1001), not counted", c.d)
	}
	// The server echoes the code, with a reason like every close it sends.
	if ce := closeFrame(t, p.client); ce.Code != 1001 || ce.Text != "close acknowledged" {
		t.Errorf("server's reply is %d %q; want 1001 close acknowledged", ce.Code, ce.Text)
	}
}

// masked builds a client frame whose first header byte is b0 (FIN, RSV
// and opcode bits), masked as clients must.
func masked(b0 byte, payload []byte) []byte {
	f := appendHeader(nil, b0&0x0f, len(payload))
	f[0] = b0
	f[1] |= 0x80
	key := []byte{1, 2, 3, 4}
	f = append(f, key...)
	for i, c := range payload {
		f = append(f, c^key[i&3])
	}
	return f
}

// sendRaw writes frames straight onto the client's socket.
func sendRaw(c *websocket.Conn, frames ...[]byte) {
	c.NetConn().Write(bytes.Join(frames, nil))
}

func TestReaderEnds(t *testing.T) {
	tests := []struct {
		name       string
		send       func(c *websocket.Conn)
		wantCode   int
		wantReason string
		want       Disconnect
	}{
		{
			name:       "600-byte message",
			send:       func(c *websocket.Conn) { c.WriteMessage(websocket.TextMessage, bytes.Repeat([]byte("x"), 600)) },
			wantCode:   CloseTooBig,
			wantReason: "message over 512 bytes",
			want:       testTooBig,
		},
		{
			name: "513 bytes in two fragments",
			send: func(c *websocket.Conn) {
				sendRaw(c, masked(0x01, bytes.Repeat([]byte("x"), 300)), masked(0x80, bytes.Repeat([]byte("y"), 213)))
			},
			wantCode:   CloseTooBig,
			wantReason: "message over 512 bytes",
			want:       testTooBig,
		},
		{
			name:       "unmasked frame",
			send:       func(c *websocket.Conn) { c.NetConn().Write(appendHeader(nil, opText, 0)) },
			wantCode:   CloseProtocol,
			wantReason: "protocol error: client frames must be masked",
			want: Disconnect{Code: CloseProtocol, Reason: "protocol error: client frames must be masked",
				Label: "protocol_error"},
		},
		{
			name:       "reserved bits",
			send:       func(c *websocket.Conn) { sendRaw(c, masked(0xC1, []byte("hi"))) },
			wantCode:   CloseProtocol,
			wantReason: "protocol error: reserved bits set: no extension was negotiated",
		},
		{
			name:       "continuation without a start",
			send:       func(c *websocket.Conn) { sendRaw(c, masked(0x80, []byte("hi"))) },
			wantCode:   CloseProtocol,
			wantReason: "protocol error: continuation frame without a message to continue",
		},
		{
			name:       "bad close code",
			send:       func(c *websocket.Conn) { sendRaw(c, masked(0x88, []byte{0x03, 0xED})) }, // 1005
			wantCode:   CloseProtocol,
			wantReason: "protocol error: invalid close code 1005",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := dialPair(t, testConfig(), false)
			p.start(t)
			tt.send(p.client)
			ce := closeFrame(t, p.client)
			if ce.Code != tt.wantCode || ce.Text != tt.wantReason {
				t.Errorf("close frame %d %q; want %d %q", ce.Code, ce.Text, tt.wantCode, tt.wantReason)
			}
			c := p.rec.waitClosed(t)
			if tt.want != (Disconnect{}) && c.d != tt.want {
				t.Errorf("Closed(%+v); want %+v", c.d, tt.want)
			}
			if c.d.Code != tt.wantCode || c.d.Label == "" {
				t.Errorf("Closed(%+v); want code %d and a label", c.d, tt.wantCode)
			}
		})
	}
}

func TestFragmentsAndInterleavedPing(t *testing.T) {
	p := dialPair(t, testConfig(), false)
	p.start(t)
	pongs := make(chan string, 1)
	p.client.SetPongHandler(func(s string) error { pongs <- s; return nil })
	// Fragments of one message with a ping between them, then a binary
	// message.
	sendRaw(p.client, masked(0x01, []byte("hel")), masked(0x89, []byte("p1")), masked(0x80, []byte("lo")),
		masked(0x82, []byte{1, 2}))
	if got := p.rec.message(t); got != "hello" {
		t.Errorf("handler got %q; want hello", got)
	}
	if got := p.rec.message(t); got != "binary:\x01\x02" {
		t.Errorf("handler got %q; want the binary message", got)
	}
	go p.client.ReadMessage() // runs the pong handler
	select {
	case s := <-pongs:
		if s != "p1" {
			t.Errorf("pong payload %q; want p1", s)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("no pong")
	}
}

// TestFramesInOneSegment sends two frames in one socket write, so the
// second is already in the server's read buffer when the first has been
// handled: the reader must not wait for the socket before reading it.
func TestFramesInOneSegment(t *testing.T) {
	p := dialPair(t, testConfig(), false)
	p.start(t)
	sendRaw(p.client, masked(0x81, []byte("first")), masked(0x81, []byte("second")))
	for _, want := range []string{"first", "second"} {
		if got := p.rec.message(t); got != want {
			t.Errorf("handler got %q; want %q", got, want)
		}
	}
}

func TestPongTimeout(t *testing.T) {
	cfg := testConfig()
	cfg.PongWait = 200 * time.Millisecond
	p := dialPair(t, cfg, false)
	p.start(t)
	start := time.Now()
	c := p.rec.waitClosed(t) // the client never reads, so never pongs
	if c.d != testPongTimeout {
		t.Errorf("Closed(%+v); want PongTimeout", c.d)
	}
	if el := time.Since(start); el < cfg.PongWait {
		t.Errorf("closed after %v; want at least PongWait", el)
	}
}

func TestPongsKeepConnection(t *testing.T) {
	cfg := testConfig()
	cfg.PongWait = 300 * time.Millisecond
	p := dialPair(t, cfg, false)
	p.start(t)
	go func() { // the client answers pings while it reads
		for {
			if _, _, err := p.client.ReadMessage(); err != nil {
				return
			}
		}
	}()
	for range 10 {
		p.conn.Ping()
		time.Sleep(100 * time.Millisecond)
	}
	select {
	case c := <-p.rec.closed:
		t.Fatalf("connection ended (%+v) although the peer ponged", c.d)
	default:
	}
}

func TestWriteTimeout(t *testing.T) {
	cfg := testConfig()
	cfg.WriteWait = 200 * time.Millisecond
	cfg.QueueLimit = 100000
	p := dialPair(t, cfg, false)
	p.start(t)
	// The client never reads: once the socket buffers are full, the
	// writer's write blocks until its deadline.
	big := bytes.Repeat([]byte("x"), 64<<10)
	deadline := time.Now().Add(10 * time.Second)
	for {
		if _, err := p.conn.Push(big); err != nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the queue never closed")
		}
		time.Sleep(time.Millisecond)
	}
	c := p.rec.waitClosed(t)
	if c.d != testWriteTimeout {
		t.Errorf("Closed(%+v, %v); want WriteTimeout", c.d, c.err)
	}
}

func TestAbort(t *testing.T) {
	p := dialPair(t, testConfig(), false)
	p.start(t)
	p.conn.Abort()
	if c := p.rec.waitClosed(t); c.d != ConnLost {
		t.Errorf("Closed(%+v); want ConnLost", c.d)
	}
	if _, err := p.conn.Push([]byte("x")); !errors.Is(err, ErrClosed) {
		t.Errorf("push after Abort: %v; want ErrClosed", err)
	}
}

func TestMessagesAfterCloseAreDropped(t *testing.T) {
	p := dialPair(t, testConfig(), false)
	p.start(t)
	p.client.WriteMessage(websocket.TextMessage, []byte("before"))
	if got := p.rec.message(t); got != "before" {
		t.Fatalf("handler got %q", got)
	}
	p.conn.Close(Disconnect{Code: CloseNormal, Reason: "bye"})
	p.client.WriteMessage(websocket.TextMessage, []byte("after"))
	closeFrame(t, p.client)
	p.rec.waitClosed(t)
	select {
	case m := <-p.rec.msgs:
		t.Errorf("handler got %q after Close", m)
	default:
	}
}

// panicker is a recorder whose Message panics.
type panicker struct{ *recorder }

func (p panicker) Message([]byte, bool) { panic("handler bug") }

func TestPanics(t *testing.T) {
	t.Run("handler", func(t *testing.T) {
		p := dialPair(t, testConfig(), false)
		p.conn.Start(panicker{p.rec})
		p.client.WriteMessage(websocket.TextMessage, []byte("boom"))
		if ce := closeFrame(t, p.client); ce.Code != CloseInternal {
			t.Errorf("close code %d; want 1011", ce.Code)
		}
		c := p.rec.waitClosed(t)
		pe, ok := errors.AsType[*PanicError](c.err)
		if c.d != testInternal || !ok || pe.Value != "handler bug" || !bytes.Contains(pe.Stack, []byte("conn_test.go")) {
			t.Errorf("Closed(%+v, %v); want Internal with the panic and its stack", c.d, c.err)
		}
	})
	t.Run("writer", func(t *testing.T) {
		t.Cleanup(func() { testHookWrite = nil })
		testHookWrite = func() { panic("writer bug") }
		p := dialPair(t, testConfig(), false)
		p.start(t)
		p.conn.Push([]byte("boom"))
		c := p.rec.waitClosed(t)
		if pe, ok := errors.AsType[*PanicError](c.err); c.d != testInternal || !ok || pe.Value != "writer bug" {
			t.Errorf("Closed(%+v, %v); want Internal with the writer's panic", c.d, c.err)
		}
		// Nothing was written: the socket just closed.
		p.client.SetReadDeadline(time.Now().Add(5 * time.Second))
		if _, _, err := p.client.ReadMessage(); !websocket.IsCloseError(err, websocket.CloseAbnormalClosure) {
			t.Errorf("client read %v; want 1006 (no close frame)", err)
		}
	})
}

// TestNoLostWakeup pushes many messages from one goroutine while writers
// come and go (WriterIdle is tiny), and the client counts them. A lost
// wake-up — a message queued with no writer to take it — would leave the
// client waiting and fail on its read deadline; every message must arrive
// once, in order.
func TestNoLostWakeup(t *testing.T) {
	n := 200000
	if raceEnabled {
		n = 30000
	}
	cfg := testConfig()
	cfg.WriterIdle = time.Microsecond
	cfg.QueueLimit = n
	p := dialPair(t, cfg, false)
	p.start(t)
	go func() {
		for i := range n {
			if _, err := p.conn.Push([]byte(fmt.Sprint(i))); err != nil {
				t.Errorf("push %d: %v", i, err)
				return
			}
			if i%100 == 0 {
				time.Sleep(10 * time.Microsecond) // long enough for the writer to leave
			}
		}
	}()
	readNumbered(t, p.client, n)
}

// TestBurstMemoryGivenBack: after a burst has been written, a writer that
// stays (it is not idle yet) keeps no array bigger than keepBatchCap, and
// the arrays it keeps pin no messages.
func TestBurstMemoryGivenBack(t *testing.T) {
	cfg := testConfig()
	cfg.WriterIdle = time.Minute
	cfg.QueueLimit = 256
	p := dialPair(t, cfg, false)
	p.start(t)
	p.conn.mu.Lock()
	for range 200 {
		p.conn.q.push([]byte("burst"), cfg.QueueLimit)
	}
	p.conn.wakeLocked()
	p.conn.mu.Unlock()
	readFrame(t, p.client)
	for range 3 { // small rounds after it
		p.conn.Push([]byte("small"))
		readFrame(t, p.client)
	}
	p.conn.mu.Lock()
	defer p.conn.mu.Unlock()
	if !p.conn.writing {
		t.Fatal("the writer left; this test needs it to stay")
	}
	for name, arr := range map[string][][]byte{"items": p.conn.q.items, "spare": p.conn.q.spare} {
		if cap(arr) > keepBatchCap {
			t.Errorf("queue %s keeps a %d-slot array after a burst; want at most %d", name, cap(arr), keepBatchCap)
		}
		for i, m := range arr[:cap(arr)] {
			if m != nil {
				t.Errorf("queue %s still points at message %d", name, i)
			}
		}
	}
}

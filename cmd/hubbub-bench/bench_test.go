package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gorilla/websocket"
)

// TestMain fails the run if goroutines outlive the tests: every goroutine of
// a Bench must end before run returns.
func TestMain(m *testing.M) {
	before := liveGoroutines()
	code := m.Run()
	if code == 0 {
		deadline := time.Now().Add(5 * time.Second)
		for liveGoroutines() > before && time.Now().Before(deadline) {
			time.Sleep(50 * time.Millisecond)
		}
		if n := liveGoroutines(); n > before {
			buf := make([]byte, 1<<20)
			buf = buf[:runtime.Stack(buf, true)]
			fmt.Fprintf(os.Stderr, "leaked goroutines: %d before, %d after\n%s\n", before, n, buf)
			code = 1
		}
	}
	os.Exit(code)
}

// liveGoroutines counts goroutines except os/signal's, which the runtime
// keeps for the life of the process once anything called signal.Notify.
func liveGoroutines() int {
	buf := make([]byte, 1<<20)
	buf = buf[:runtime.Stack(buf, true)]
	return runtime.NumGoroutine() - strings.Count(string(buf), "os/signal.loop()")
}

// relay is a test fixture: a one-room broadcast server that relays every
// text frame to every client, like the gorilla chat example. Its flavour
// picks the wire format: "json" (hubbub NDJSON events with a room_changed
// welcome), "text" (hubbub text lines with a "* you are" welcome) or "raw"
// (bare text, no welcome). Queued messages are coalesced into one frame
// joined by '\n', as both hubbub and gorilla do.
type relay struct {
	flavour string
	// dropEvery, if > 0, silently skips every n-th message: a lossy server.
	dropEvery int
	// dupEvery, if > 0, broadcasts every n-th message twice.
	dupEvery int
	// kickAfter, if > 0, closes every client with 1013 after that many
	// messages, like a hub evicting slow consumers.
	kickAfter int

	mu sync.Mutex
	// Guarded by mu.
	clients map[*relayClient]struct{}
	count   int
	kicked  bool
}

// relayClient is one fixture connection. Only its reader closes send, right
// after deleting it from relay.clients, so the close happens once.
type relayClient struct {
	ws   *websocket.Conn
	name string
	send chan []byte
}

// newRelay starts the fixture on an httptest server and returns its ws URL.
func newRelay(t *testing.T, r *relay) string {
	t.Helper()
	r.clients = map[*relayClient]struct{}{}
	ts := httptest.NewServer(r)
	t.Cleanup(ts.Close)
	return "ws" + strings.TrimPrefix(ts.URL, "http") + "/ws"
}

// ServeHTTP upgrades and runs one client until it leaves.
func (r *relay) ServeHTTP(w http.ResponseWriter, req *http.Request) {
	up := websocket.Upgrader{ReadBufferSize: 1024, WriteBufferSize: 1024}
	ws, err := up.Upgrade(w, req, nil)
	if err != nil {
		return
	}
	ws.SetReadLimit(maxFrame)
	c := &relayClient{ws: ws, name: req.URL.Query().Get("name"), send: make(chan []byte, 4096)}
	r.mu.Lock()
	r.clients[c] = struct{}{}
	n := len(r.clients)
	r.mu.Unlock()
	// The welcome goes first in the queue, so the client learns it joined
	// before any message it could be counted for.
	switch r.flavour {
	case formatJSON:
		c.send <- fmt.Appendf(nil, `{"type":"room_changed","payload":{"room":"bench","name":%q,"members":[],"count":%d}}`, c.name, n)
	case formatText:
		c.send <- fmt.Appendf(nil, "* you are %s in bench (%d members)", c.name, n)
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		c.writeLoop()
	}()
	r.readLoop(c)
	<-done
}

// readLoop relays c's frames until c goes away, then unregisters it.
func (r *relay) readLoop(c *relayClient) {
	defer func() {
		r.mu.Lock()
		delete(r.clients, c)
		close(c.send)
		r.mu.Unlock()
	}()
	for {
		_, data, err := c.ws.ReadMessage()
		if err != nil {
			return
		}
		text := string(data)
		if r.flavour == formatJSON {
			var ev struct {
				Type    string `json:"type"`
				Payload struct {
					Message string `json:"message"`
				} `json:"payload"`
			}
			if err := json.Unmarshal(data, &ev); err != nil || ev.Type != "send_message" {
				continue
			}
			text = ev.Payload.Message
		}
		var out []byte
		switch r.flavour {
		case formatJSON:
			out = fmt.Appendf(nil, `{"type":"new_message","payload":{"room":"bench","from":%q,"message":%q}}`, c.name, text)
		case formatText:
			out = fmt.Appendf(nil, "[bench] %s: %s", c.name, text)
		default:
			out = []byte(text)
		}
		r.broadcast(out)
	}
}

// broadcast queues out for every client, applying the fault options.
func (r *relay) broadcast(out []byte) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.count++
	if r.kickAfter > 0 && r.count > r.kickAfter {
		if !r.kicked {
			r.kicked = true
			msg := websocket.FormatCloseMessage(websocket.CloseTryAgainLater, "slow consumer")
			for c := range r.clients {
				_ = c.ws.WriteControl(websocket.CloseMessage, msg, time.Now().Add(time.Second))
			}
		}
		return
	}
	if r.dropEvery > 0 && r.count%r.dropEvery == 0 {
		return
	}
	copies := 1
	if r.dupEvery > 0 && r.count%r.dupEvery == 0 {
		copies = 2
	}
	for c := range r.clients {
		for range copies {
			select {
			case c.send <- out:
			default: // a test fixture may drop; the bench must notice
			}
		}
	}
}

// writeLoop writes queued frames, coalescing what is already queued.
func (c *relayClient) writeLoop() {
	defer c.ws.Close()
	for msg := range c.send {
		var frame []byte
		frame = append(frame, msg...)
		for n := len(c.send); n > 0; n-- {
			more, ok := <-c.send
			if !ok {
				break
			}
			frame = append(append(frame, '\n'), more...)
		}
		_ = c.ws.SetWriteDeadline(time.Now().Add(5 * time.Second))
		if err := c.ws.WriteMessage(websocket.TextMessage, frame); err != nil {
			// Close so the reader ends too, then drain until it closes send.
			c.ws.Close()
			for range c.send {
			}
			return
		}
	}
}

// testConfig is a short, small fanout against url.
func testConfig(url string) Config {
	cfg := defaultConfig()
	cfg.URL = url
	cfg.Clients = 8
	cfg.Senders = 3
	cfg.Rate = 20
	cfg.Size = 100
	cfg.Warmup = 200 * time.Millisecond
	cfg.Duration = time.Second
	cfg.Drain = 2 * time.Second
	cfg.CloseTimeout = 2 * time.Second
	return cfg
}

// runBench runs cfg to completion with logs going to t.Log.
func runBench(t *testing.T, cfg Config) *Report {
	t.Helper()
	log := slog.New(slog.NewTextHandler(tLogWriter{t}, &slog.HandlerOptions{Level: slog.LevelDebug}))
	b, err := newBench(cfg, log)
	if err != nil {
		t.Fatalf("newBench: %v", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	rep, err := b.run(ctx)
	if err != nil {
		t.Fatalf("run: %v", err)
	}
	var sb strings.Builder
	_ = rep.writeText(&sb)
	t.Log("\n" + sb.String())
	return rep
}

// tLogWriter sends slog output to t.Log.
type tLogWriter struct{ t *testing.T }

func (w tLogWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimSpace(string(p)))
	return len(p), nil
}

// TestFanoutEndToEnd runs a short fanout against the relay fixture in every
// flavour and checks the report's bookkeeping, including that lost and
// duplicated messages are noticed.
func TestFanoutEndToEnd(t *testing.T) {
	tests := []struct {
		name      string
		relay     *relay
		raw       bool
		format    string
		wantRatio func(float64) bool
		wantDups  bool
	}{
		{name: "json", relay: &relay{flavour: formatJSON}, format: formatJSON, wantRatio: equals1},
		{name: "text", relay: &relay{flavour: formatText}, format: formatText, wantRatio: equals1},
		{name: "raw", relay: &relay{flavour: "raw"}, raw: true, wantRatio: equals1},
		{name: "lossy", relay: &relay{flavour: formatJSON, dropEvery: 7}, format: formatJSON,
			wantRatio: func(r float64) bool { return r > 0.7 && r < 0.95 }},
		{name: "duplicating", relay: &relay{flavour: "raw", dupEvery: 5}, raw: true, wantRatio: equals1, wantDups: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := testConfig(newRelay(t, tt.relay))
			cfg.Raw = tt.raw
			cfg.Format = tt.format
			if cfg.Format == "" {
				cfg.Format = formatText
			}
			rep := runBench(t, cfg)

			if rep.ConnOK != int64(cfg.Clients) || rep.ConnFailed != 0 {
				t.Errorf("connections ok/failed = %d/%d; want %d/0 (%s)", rep.ConnOK, rep.ConnFailed, cfg.Clients, rep.FirstConnError)
			}
			// At most Senders*Rate*Duration (60) messages, and at least one:
			// how many a starved sender gets out on a loaded machine is not
			// something a unit test can pin down.
			if rep.SentMeasured < 1 || rep.SentMeasured > 80 {
				t.Errorf("sent in window = %d; want 1 to 80", rep.SentMeasured)
			}
			if want := rep.SentMeasured * int64(cfg.Clients); rep.Expected != want {
				t.Errorf("expected = %d; want sent %d x clients %d = %d", rep.Expected, rep.SentMeasured, cfg.Clients, want)
			}
			if !tt.wantRatio(rep.DeliveryRatio) {
				t.Errorf("delivery ratio = %v (%d of %d)", rep.DeliveryRatio, rep.Received, rep.Expected)
			}
			if got := rep.Duplicates > 0; got != tt.wantDups {
				t.Errorf("duplicates = %d; want some: %v", rep.Duplicates, tt.wantDups)
			}
			if rep.ReceivedAll != rep.Received {
				t.Errorf("received_all %d != received %d without shards", rep.ReceivedAll, rep.Received)
			}
			l := rep.Latency
			if l.Count != rep.Received || l.P50 <= 0 || l.P99 < l.P50 || l.P999 < l.P99 || l.Max < l.P999 {
				t.Errorf("latency = %+v; want count %d and 0 < p50 <= p99 <= p99.9 <= max", l, rep.Received)
			}
			if rep.Coalescing < 1 || rep.MessageFrames == 0 {
				t.Errorf("coalescing = %v over %d frames; want >= 1", rep.Coalescing, rep.MessageFrames)
			}
			if len(rep.UnexpectedCloses) != 0 {
				t.Errorf("unexpected closes = %v; want none", rep.UnexpectedCloses)
			}
			if len(rep.Timeline) == 0 {
				t.Errorf("empty timeline")
			}
		})
	}
}

// equals1 accepts a perfect delivery ratio.
func equals1(r float64) bool { return r == 1 }

// TestUnexpectedCloseCodes checks that a server-side close is reported under
// its code and reason, and that it does not hang the run.
func TestUnexpectedCloseCodes(t *testing.T) {
	cfg := testConfig(newRelay(t, &relay{flavour: formatJSON, kickAfter: 5}))
	cfg.Warmup = 0
	rep := runBench(t, cfg)
	if got := rep.UnexpectedCloses["1013 slow consumer"]; got != int64(cfg.Clients) {
		t.Errorf("closes = %v; want %d x \"1013 slow consumer\"", rep.UnexpectedCloses, cfg.Clients)
	}
	if rep.DeliveryRatio >= 1 {
		t.Errorf("delivery ratio = %v after everyone was kicked; want < 1", rep.DeliveryRatio)
	}
}

// TestShardsShareRooms runs two shards of one run side by side: each counts
// exactly its own senders' messages to its own clients, and also sees the
// other shard's messages.
func TestShardsShareRooms(t *testing.T) {
	url := newRelay(t, &relay{flavour: formatJSON})
	reps := make([]*Report, 2)
	var wg sync.WaitGroup
	for i := range reps {
		wg.Add(1)
		go func() {
			defer wg.Done()
			cfg := testConfig(url)
			cfg.Shard = Shard{Index: i, Count: 2}
			cfg.Senders = 4 // two per shard
			reps[i] = runBench(t, cfg)
		}()
	}
	wg.Wait()
	for i, rep := range reps {
		if rep.Clients != 4 || rep.Senders != 2 {
			t.Errorf("shard %d plans %d clients, %d senders; want 4, 2", i, rep.Clients, rep.Senders)
		}
		if rep.DeliveryRatio != 1 {
			t.Errorf("shard %d delivery ratio = %v (%d of %d)", i, rep.DeliveryRatio, rep.Received, rep.Expected)
		}
		if rep.ReceivedAll <= rep.Received {
			t.Errorf("shard %d received_all %d; want more than own %d", i, rep.ReceivedAll, rep.Received)
		}
	}
}

// TestChurnEndToEnd checks that churn reconnects without unexpected closes
// or duplicates. The delivery ratio is only roughly 1 here, by design.
func TestChurnEndToEnd(t *testing.T) {
	cfg := testConfig(newRelay(t, &relay{flavour: formatJSON}))
	cfg.Scenario = scenarioChurn
	cfg.Senders = 2
	cfg.ChurnRate = 20
	rep := runBench(t, cfg)
	if rep.Reconnects < 5 || rep.ReconnectFailed != 0 {
		t.Errorf("reconnects = %d, failed %d; want >= 5 and 0", rep.Reconnects, rep.ReconnectFailed)
	}
	if rep.Duplicates != 0 || len(rep.UnexpectedCloses) != 0 {
		t.Errorf("duplicates %d, closes %v; want none", rep.Duplicates, rep.UnexpectedCloses)
	}
	if rep.DeliveryRatio < 0.8 || rep.DeliveryRatio > 1.2 {
		t.Errorf("delivery ratio = %v; want about 1", rep.DeliveryRatio)
	}
}

// TestIdleProcStats holds connections without sending and reads the tool's
// own /proc stats as a stand-in for the server's.
func TestIdleProcStats(t *testing.T) {
	cfg := testConfig(newRelay(t, &relay{flavour: "raw"}))
	cfg.Raw = true
	cfg.Scenario = scenarioIdle
	cfg.ServerPID = os.Getpid()
	cfg.Duration = 300 * time.Millisecond
	rep := runBench(t, cfg)
	if rep.Sent != 0 || rep.Senders != 0 {
		t.Errorf("idle sent %d messages from %d senders; want none", rep.Sent, rep.Senders)
	}
	if rep.Server == nil || rep.Server.Conns != int64(cfg.Clients) || rep.Server.RSSEndKB <= 0 {
		t.Errorf("server stats = %+v; want %d conns and an RSS", rep.Server, cfg.Clients)
	}
}

// TestRunFlags drives main's run with bad flags: each must fail before any
// connection is made, with a message naming the problem.
func TestRunFlags(t *testing.T) {
	tests := []struct {
		args []string
		want string
	}{
		{[]string{"-url", "ws://10.0.0.1:8080/ws"}, "pass -allow-remote"},
		{[]string{"-url", "http://127.0.0.1/ws"}, "scheme"},
		{[]string{"-scenario", "storm"}, "unknown scenario"},
		{[]string{"-size", "600"}, "-size"},
		{[]string{"-shard", "2/2"}, "shard"},
		{[]string{"-source-ips", "192.168.1.1"}, "not loopback"},
		{[]string{"-header", "Upgrade: x"}, "set by the WebSocket dialer"},
		{[]string{"-senders", "0"}, "-senders"},
		{[]string{"-proto", "mqtt"}, "unknown protocol"},
		{[]string{"-raw", "-proto", "centrifugo"}, "conflicts"},
		{[]string{"-login", "alice"}, "want user:password"},
		{[]string{"-login", ":pw"}, "want user:password"},
		{[]string{"-login", "a:b", "-jwt-secret", "k"}, "give only one"},
		{[]string{"-ticket", "t", "-jwt-secret", "k"}, "give only one"},
		{[]string{"-login", "a:b", "-proto", "raw"}, "hubbub's auth"},
		{[]string{"-jwt-secret", "k", "-proto", "centrifugo"}, "hubbub's auth"},
		{[]string{"-jwt-secret", "k", "-header", "Authorization: Bearer x"}, "override"},
	}
	for _, tt := range tests {
		var out, errb strings.Builder
		err := run(context.Background(), tt.args, &out, &errb)
		if err == nil || !strings.Contains(err.Error()+errb.String(), tt.want) {
			t.Errorf("run(%q) = %v; want error containing %q", tt.args, err, tt.want)
		}
	}
}

// TestAllowRemote parses -allow-remote from the command line: a remote -url
// is refused without it; with it, newBench accepts the target (nothing is
// dialled here) and warns in one line that it is for servers you own.
func TestAllowRemote(t *testing.T) {
	tests := []struct {
		name     string
		args     []string
		wantErr  string
		wantWarn bool
	}{
		{name: "remote refused", args: []string{"-url", "ws://192.0.2.1:8080/ws"}, wantErr: "-allow-remote"},
		{name: "remote source refused", args: []string{"-source-ips", "192.0.2.7"}, wantErr: "-allow-remote"},
		{name: "remote allowed", args: []string{"-allow-remote", "-url", "ws://192.0.2.1:8080/ws"}, wantWarn: true},
		{name: "remote with sources", args: []string{"-allow-remote", "-url", "wss://192.0.2.1/ws", "-source-ips", "192.0.2.7-192.0.2.8"}, wantWarn: true},
		{name: "loopback needs no warning", args: []string{"-allow-remote", "-url", "ws://127.0.0.1:8080/ws"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var logs strings.Builder
			o, err := parseArgs(tt.args, io.Discard)
			if err == nil {
				_, err = newBench(o.cfg, slog.New(slog.NewTextHandler(&logs, nil)))
			}
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("%q: error %v; want one containing %q", tt.args, err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatalf("%q: %v", tt.args, err)
			}
			warned := strings.Contains(logs.String(), "only at servers you own")
			if warned != tt.wantWarn || strings.Count(logs.String(), "\n") > 1 {
				t.Errorf("%q logged %q; want the one-line warning: %v", tt.args, logs.String(), tt.wantWarn)
			}
		})
	}
}

// closedPort returns a ws URL on a loopback port where nothing listens.
func closedPort(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	return "ws://" + addr + "/ws"
}

// TestEarlyStop points the tool at servers nobody can connect to: it must
// give up within seconds, not after warmup, window and drain (40 s here),
// fail with exit code 1 and say what went wrong.
func TestEarlyStop(t *testing.T) {
	refusing := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		http.Error(w, "missing ticket: log in with POST /login", http.StatusUnauthorized)
	}))
	t.Cleanup(refusing.Close)
	refusingURL := "ws" + strings.TrimPrefix(refusing.URL, "http") + "/ws"
	long := []string{"-warmup", "5s", "-duration", "30s", "-drain", "5s"}
	tests := []struct {
		name       string
		args       []string
		wantStderr []string
		wantStdout []string
	}{
		{name: "closed port", args: append([]string{"-url", closedPort(t), "-clients", "8"}, long...),
			wantStderr: []string{"no connection opened", "connection refused"}, wantStdout: []string{"0 ok, 8 failed"}},
		// Without giving up, 200 dials at 20/s would take 10 s.
		{name: "closed port, ramped", args: append([]string{"-url", closedPort(t), "-clients", "200", "-ramp", "20"}, long...),
			wantStderr: []string{"no connection opened", "connection refused"}, wantStdout: []string{"not attempted"}},
		{name: "handshake refused", args: append([]string{"-url", refusingURL, "-clients", "30"}, long...),
			wantStderr: []string{"no connection opened", "HTTP 401 Unauthorized: missing ticket: log in with POST /login)"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var stdout, stderr strings.Builder
			began := time.Now()
			code := runMain(context.Background(), tt.args, &stdout, &stderr)
			took := time.Since(began)
			t.Log("stderr:\n" + stderr.String() + "stdout:\n" + stdout.String())
			if took > 5*time.Second {
				t.Errorf("took %v; want an early stop within 5s", took)
			}
			if code != exitFail {
				t.Errorf("exit code %d; want %d", code, exitFail)
			}
			for _, want := range tt.wantStderr {
				if !strings.Contains(stderr.String(), want) {
					t.Errorf("stderr lacks %q", want)
				}
			}
			for _, want := range tt.wantStdout {
				if !strings.Contains(stdout.String(), want) {
					t.Errorf("stdout lacks %q", want)
				}
			}
		})
	}
}

// TestHelp asks for help in every spelling: it must exit 0, print the
// scenarios, the exit codes and the flags on stdout, and nothing on stderr.
// A flag that does not exist is a usage error pointing at -h.
func TestHelp(t *testing.T) {
	tests := []struct {
		args       []string
		want       int
		wantStdout []string
		wantStderr string
	}{
		{args: []string{"-h"}, want: exitPass},
		{args: []string{"-help"}, want: exitPass},
		{args: []string{"--help"}, want: exitPass},
		{args: []string{"-clients", "5", "-h"}, want: exitPass},
		{args: []string{"-nope"}, want: exitUsage, wantStderr: "-h lists scenarios and flags"},
		{args: []string{"fanout"}, want: exitUsage, wantStderr: "takes only flags"},
	}
	sections := []string{"Scenarios", "fanout", "rooms", "idle", "churn", "Exit status", "0  every check passed",
		"1  a check failed", "2  bad flags", "-max-conn-failures N", "-min-delivery", "-max-p99", "-allow-remote", "-url"}
	for _, tt := range tests {
		var stdout, stderr strings.Builder
		got := runMain(context.Background(), tt.args, &stdout, &stderr)
		if got != tt.want {
			t.Errorf("runMain(%q) = %d; want %d (stderr %q)", tt.args, got, tt.want, stderr.String())
		}
		if tt.want != exitPass {
			if !strings.Contains(stderr.String(), tt.wantStderr) || stdout.Len() != 0 {
				t.Errorf("runMain(%q): stderr %q, stdout %q; want %q on stderr only", tt.args, stderr.String(), stdout.String(), tt.wantStderr)
			}
			continue
		}
		if stderr.Len() != 0 {
			t.Errorf("runMain(%q) wrote %q on stderr; want nothing", tt.args, stderr.String())
		}
		for _, want := range sections {
			if !strings.Contains(stdout.String(), want) {
				t.Errorf("runMain(%q) help lacks %q", tt.args, want)
			}
		}
	}
}

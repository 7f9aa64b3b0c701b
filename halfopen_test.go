package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/gorilla/websocket"
)

// TestHalfOpenPeerRemoved connects a raw TCP client that completes the
// handshake and then goes silent: it neither reads nor answers pings nor
// closes, like a peer whose machine vanished. The server must drop it once
// PongWait passes without a pong, tell its room, forget it (gauge) and
// close its side of the socket.
func TestHalfOpenPeerRemoved(t *testing.T) {
	cfg := Config{PongWait: 400 * time.Millisecond, PingPeriod: 150 * time.Millisecond}
	s := newTestServer(t, cfg)
	watcher, _ := s.joined(t, "name", "watcher")

	u := validUpgrade(rfcKey)
	u.query = "name=ghost"
	start := time.Now()
	ghost, resp := u.send(t, s.ts.Listener.Addr().String())
	defer ghost.Close()
	if resp.StatusCode != http.StatusSwitchingProtocols {
		t.Fatalf("ghost handshake: status %d; want 101", resp.StatusCode)
	}
	var p presencePayload
	watcher.expect("presence").decode(t, &p)
	if p.Event != "join" || p.Name != "ghost" {
		t.Fatalf("presence %+v; want ghost joining", p)
	}
	// The watcher reads, so gorilla answers its pings and it stays.
	watcher.expect("presence").decode(t, &p)
	if p.Event != "leave" || p.Name != "ghost" {
		t.Fatalf("presence %+v; want ghost leaving", p)
	}
	if el := time.Since(start); el < cfg.PongWait {
		t.Errorf("ghost dropped after %v; want no sooner than PongWait %v", el, cfg.PongWait)
	}
	waitConns(t, s.hub, 1)

	// The server closed its end: what the ghost never read (greeting, pings,
	// a close frame) is followed by EOF, not by an open socket.
	ghost.SetReadDeadline(time.Now().Add(5 * time.Second))
	if n, err := io.Copy(io.Discard, ghost); err != nil {
		t.Errorf("ghost socket after drop: %v after %d bytes; want EOF", err, n)
	}
	watcher.say("still here")
	if m := watcher.expect("new_message").msg(t); m.Message != "still here" {
		t.Errorf("watcher got %q", m.Message)
	}
}

// TestSlowReaderDoesNotStallOthers runs a room of chatters, each sending
// timestamped messages and reading everything, next to a client that never
// reads. The silent reader must be evicted as a slow consumer (1013), and
// meanwhile every chatter must get every message, in order, with a p99
// latency under a second.
//
// The bound is about correctness, not speed: if the hub ever waited for the
// slow client, the others would stall until its queue drained (never) and
// their latency would grow without limit. A second is far above what a
// non-blocking hub shows on a busy 2-core machine under -race (tens of
// milliseconds), so the test does not flake on load.
func TestSlowReaderDoesNotStallOthers(t *testing.T) {
	const (
		chatters = 4
		interval = 5 * time.Millisecond // between one chatter's messages
		minEach  = 150                  // messages each chatter sends at least
		p99Bound = time.Second
		runBound = 60 * time.Second
	)
	var ln *shrinkingListener
	s := newServerWith(t, Config{}, testLogger(t), func(l net.Listener) net.Listener {
		ln = &shrinkingListener{Listener: l}
		return ln
	})
	conns := make([]*websocket.Conn, chatters)
	for i := range conns {
		p, _ := s.joined(t, "room", "busy", "name", fmt.Sprintf("c%d", i))
		conns[i] = p.conn
	}
	// Small socket buffers on both ends of the slow client's connection
	// (the receive buffer set before connecting, so the advertised window
	// is small from the start): its backlog then reaches its server-side
	// queue after a few hundred events rather than megabytes.
	ln.shrink.Store(true)
	nd := net.Dialer{Control: func(_, _ string, rc syscall.RawConn) error {
		var serr error
		err := rc.Control(func(fd uintptr) {
			serr = syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_RCVBUF, 4096)
		})
		return errors.Join(err, serr)
	}}
	d := websocket.Dialer{NetDial: nd.Dial}
	slow, _, err := d.Dial(s.wsURL("/ws", map[string][]string{"room": {"busy"}, "name": {"slow"}}), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer slow.Close()

	var (
		wg        sync.WaitGroup
		stop      = make(chan struct{})
		errc      = make(chan error, 2*chatters)
		latencies = make([][]time.Duration, chatters)
		sent      [chatters]atomic.Int64
	)
	for i, c := range conns {
		wg.Add(2)
		go func() { // reader: every message from every chatter, in order
			defer wg.Done()
			l, err := readChat(c, chatters)
			latencies[i] = l
			if err != nil {
				errc <- fmt.Errorf("chatter %d: %w", i, err)
			}
		}()
		go func() { // sender
			defer wg.Done()
			tick := time.NewTicker(interval)
			defer tick.Stop()
			for seq := 0; ; seq++ {
				msg := fmt.Sprintf("%d %d %d", i, seq, time.Now().UnixNano())
				select {
				case <-stop:
					msg = fmt.Sprintf("end %d %d", i, seq)
				case <-tick.C:
				}
				if err := sendMessage(c, msg); err != nil {
					errc <- fmt.Errorf("chatter %d send: %w", i, err)
					return
				}
				if strings.HasPrefix(msg, "end") {
					return
				}
				sent[i].Add(1)
			}
		}()
	}
	deadline := time.Now().Add(runBound)
	for {
		enough := s.hub.stats.slowConsumers.Load() > 0
		for i := range sent {
			enough = enough && sent[i].Load() >= minEach
		}
		if enough {
			break
		}
		if time.Now().After(deadline) {
			close(stop)
			wg.Wait()
			t.Fatalf("after %v: slow consumers %d, sent %v", runBound, s.hub.stats.slowConsumers.Load(), &sent)
		}
		time.Sleep(10 * time.Millisecond)
	}
	close(stop)
	wg.Wait()
	close(errc)
	for err := range errc {
		t.Error(err)
	}

	all := slices.Concat(latencies...)
	slices.Sort(all)
	if len(all) == 0 {
		t.Fatal("no latencies measured")
	}
	pct := func(q float64) time.Duration { return all[min(len(all)-1, int(q*float64(len(all))))] }
	t.Logf("%d deliveries to %d chatters: p50 %v, p99 %v, max %v",
		len(all), chatters, pct(0.50), pct(0.99), all[len(all)-1])
	if p99 := pct(0.99); p99 > p99Bound {
		t.Errorf("p99 latency %v with a slow reader in the room; want under %v", p99, p99Bound)
	}
	if n := s.hub.stats.slowConsumers.Load(); n != 1 {
		t.Errorf("slow consumers = %d; want 1 (only the silent reader)", n)
	}
	sp := &peer{t: t, conn: slow}
	if code := sp.closeCode(10 * time.Second); code != websocket.CloseTryAgainLater {
		t.Errorf("slow reader's close code %d; want 1013", code)
	}
}

// sendMessage sends msg as a JSON send_message frame.
func sendMessage(c *websocket.Conn, msg string) error {
	b, err := json.Marshal(map[string]any{"type": "send_message", "payload": map[string]string{"message": msg}})
	if err != nil {
		return err
	}
	c.SetWriteDeadline(time.Now().Add(5 * time.Second))
	return c.WriteMessage(websocket.TextMessage, b)
}

// readChat reads a JSON client's events until it has seen "end" from all n
// senders of TestSlowReaderDoesNotStallOthers. It checks that each sender's
// messages arrive complete and in order and returns their latencies. Safe
// to run off the test goroutine: it reports through its error.
func readChat(c *websocket.Conn, n int) ([]time.Duration, error) {
	var lat []time.Duration
	next := make([]int, n)
	for ends := 0; ends < n; {
		c.SetReadDeadline(time.Now().Add(10 * time.Second))
		_, data, err := c.ReadMessage()
		if err != nil {
			return lat, fmt.Errorf("read after %d messages: %w", len(lat), err)
		}
		now := time.Now()
		for line := range strings.SplitSeq(string(data), "\n") {
			var e event
			var m messagePayload
			if err := json.Unmarshal([]byte(line), &e); err != nil {
				return lat, fmt.Errorf("bad event %q: %w", line, err)
			}
			if e.Type != "new_message" {
				continue
			}
			if err := json.Unmarshal(e.Payload, &m); err != nil {
				return lat, err
			}
			var from, seq int
			var nanos int64
			if _, err := fmt.Sscanf(m.Message, "end %d %d", &from, &seq); err == nil {
				if seq != next[from] {
					return lat, fmt.Errorf("end from %d after %d messages; it sent %d", from, next[from], seq)
				}
				ends++
				continue
			}
			if _, err := fmt.Sscanf(m.Message, "%d %d %d", &from, &seq, &nanos); err != nil || from >= n {
				return lat, errors.New("unexpected message " + m.Message)
			}
			if seq != next[from] {
				return lat, fmt.Errorf("from %d got message %d; want %d", from, seq, next[from])
			}
			next[from]++
			lat = append(lat, now.Sub(time.Unix(0, nanos)))
		}
	}
	return lat, nil
}

// shrinkingListener gives connections accepted while shrink is set a small,
// fixed send buffer (which also turns off the kernel's send-buffer
// autotuning for them).
type shrinkingListener struct {
	net.Listener
	shrink atomic.Bool
}

func (l *shrinkingListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if tc, ok := c.(*net.TCPConn); ok && l.shrink.Load() {
		tc.SetWriteBuffer(4096)
	}
	return c, err
}

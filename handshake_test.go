package main

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"net/http"
	"runtime"
	"strings"
	"testing"
	"time"
)

// rawUpgrade is an upgrade request for /ws built by hand, so each test can
// break exactly one part of it.
type rawUpgrade struct {
	method  string
	query   string   // of /ws; default name=raw
	headers []string // "Name: value" lines after Host
}

// validUpgrade returns a correct RFC 6455 upgrade request with key.
func validUpgrade(key string) rawUpgrade {
	return rawUpgrade{method: "GET", headers: []string{
		"Upgrade: websocket",
		"Connection: Upgrade",
		"Sec-WebSocket-Key: " + key,
		"Sec-WebSocket-Version: 13",
	}}
}

// without returns a copy of u minus the header called name.
func (u rawUpgrade) without(name string) rawUpgrade {
	var hs []string
	for _, h := range u.headers {
		if !strings.HasPrefix(strings.ToLower(h), strings.ToLower(name)+":") {
			hs = append(hs, h)
		}
	}
	return rawUpgrade{method: u.method, query: u.query, headers: hs}
}

// with returns a copy of u with header line h added (after removing any
// header of the same name).
func (u rawUpgrade) with(h string) rawUpgrade {
	name, _, _ := strings.Cut(h, ":")
	v := u.without(name)
	v.headers = append(v.headers, h)
	return v
}

// send writes u to a new TCP connection to addr and reads the response
// head. The caller closes the connection.
func (u rawUpgrade) send(t *testing.T, addr string) (net.Conn, *http.Response) {
	t.Helper()
	conn, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	var b strings.Builder
	q := u.query
	if q == "" {
		q = "name=raw"
	}
	fmt.Fprintf(&b, "%s /ws?%s HTTP/1.1\r\nHost: %s\r\n", u.method, q, addr)
	for _, h := range u.headers {
		b.WriteString(h + "\r\n")
	}
	b.WriteString("\r\n")
	conn.SetDeadline(time.Now().Add(5 * time.Second))
	if _, err := io.WriteString(conn, b.String()); err != nil {
		conn.Close()
		t.Fatal(err)
	}
	resp, err := http.ReadResponse(bufio.NewReader(conn), &http.Request{Method: u.method})
	if err != nil {
		conn.Close()
		t.Fatalf("reading response to %s: %v", u.method, err)
	}
	return conn, resp
}

// rfcKey is the Sec-WebSocket-Key of RFC 6455's own example.
const rfcKey = "dGhlIHNhbXBsZSBub25jZQ=="

// TestMalformedHandshakeRejected sends broken upgrade requests over raw TCP.
// Each must get an HTTP error (and never 101), the body must say what was
// wrong, and nothing may be left behind: no hub client, no goroutine.
func TestMalformedHandshakeRejected(t *testing.T) {
	s := newTestServer(t, Config{})
	addr := s.ts.Listener.Addr().String()
	base := runtime.NumGoroutine()
	good := validUpgrade(rfcKey)
	tests := []struct {
		name     string
		req      rawUpgrade
		wantCode int
		wantBody string
	}{
		{"key not base64", good.with("Sec-WebSocket-Key: not base64!!"), 400, "Sec-WebSocket-Key"},
		{"key wrong length", good.with("Sec-WebSocket-Key: c2hvcnQ="), 400, "Sec-WebSocket-Key"},
		{"key missing", good.without("Sec-WebSocket-Key"), 400, "Sec-WebSocket-Key"},
		{"version 8", good.with("Sec-WebSocket-Version: 8"), 426, "version"},
		{"version missing", good.without("Sec-WebSocket-Version"), 400, "version"},
		{"upgrade missing", good.without("Upgrade"), 400, "'Upgrade' header"},
		{"upgrade not websocket", good.with("Upgrade: h2c"), 400, "'Upgrade' header"},
		{"connection missing", good.without("Connection"), 400, "'Connection' header"},
		{"foreign origin", good.with("Origin: http://evil.example"), 403, "origin"},
		{"POST", rawUpgrade{method: "POST", headers: good.headers}, 405, "Method Not Allowed"},
		{"plain GET", rawUpgrade{method: "GET"}, 400, "'Connection' header"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			conn, resp := tt.req.send(t, addr)
			defer conn.Close()
			body, _ := io.ReadAll(io.LimitReader(resp.Body, 1024))
			if resp.StatusCode != tt.wantCode {
				t.Errorf("status %d (%q); want %d", resp.StatusCode, body, tt.wantCode)
			}
			if !strings.Contains(strings.ToLower(string(body)), strings.ToLower(tt.wantBody)) {
				t.Errorf("body %q does not mention %q", body, tt.wantBody)
			}
			if tt.wantCode == 426 || tt.wantCode == 400 && strings.Contains(tt.name, "version") {
				if v := resp.Header.Get("Sec-WebSocket-Version"); v != "13" {
					t.Errorf("Sec-WebSocket-Version %q; want 13 so the client knows what to offer", v)
				}
			}
		})
	}
	if n := s.hub.stats.conns.Load(); n != 0 {
		t.Errorf("hub holds %d connections after only failed handshakes; want 0", n)
	}
	if n, stacks := settleGoroutines(base, 5*time.Second); n > base {
		t.Errorf("%d goroutines after failed handshakes; %d before\n%s", n, base, stacks)
	}
}

// TestHandshakeAcceptKey checks Sec-WebSocket-Accept over raw TCP against
// RFC 6455 section 1.3's worked example and a second known pair.
func TestHandshakeAcceptKey(t *testing.T) {
	s := newTestServer(t, Config{})
	addr := s.ts.Listener.Addr().String()
	tests := []struct{ key, accept string }{
		{rfcKey, "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="},
		{"x3JJHMbDL1EzLkh9GBhXDw==", "HSmrc0sMlYUkAGmm5OPpG2HaGWk="},
	}
	for _, tt := range tests {
		conn, resp := validUpgrade(tt.key).send(t, addr)
		if resp.StatusCode != http.StatusSwitchingProtocols {
			t.Errorf("key %s: status %d; want 101", tt.key, resp.StatusCode)
		}
		if got := resp.Header.Get("Sec-WebSocket-Accept"); got != tt.accept {
			t.Errorf("key %s: Sec-WebSocket-Accept %q; want %q", tt.key, got, tt.accept)
		}
		if !strings.EqualFold(resp.Header.Get("Upgrade"), "websocket") ||
			!strings.EqualFold(resp.Header.Get("Connection"), "upgrade") {
			t.Errorf("key %s: Upgrade %q, Connection %q; want websocket, Upgrade",
				tt.key, resp.Header.Get("Upgrade"), resp.Header.Get("Connection"))
		}
		conn.Close()
	}
	waitConns(t, s.hub, 0) // both vanished without a close frame
}

// TestSlowlorisCutOff trickles upgrade headers a byte at a time from
// several connections. ReadHeaderTimeout must cut each one off (the server
// closes without answering), while an honest client still gets in.
func TestSlowlorisCutOff(t *testing.T) {
	const (
		timeout = 300 * time.Millisecond
		loris   = 8
		bound   = 10 * time.Second // far beyond the timeout: a missing cut-off, not slowness
	)
	s := newTestServer(t, Config{ReadHeaderTimeout: timeout})
	addr := s.ts.Listener.Addr().String()
	base := runtime.NumGoroutine()

	type result struct {
		sent    int
		elapsed time.Duration
		err     error
	}
	results := make(chan result, loris)
	for range loris {
		go func() {
			conn, err := net.Dial("tcp", addr)
			if err != nil {
				results <- result{err: err}
				return
			}
			defer conn.Close()
			// The server's only possible answer is to close: watch for it.
			closed := make(chan struct{})
			go func() {
				conn.SetReadDeadline(time.Now().Add(bound))
				io.Copy(io.Discard, conn)
				close(closed)
			}()
			head := "GET /ws HTTP/1.1\r\nHost: " + addr + "\r\nUpgrade: websocket\r\n"
			start := time.Now()
			for i := 0; ; i++ {
				select {
				case <-closed:
					results <- result{sent: i, elapsed: time.Since(start)}
					return
				case <-time.After(20 * time.Millisecond):
				}
				if time.Since(start) > bound {
					results <- result{sent: i, err: fmt.Errorf("still open after %v", bound)}
					return
				}
				// An endless header section: it never reaches the blank line.
				b := head[i%len(head)]
				if i >= len(head) {
					b = "X-Pad: slow\r\n"[(i-len(head))%13]
				}
				conn.SetWriteDeadline(time.Now().Add(time.Second))
				if _, err := conn.Write([]byte{b}); err != nil {
					<-closed // a write failed because the server hung up
					results <- result{sent: i, elapsed: time.Since(start)}
					return
				}
			}
		}()
	}
	// An honest client connects while the trickles are running.
	p, _ := s.joined(t, "name", "honest")
	p.say("unbothered")
	if m := p.expect("new_message").msg(t); m.Message != "unbothered" {
		t.Errorf("honest client got %q", m.Message)
	}
	for range loris {
		r := <-results
		if r.err != nil {
			t.Errorf("slowloris connection: %v (%d bytes sent)", r.err, r.sent)
			continue
		}
		// The server's clock starts at accept, a moment before ours: allow
		// for that, but a cut well before the timeout means some other
		// limit did it.
		if r.elapsed < timeout/2 {
			t.Errorf("cut off after %v; want about ReadHeaderTimeout %v", r.elapsed, timeout)
		}
		t.Logf("slowloris cut off after %v, %d bytes", r.elapsed.Round(time.Millisecond), r.sent)
	}
	p.conn.Close()
	waitConns(t, s.hub, 0)
	if n, stacks := settleGoroutines(base, 5*time.Second); n > base {
		t.Errorf("%d goroutines after slowloris; %d before\n%s", n, base, stacks)
	}
}

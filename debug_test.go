package main

import (
	"bytes"
	"context"
	"io"
	"log/slog"
	"net"
	"net/http"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"
)

// TestDebugServer starts the pprof listener, fetches from it, and checks
// that Close stops it (TestMain catches a goroutine left behind).
func TestDebugServer(t *testing.T) {
	d, err := startDebug("127.0.0.1:0", testLogger(t))
	if err != nil {
		t.Fatal(err)
	}
	base := "http://" + d.addr.String()
	client := &http.Client{Transport: &http.Transport{DisableKeepAlives: true}}
	for _, tt := range []struct{ path, want string }{
		{"/debug/pprof/", "goroutine"},
		{"/debug/pprof/goroutine?debug=1", "goroutine profile"},
		{"/debug/pprof/cmdline", ""},
	} {
		resp, err := client.Get(base + tt.path)
		if err != nil {
			t.Fatalf("GET %s: %v", tt.path, err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 200 || !strings.Contains(string(body), tt.want) {
			t.Errorf("GET %s = %d, body lacks %q", tt.path, resp.StatusCode, tt.want)
		}
	}
	d.Close()
	d.Close() // idempotent
	if _, err := client.Get(base + "/debug/pprof/"); err == nil {
		t.Error("debug server still answering after Close")
	}
}

func TestDebugServerBadAddr(t *testing.T) {
	if _, err := startDebug("127.0.0.1:notaport", testLogger(t)); err == nil || !strings.Contains(err.Error(), "debug listen") {
		t.Errorf("startDebug(bad addr) err = %v; want a debug listen error", err)
	}
}

// TestPprofNotOnPublicPort guards against serving the default mux, where
// importing net/http/pprof registers its handlers.
func TestPprofNotOnPublicPort(t *testing.T) {
	s := newTestServer(t, Config{})
	if status, _ := s.get(t, "/debug/pprof/"); status != 404 {
		t.Errorf("GET /debug/pprof/ on the public port = %d; want 404", status)
	}
}

// lockedBuffer is a bytes.Buffer safe for a logger and a test to share.
type lockedBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *lockedBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *lockedBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// TestServeRunsDebugServer runs the real serve loop with -debug-addr on a
// free port (read back from the log), checks that pprof answers there, and
// that cancelling serve stops the debug listener too.
func TestServeRunsDebugServer(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var logs lockedBuffer
	log := slog.New(slog.NewTextHandler(&logs, nil))
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan error, 1)
	cfg := Config{DebugAddr: "127.0.0.1:0", ShutdownTimeout: 5 * time.Second}.withDefaults()
	go func() { done <- serve(ctx, cfg, log, ln) }()

	addrRE := regexp.MustCompile(`msg="pprof listening" addr=(\S+)`)
	var debugAddr string
	for deadline := time.Now().Add(5 * time.Second); debugAddr == ""; {
		if m := addrRE.FindStringSubmatch(logs.String()); m != nil {
			debugAddr = m[1]
		} else if time.Now().After(deadline) {
			t.Fatalf("no pprof listening line in the log:\n%s", logs.String())
		}
		time.Sleep(10 * time.Millisecond)
	}
	client := &http.Client{Transport: &http.Transport{DisableKeepAlives: true}}
	resp, err := client.Get("http://" + debugAddr + "/debug/pprof/")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Errorf("pprof on %s = %d; want 200", debugAddr, resp.StatusCode)
	}

	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("serve returned %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("serve did not return after cancel")
	}
	if _, err := client.Get("http://" + debugAddr + "/debug/pprof/"); err == nil {
		t.Error("debug server still answering after serve returned")
	}
}

func TestServeRejectsBadDebugAddr(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	cfg := Config{DebugAddr: "127.0.0.1:notaport"}.withDefaults()
	err = serve(context.Background(), cfg, testLogger(t), ln)
	if err == nil || !strings.Contains(err.Error(), "debug listen") {
		t.Errorf("serve with a bad debug address = %v; want a debug listen error", err)
	}
	if _, err := net.Dial("tcp", ln.Addr().String()); err == nil {
		t.Error("main listener left open after serve failed")
	}
}

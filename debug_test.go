package main

import (
	"io"
	"net/http"
	"strings"
	"testing"
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

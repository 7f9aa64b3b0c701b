package main

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

// get fetches path and returns the status and body.
func (s *testServer) get(t testing.TB, path string) (int, string) {
	t.Helper()
	resp, err := http.Get(s.ts.URL + path)
	if err != nil {
		t.Fatalf("GET %s: %v", path, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// TestReadyzFlipsOnShutdown checks that a server with a connected client is
// ready and alive, and that once shutdown begins it stays alive but stops
// being ready.
func TestReadyzFlipsOnShutdown(t *testing.T) {
	s := newTestServer(t, Config{})
	s.joined(t)
	for _, path := range []string{"/healthz", "/readyz"} {
		if status, body := s.get(t, path); status != 200 {
			t.Fatalf("GET %s = %d %q; want 200", path, status, body)
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := s.Shutdown(ctx); err != nil {
		t.Fatal(err)
	}
	if status, body := s.get(t, "/readyz"); status != 503 || !strings.Contains(body, "draining") {
		t.Errorf("GET /readyz while shutting down = %d %q; want 503 draining", status, body)
	}
	if status, _ := s.get(t, "/healthz"); status != 200 {
		t.Errorf("GET /healthz while shutting down = %d; want 200", status)
	}
}

func TestReadyzChecks(t *testing.T) {
	var brokerDown atomic.Bool
	s := newTestServer(t, Config{}, func(s *Server) {
		s.addReadyCheck("broker", func() error {
			if brokerDown.Load() {
				return errors.New("not connected")
			}
			return nil
		})
	})
	tests := []struct {
		down       bool
		wantStatus int
		wantBody   string
	}{
		{false, 200, "ready"},
		{true, 503, "broker: not connected"},
		{false, 200, "ready"},
	}
	for _, tt := range tests {
		brokerDown.Store(tt.down)
		if status, body := s.get(t, "/readyz"); status != tt.wantStatus || !strings.Contains(body, tt.wantBody) {
			t.Errorf("broker down %v: GET /readyz = %d %q; want %d %q", tt.down, status, body, tt.wantStatus, tt.wantBody)
		}
	}
}

func TestHealthcheckCommand(t *testing.T) {
	up := newTestServer(t, Config{})
	sick := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		http.Error(w, "no", http.StatusInternalServerError)
	}))
	t.Cleanup(sick.Close)
	// A port nothing listens on: listen, note it, close.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	closed := ln.Addr().String()
	ln.Close()
	_, upPort, _ := net.SplitHostPort(up.ts.Listener.Addr().String())

	tests := []struct {
		name     string
		args     []string
		env      map[string]string
		wantCode int
		wantErr  string
	}{
		{"healthy by flag", []string{"-addr", up.ts.Listener.Addr().String()}, nil, 0, ""},
		{"healthy by env, wildcard host", nil, map[string]string{"HUBBUB_ADDR": ":" + upPort}, 0, ""},
		{"unhealthy", []string{"-addr", sick.Listener.Addr().String()}, nil, 1, "500"},
		{"nothing listening", []string{"-addr", closed}, nil, 1, "refused"},
		{"bad flag", []string{"-nope"}, nil, 1, "nope"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var stderr bytes.Buffer
			code := healthcheck(tt.args, func(k string) string { return tt.env[k] }, &stderr)
			if code != tt.wantCode || !strings.Contains(stderr.String(), tt.wantErr) {
				t.Errorf("healthcheck(%v) = %d, stderr %q; want %d mentioning %q",
					tt.args, code, stderr.String(), tt.wantCode, tt.wantErr)
			}
		})
	}
}

func TestProbeAddr(t *testing.T) {
	tests := []struct{ in, want string }{
		{":8080", "127.0.0.1:8080"},
		{"0.0.0.0:80", "127.0.0.1:80"},
		{"[::]:80", "127.0.0.1:80"},
		{"127.0.0.5:9", "127.0.0.5:9"},
		{"[::1]:9", "[::1]:9"},
		{"localhost:9", "localhost:9"},
	}
	for _, tt := range tests {
		if got := probeAddr(tt.in); got != tt.want {
			t.Errorf("probeAddr(%q) = %q; want %q", tt.in, got, tt.want)
		}
	}
}

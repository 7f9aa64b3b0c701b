package main

import (
	"bytes"
	"context"
	"io"
	"net"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/gorilla/websocket"
)

var testTime = time.Date(2026, 11, 22, 10, 0, 0, 0, time.UTC)

func TestParseFlags(t *testing.T) {
	tests := []struct {
		name    string
		args    []string
		env     map[string]string
		check   func(Config) bool
		wantErr string
	}{
		{"defaults", nil, nil, func(c Config) bool {
			c = c.withDefaults()
			return c.Addr == ":8080" && c.SendQueue == 256 && c.MaxMessageSize == 512 &&
				c.PongWait == time.Minute && c.PingPeriod == 54*time.Second &&
				c.ReadHeaderTimeout == 5*time.Second && c.History == 100 && c.MsgRate == 10
		}, ""},
		{"flag", []string{"-addr", "127.0.0.1:9", "-send-queue", "8"}, nil, func(c Config) bool {
			return c.Addr == "127.0.0.1:9" && c.SendQueue == 8
		}, ""},
		{"env fallback", nil, map[string]string{"HUBBUB_ADDR": ":7", "HUBBUB_SEND_QUEUE": "9", "HUBBUB_PONG_WAIT": "3s"},
			func(c Config) bool { return c.Addr == ":7" && c.SendQueue == 9 && c.PongWait == 3*time.Second }, ""},
		{"flag beats env", []string{"-addr", ":1"}, map[string]string{"HUBBUB_ADDR": ":7"},
			func(c Config) bool { return c.Addr == ":1" }, ""},
		{"zero is off, as in Config", []string{"-history", "0", "-msg-rate", "0", "-history-on-join", "0"}, nil,
			func(c Config) bool {
				c = c.withDefaults().withDefaults()
				return c.History == 0 && c.MsgRate == 0 && c.HistoryOnJoin == 0 && c.HistoryIdleRooms == 1000
			}, ""},
		{"removed flag", []string{"-batch-window", "30ms"}, nil, nil, "-batch-window is no longer a setting: writes now fill up"},
		{"removed flag, = form", []string{"--batch-window=0"}, nil, nil, "no longer a setting"},
		{"removed variable", nil, map[string]string{"HUBBUB_BATCH_WINDOW": "30ms"}, nil, "HUBBUB_BATCH_WINDOW is no longer a setting"},
		{"a value that looks like a removed flag", []string{"-node", "batch-window"}, nil,
			func(c Config) bool { return c.NodeName == "batch-window" }, ""},
		{"bad env", nil, map[string]string{"HUBBUB_SEND_QUEUE": "lots"}, nil, "HUBBUB_SEND_QUEUE"},
		{"bad flag", []string{"-send-queue", "x"}, nil, nil, "invalid value"},
		{"stray arg", []string{"serve"}, nil, nil, "unexpected argument"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var stderr bytes.Buffer
			c, err := parseFlags(tt.args, func(k string) string { return tt.env[k] }, &stderr)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("err = %v; want it to mention %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatalf("err = %v", err)
			}
			if !tt.check(c) {
				t.Errorf("config %+v failed the check", c)
			}
		})
	}
}

// flagCase is one row of a parseFlags table: arguments and environment in,
// a check on the parsed Config out.
type flagCase struct {
	name  string
	args  []string
	env   map[string]string
	check func(Config) bool
}

// checkFlagCases parses each case and fails those whose check fails.
func checkFlagCases(t *testing.T, tests []flagCase) {
	t.Helper()
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := parseFlags(tt.args, func(k string) string { return tt.env[k] }, io.Discard)
			if err != nil {
				t.Fatal(err)
			}
			if !tt.check(c) {
				t.Errorf("config %+v failed the check", c)
			}
		})
	}
}

func TestConfigValidate(t *testing.T) {
	bad := []Config{
		{PongWait: time.Second, PingPeriod: 2 * time.Second},
		{LogFormat: "xml"},
	}
	for _, c := range bad {
		if err := c.withDefaults().validate(); err == nil {
			t.Errorf("validate(%+v) = nil; want error", c)
		}
	}
	if err := (Config{}).withDefaults().validate(); err != nil {
		t.Errorf("defaults do not validate: %v", err)
	}
}

// TestServeShutsDownOnCancel runs the real serve loop on a loopback port,
// connects a client, and cancels: the client must get 1001 and serve must
// return cleanly.
func TestServeShutsDownOnCancel(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	cfg := Config{ShutdownTimeout: 5 * time.Second}.withDefaults()
	done := make(chan error, 1)
	go func() { done <- serve(ctx, cfg, testLogger(t), ln) }()

	u := url.URL{Scheme: "ws", Host: ln.Addr().String(), Path: "/ws", RawQuery: "format=text&name=n"}
	conn, _, err := websocket.DefaultDialer.Dial(u.String(), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	p := &peer{t: t, conn: conn}
	p.lineWith("you are n")
	cancel()
	if code := p.closeCode(5 * time.Second); code != websocket.CloseGoingAway {
		t.Errorf("close code %d; want 1001", code)
	}
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("serve returned %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("serve did not return after cancel")
	}
}

func TestDisplayAddr(t *testing.T) {
	tests := []struct{ in, want string }{
		{"[::]:8080", "localhost:8080"},
		{"0.0.0.0:80", "localhost:80"},
		{"127.0.0.1:9", "127.0.0.1:9"},
	}
	for _, tt := range tests {
		a, err := net.ResolveTCPAddr("tcp", tt.in)
		if err != nil {
			t.Fatal(err)
		}
		if got := displayAddr(a); got != tt.want {
			t.Errorf("displayAddr(%s) = %s; want %s", tt.in, got, tt.want)
		}
	}
}

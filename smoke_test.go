package main

import (
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/gorilla/websocket"
)

// TestSmoke checks a hubbub that is already running elsewhere, such as the
// container scripts/container-test.sh starts. It is skipped unless
// HUBBUB_SMOKE_URL names the server (http://host:port); HUBBUB_SMOKE_API_KEY,
// if set, must be the server's API key and adds a publish through the API.
//
// It waits for /healthz, checks /readyz and /metrics, and has a JSON and a
// text client exchange a message in a room of their own.
func TestSmoke(t *testing.T) {
	base := os.Getenv("HUBBUB_SMOKE_URL")
	if base == "" {
		t.Skip("HUBBUB_SMOKE_URL not set: no server to smoke-test")
	}
	key := os.Getenv("HUBBUB_SMOKE_API_KEY")
	client := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{DisableKeepAlives: true}}
	get := func(path string) (int, string, error) {
		resp, err := client.Get(base + path)
		if err != nil {
			return 0, "", err
		}
		defer resp.Body.Close()
		b, err := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b), err
	}

	// The container may still be starting.
	deadline := time.Now().Add(30 * time.Second)
	for {
		status, _, err := get("/healthz")
		if err == nil && status == 200 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("GET /healthz never answered 200: last status %d, err %v", status, err)
		}
		time.Sleep(200 * time.Millisecond)
	}
	if status, body, err := get("/readyz"); err != nil || status != 200 {
		t.Fatalf("GET /readyz = %d %q, %v; want 200", status, body, err)
	}

	u, err := url.Parse(base)
	if err != nil {
		t.Fatal(err)
	}
	u.Scheme, u.Path = "ws", "/ws"
	dial := func(q string) *peer {
		u.RawQuery = q
		conn, resp, err := websocket.DefaultDialer.Dial(u.String(), nil)
		if err != nil {
			t.Fatalf("dial %s: %v (response %v)", u, err, resp)
		}
		t.Cleanup(func() { conn.Close() })
		return &peer{t: t, conn: conn}
	}
	room := fmt.Sprintf("smoke-%d", time.Now().UnixNano()%1e9) // distinct per run
	alice := dial("room=" + room + "&name=alice")
	alice.skipUntil("room_changed")
	alice.expect("history") // empty: the room is new
	bob := dial("room=" + room + "&name=bob&format=text")
	bob.lineWith("you are bob")
	alice.expect("presence")

	alice.say("hello from alice")
	if m := alice.expect("new_message").msg(t); m.From != "alice" || m.Message != "hello from alice" {
		t.Errorf("alice got back %+v", m)
	}
	if l := bob.line(); l != "["+room+"] alice: hello from alice" {
		t.Errorf("bob got %q", l)
	}

	if key != "" {
		req, _ := http.NewRequest("POST", base+"/api/rooms/"+room+"/messages",
			strings.NewReader(`{"message":"hello from the API","from":"smoke"}`))
		req.Header.Set("Authorization", "Bearer "+key)
		resp, err := client.Do(req)
		if err != nil {
			t.Fatalf("publish: %v", err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 200 || !strings.Contains(string(body), `"recipients":2`) {
			t.Fatalf("publish = %d %s; want 200 with 2 recipients", resp.StatusCode, body)
		}
		if m := alice.expect("new_message").msg(t); m.From != "smoke" || !m.Bot {
			t.Errorf("alice got %+v; want a bot message from smoke", m)
		}
		if l := bob.line(); l != "["+room+"] smoke (bot): hello from the API" {
			t.Errorf("bob got %q", l)
		}
	}

	if status, body, err := get("/metrics"); err != nil || status != 200 ||
		!strings.Contains(body, `hubbub_messages_received_total{source="json"}`) {
		t.Errorf("GET /metrics = %d, %v; want 200 with hubbub_messages_received_total", status, err)
	}
	t.Logf("smoke test passed against %s (room %s)", base, room)
}

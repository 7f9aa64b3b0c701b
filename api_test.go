package main

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"
)

// api sends an API request with key as bearer token (none if empty) and
// returns the status and body.
func (s *testServer) api(t testing.TB, method, path, key, body string) (int, string) {
	t.Helper()
	return s.apiAuth(t, method, path, "Bearer "+key, body, key == "")
}

// apiAuth is api with a literal Authorization header (none if omit).
func (s *testServer) apiAuth(t testing.TB, method, path, auth, body string, omit bool) (int, string) {
	t.Helper()
	req, err := http.NewRequest(method, s.ts.URL+path, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	if !omit {
		req.Header.Set("Authorization", auth)
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("%s %s: read body: %v", method, path, err)
	}
	return resp.StatusCode, string(b)
}

const testKey = "s3cret-key"

func TestAPIRejects(t *testing.T) {
	s := newTestServer(t, Config{APIKey: testKey})
	const msgs = "/api/rooms/general/messages"
	tests := []struct {
		name       string
		method     string
		path       string
		auth       string // Authorization header; "-" for none
		body       string
		wantStatus int
		wantBody   string
	}{
		{"no key", "POST", msgs, "-", `{"message":"hi"}`, 401, "API key"},
		{"wrong key", "POST", msgs, "Bearer nope", `{"message":"hi"}`, 401, "API key"},
		{"key prefix", "POST", msgs, "Bearer s3cret", `{"message":"hi"}`, 401, "API key"},
		{"basic scheme", "POST", msgs, "Basic " + testKey, `{"message":"hi"}`, 401, "API key"},
		{"bare scheme", "POST", msgs, "Bearer ", `{"message":"hi"}`, 401, "API key"},
		{"rooms no key", "GET", "/api/rooms", "-", "", 401, "API key"},
		{"bad room", "POST", "/api/rooms/no%20way/messages", "", `{"message":"hi"}`, 400, "bad room"},
		{"long room", "POST", "/api/rooms/" + strings.Repeat("r", 65) + "/messages", "", `{"message":"hi"}`, 400, "bad room"},
		{"bad json", "POST", msgs, "", `{"message":`, 400, "body must be"},
		{"not an object", "POST", msgs, "", `"hi"`, 400, "body must be"},
		{"unknown field", "POST", msgs, "", `{"msg":"hi"}`, 400, "unknown field"},
		{"two values", "POST", msgs, "", `{"message":"hi"}{}`, 400, "more than one"},
		{"no message", "POST", msgs, "", `{"from":"ci"}`, 400, `no \"message\"`},
		{"empty message", "POST", msgs, "", `{"message":"  "}`, 400, "empty message"},
		{"bad from", "POST", msgs, "", `{"message":"hi","from":"a b"}`, 400, "bad from"},
		{"long message", "POST", msgs, "", `{"message":"` + strings.Repeat("é", maxMessageRunes+1) + `"}`, 413, `at most 400 are allowed; it was not sent","code":"too_long"`},
		{"huge body", "POST", msgs, "", `{"message":"` + strings.Repeat("x", maxAPIBody) + `"}`, 413, "body over"},
		{"wrong method", "GET", msgs, "", "", 405, ""},
		{"ok to empty room", "POST", "/api/rooms/nobody-here/messages", "", `{"message":"hi"}`, 200, `"recipients":0`},
		{"lower-case scheme", "POST", msgs, "bearer " + testKey, `{"message":"hi"}`, 200, `"room":"general"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			auth := tt.auth
			if auth == "" {
				auth = "Bearer " + testKey
			}
			status, body := s.apiAuth(t, tt.method, tt.path, auth, tt.body, auth == "-")
			if status != tt.wantStatus || !strings.Contains(body, tt.wantBody) {
				t.Errorf("%s %s = %d %q; want %d containing %q", tt.method, tt.path, status, body, tt.wantStatus, tt.wantBody)
			}
			if status == 401 && body != "" && !strings.Contains(body, `"error"`) {
				t.Errorf("401 body %q is not a JSON error", body)
			}
		})
	}
}

// TestAPIPublishReachesRoom posts through the API and checks that JSON and
// text members both get it, marked as a bot, and that other rooms do not.
func TestAPIPublishReachesRoom(t *testing.T) {
	s := newTestServer(t, Config{APIKey: testKey})
	a, _ := s.joined(t, "room", "ops", "name", "alice")
	b := s.dial(t, "room", "ops", "name", "bob", "format", "text")
	b.lineWith("you are bob")
	a.expect("presence")
	other, _ := s.joined(t, "room", "elsewhere")

	status, body := s.api(t, "POST", "/api/rooms/ops/messages", testKey, `{"message":"deploy done","from":"ci"}`)
	if status != 200 {
		t.Fatalf("publish = %d %s; want 200", status, body)
	}
	var res apiResult
	if err := json.Unmarshal([]byte(body), &res); err != nil {
		t.Fatalf("publish reply %q: %v", body, err)
	}
	if res.Room != "ops" || res.Recipients != 2 || res.ID == 0 {
		t.Errorf("publish reply %+v; want room ops, 2 recipients, an id", res)
	}

	var got messagePayload
	a.expect("new_message").decode(t, &got)
	if got.From != "ci" || got.Message != "deploy done" || !got.Bot || got.ID != res.ID || got.Seq == 0 || got.Epoch == "" {
		t.Errorf("alice got %+v; want bot message from ci with id %d", got, res.ID)
	}
	if l := b.line(); l != "[ops] ci (bot): deploy done" {
		t.Errorf("bob got %q", l)
	}

	// A member's own message carries no bot flag, and the other room saw
	// nothing: its next event is the answer to its own message.
	a.say("thanks")
	if m := a.expect("new_message"); strings.Contains(string(m.Payload), `"bot"`) {
		t.Errorf("member message %s is marked as bot", m.Payload)
	}
	other.say("ping")
	if m := other.expect("new_message").msg(t); m.Message != "ping" {
		t.Errorf("other room got %q first; want its own ping", m.Message)
	}

	// The sender is optional.
	if status, body := s.api(t, "POST", "/api/rooms/ops/messages", testKey, `{"message":"x"}`); status != 200 {
		t.Fatalf("publish without from = %d %s", status, body)
	}
	if m := a.expect("new_message").msg(t); m.From != defaultBotName {
		t.Errorf("default sender %q; want %q", m.From, defaultBotName)
	}
	s.waitMetric(t, `hubbub_messages_received_total{source="api"}`, 2)
}

func TestAPIListsRooms(t *testing.T) {
	s := newTestServer(t, Config{APIKey: testKey})
	list := func() string {
		t.Helper()
		status, body := s.api(t, "GET", "/api/rooms", testKey, "")
		if status != 200 {
			t.Fatalf("GET /api/rooms = %d %s", status, body)
		}
		return strings.TrimSpace(body)
	}
	if got, want := list(), `{"rooms":[],"members":0}`; got != want {
		t.Errorf("empty server lists %s; want %s", got, want)
	}
	s.joined(t, "room", "b", "name", "x")
	s.joined(t, "room", "b", "name", "y")
	s.joined(t, "room", "a", "name", "z")
	want := `{"rooms":[{"name":"a","members":1},{"name":"b","members":2}],"members":3}`
	if got := list(); got != want {
		t.Errorf("GET /api/rooms = %s; want %s", got, want)
	}
}

func TestAPIDisabledWithoutKey(t *testing.T) {
	s := newTestServer(t, Config{})
	for _, tt := range []struct{ method, path string }{
		{"POST", "/api/rooms/general/messages"},
		{"GET", "/api/rooms"},
	} {
		if status, body := s.api(t, tt.method, tt.path, "", `{"message":"hi"}`); status != 404 {
			t.Errorf("%s %s without an API key configured = %d %s; want 404", tt.method, tt.path, status, body)
		}
	}
}

func TestAPIRefusesWhileDraining(t *testing.T) {
	s := newTestServer(t, Config{APIKey: testKey})
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := s.Shutdown(ctx); err != nil {
		t.Fatal(err)
	}
	for _, path := range []string{"/api/rooms/general/messages", "/api/rooms"} {
		method := map[bool]string{true: "POST", false: "GET"}[strings.HasSuffix(path, "messages")]
		if status, body := s.api(t, method, path, testKey, `{"message":"hi"}`); status != 503 {
			t.Errorf("%s %s after shutdown = %d %s; want 503", method, path, status, body)
		}
	}
}

func TestKeyMatches(t *testing.T) {
	s := &Server{cfg: Config{APIKey: "k3y"}}
	tests := []struct {
		header string
		want   bool
	}{
		{"Bearer k3y", true},
		{"bearer k3y", true},
		{"BEARER  k3y ", true},
		{"Bearer k3", false},
		{"Bearer k3yy", false},
		{"Bearer", false},
		{"k3y", false},
		{"Token k3y", false},
		{"", false},
	}
	for _, tt := range tests {
		if got := s.keyMatches(tt.header); got != tt.want {
			t.Errorf("keyMatches(%q) = %v; want %v", tt.header, got, tt.want)
		}
	}
}

// apiWithKey posts body to path with the test API key and an
// Idempotency-Key header.
func (s *testServer) apiWithKey(t testing.TB, path, body, key string) (int, string) {
	t.Helper()
	req, err := http.NewRequest("POST", s.ts.URL+path, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+testKey)
	req.Header.Set("Idempotency-Key", key)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp.StatusCode, string(b)
}

package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"
)

// TestRoleFollowsReload: a logged-in user's role comes from the users file
// as it is now, so a reload that takes the role away takes effect at the
// next join, without a reconnect.
func TestRoleFollowsReload(t *testing.T) {
	path := writeUsers(t, "mo:moderator", "pw", "ad:admin", "pw", "bob", "pw")
	s := newTestServer(t, Config{UsersFile: path})
	tests := []struct{ user, want string }{{"mo", "moderator"}, {"ad", "admin"}, {"bob", ""}}
	for _, tt := range tests {
		p := s.dial(t, "ticket", s.login(t, tt.user, "pw"))
		var rp roomPayload
		p.skipUntil("room_changed").decode(t, &rp)
		if rp.Role != tt.want {
			t.Errorf("%s: room_changed role %q; want %q", tt.user, rp.Role, tt.want)
		}
	}
	mo := s.dial(t, "ticket", s.login(t, "mo", "pw"))
	mo.skipUntil("room_changed")
	os.Rename(writeUsers(t, "mo", "pw"), path)
	if err := s.auth.reload(); err != nil {
		t.Fatal(err)
	}
	mo.sendJSON("change_room", map[string]string{"name": "elsewhere"})
	var rp roomPayload
	mo.skipUntil("room_changed").decode(t, &rp)
	if rp.Role != "" {
		t.Errorf("after the reload mo's role is %q; want none", rp.Role)
	}
}

// modServer starts a server with history on, the API key, and the users
// mo (moderator), ad (admin), bob, carol and dave (password pw); guests
// may connect too.
func modServer(t *testing.T, cfg Config) *testServer {
	t.Helper()
	cfg.UsersFile = writeUsers(t, "mo:moderator", "pw", "ad:admin", "pw", "bob", "pw", "carol", "pw", "dave", "pw")
	cfg.APIKey = testKey
	return newTestServer(t, deployed(cfg))
}

// as connects user (logged in; a guest of that name when user starts
// with "guest") to room, in the text format when text is set, and reads
// its greeting.
func (s *testServer) as(t *testing.T, user, room string, text bool) *peer {
	t.Helper()
	kv := []string{"room", room}
	if strings.HasPrefix(user, "guest") {
		kv = append(kv, "name", user)
	} else {
		kv = append(kv, "ticket", s.login(t, user, "pw"))
	}
	if text {
		kv = append(kv, "format", "text")
		p := s.dial(t, kv...)
		p.lineWith("you are")
		return p
	}
	p, _ := s.joined(t, kv...)
	return p
}

// modArgs are a moderation request's parts, for any interface.
type modArgs struct {
	name, dur, reason, interval string
	seq                         uint64
	server                      bool
}

// iface is one of the three ways to moderate.
type iface string

const (
	viaJSON iface = "json"
	viaText iface = "text"
	viaAPI  iface = "api"
)

// moderateVia sends action with args through via, by actor (unused for
// the API), in room lobby, and returns "ok" or the error code refusing it.
// The text interface is read back up to a line containing textOK.
func (s *testServer) moderateVia(t *testing.T, via iface, actor *peer, action string, a modArgs, textOK string) string {
	t.Helper()
	switch via {
	case viaJSON:
		p := map[string]any{}
		for k, v := range map[string]string{"name": a.name, "duration": a.dur, "reason": a.reason, "interval": a.interval} {
			if v != "" {
				p[k] = v
			}
		}
		if a.seq != 0 {
			p["seq"] = a.seq
		}
		if a.server {
			p["server"] = true
		}
		b, _ := json.Marshal(map[string]any{"type": action, "id": "m1", "payload": p})
		actor.sendRaw(string(b))
		for {
			e := actor.next()
			var r struct {
				ID   string `json:"id"`
				Code string `json:"code"`
			}
			if e.Type != "moderation" && e.Type != "error" {
				continue
			}
			e.decode(t, &r)
			if r.ID != "m1" {
				continue
			}
			if e.Type == "error" {
				return r.Code
			}
			return "ok"
		}
	case viaText:
		cmd := map[string]string{"kick": "/kick", "ban": "/ban", "unban": "/unban", "mute": "/mute",
			"unmute": "/unmute", "delete_message": "/delete", "slow_mode": "/slow"}[action]
		if a.server {
			cmd += "-all"
		}
		parts := []string{cmd}
		for _, v := range []string{a.name, a.dur, a.interval} {
			if v != "" {
				parts = append(parts, v)
			}
		}
		if a.seq != 0 {
			parts = append(parts, strconv.FormatUint(a.seq, 10))
		}
		if a.reason != "" {
			parts = append(parts, a.reason)
		}
		actor.sendRaw(strings.Join(parts, " "))
		for {
			l := actor.line()
			if strings.HasPrefix(l, "! ") {
				return "error: " + l
			}
			if strings.Contains(l, textOK) {
				return "ok"
			}
		}
	}
	method, path, body := apiRoute(action, a)
	code, resp := s.api(t, method, path, testKey, body)
	if code == http.StatusOK {
		return "ok"
	}
	var r struct {
		Code string `json:"code"`
	}
	json.Unmarshal([]byte(resp), &r)
	if r.Code == "" {
		return fmt.Sprintf("status %d: %s", code, resp)
	}
	return r.Code
}

// apiRoute is the API call for action with args, in room lobby.
func apiRoute(action string, a modArgs) (method, path, body string) {
	base := "/api/rooms/lobby"
	if a.server {
		base = "/api"
	}
	b := map[string]string{}
	for k, v := range map[string]string{"name": a.name, "duration": a.dur, "reason": a.reason, "interval": a.interval} {
		if v != "" {
			b[k] = v
		}
	}
	js, _ := json.Marshal(b)
	switch action {
	case "kick":
		return "POST", base + "/kick", string(js)
	case "ban":
		return "POST", base + "/bans", string(js)
	case "mute":
		return "POST", base + "/mutes", string(js)
	case "unban":
		return "DELETE", base + "/bans/" + a.name, ""
	case "unmute":
		return "DELETE", base + "/mutes/" + a.name, ""
	case "delete_message":
		return "DELETE", fmt.Sprintf("%s/messages/%d", base, a.seq), ""
	}
	if a.interval == "off" {
		return "DELETE", base + "/slow-mode", ""
	}
	return "PUT", base + "/slow-mode", string(js)
}

// errorOf reads p's events until an error and returns it.
func (p *peer) errorOf() protoError {
	p.t.Helper()
	var e protoError
	p.skipUntil("error").decode(p.t, &e)
	return e
}

// sayOK has p say msg and waits until watcher sees it.
func sayOK(t *testing.T, p, watcher *peer, msg string) {
	t.Helper()
	p.say(msg)
	for {
		if e := watcher.skipUntil("new_message"); e.msg(t).Message == msg {
			return
		}
	}
}

// TestModerationActions: each action, through each of the three
// interfaces, does what it says to the user it names and the room.
func TestModerationActions(t *testing.T) {
	type env struct {
		s          *testServer
		bob, carol *peer // bob is the target, carol watches from lobby
		by         string
	}
	ban := func(e env, kind, name string) {
		path := map[string]string{"ban": "/api/rooms/lobby/bans", "mute": "/api/rooms/lobby/mutes"}[kind]
		if code, body := e.s.api(t, "POST", path, testKey, `{"name":"`+name+`","duration":"1h"}`); code != http.StatusOK {
			t.Fatalf("%s %s: %d %s", kind, name, code, body)
		}
	}
	tests := []struct {
		action string
		args   modArgs
		textOK string // the line that confirms it to a text moderator
		setup  func(env)
		check  func(t *testing.T, e env)
	}{{
		action: "kick", args: modArgs{name: "bob", reason: "spam"}, textOK: "kicked bob from lobby: spam",
		check: func(t *testing.T, e env) {
			code, reason := e.bob.closeFrame(5 * time.Second)
			if want := "kicked from lobby by " + e.by + ": spam"; code != closeKicked || reason != want {
				t.Errorf("bob's close %d %q; want %d %q", code, reason, closeKicked, want)
			}
			var p presencePayload
			for p.Event != "leave" {
				e.carol.skipUntil("presence").decode(t, &p)
			}
			if !p.Kicked || p.Banned || p.By != e.by || p.Reason != "spam" || p.Name != "bob" {
				t.Errorf("room saw the leave %+v; want bob kicked by %s for spam", p, e.by)
			}
			// A kick is not a ban: bob can come straight back.
			e.s.as(t, "bob", "lobby", false)
		},
	}, {
		action: "ban", args: modArgs{name: "bob", dur: "1h", reason: "spam"}, textOK: "banned bob from lobby for 1h: spam",
		check: func(t *testing.T, e env) {
			code, reason := e.bob.closeFrame(5 * time.Second)
			if want := "banned from lobby by " + e.by + " until "; code != closeBanned || !strings.HasPrefix(reason, want) ||
				!strings.HasSuffix(reason, ": spam") {
				t.Errorf("bob's close %d %q; want %d %q…: spam", code, reason, closeBanned, want)
			}
			var p presencePayload
			for p.Event != "leave" {
				e.carol.skipUntil("presence").decode(t, &p)
			}
			if !p.Kicked || !p.Banned || p.By != e.by {
				t.Errorf("room saw the leave %+v; want bob banned by %s", p, e.by)
			}
			_, resp, err := e.s.tryDial("room", "lobby", "ticket", e.s.login(t, "bob", "pw"))
			if err == nil || resp == nil || resp.StatusCode != http.StatusForbidden {
				t.Fatalf("bob's reconnect: %v %v; want 403", resp, err)
			}
			if body := readAll(t, resp); !strings.Contains(body, "you are banned from lobby until") || !strings.Contains(body, "spam") {
				t.Errorf("403 says %q; want the ban, its end and reason", body)
			}
			elsewhere := e.s.as(t, "bob", "elsewhere", false)
			elsewhere.sendJSON("change_room", map[string]string{"name": "lobby"})
			if err := elsewhere.errorOf(); err.Code != errBanned || err.Until == "" {
				t.Errorf("bob joining lobby: %+v; want banned with until", err)
			}
		},
	}, {
		action: "unban", args: modArgs{name: "bob"}, textOK: "lifted the ban on bob in lobby",
		setup: func(e env) { ban(e, "ban", "bob") },
		check: func(t *testing.T, e env) { e.s.as(t, "bob", "lobby", false) },
	}, {
		action: "mute", args: modArgs{name: "bob", dur: "1h"}, textOK: "muted bob in lobby for 1h",
		check: func(t *testing.T, e env) {
			e.bob.say("can I?")
			if err := e.bob.errorOf(); err.Code != errMuted || err.Until == "" || !strings.Contains(err.Message, "you can still read") {
				t.Errorf("muted bob sending: %+v; want muted with until", err)
			}
			sayOK(t, e.carol, e.bob, "bob still reads")
		},
	}, {
		action: "unmute", args: modArgs{name: "bob"}, textOK: "unmuted bob in lobby",
		setup: func(e env) { ban(e, "mute", "bob") },
		check: func(t *testing.T, e env) { sayOK(t, e.bob, e.carol, "I'm back") },
	}, {
		action: "delete_message", args: modArgs{seq: 1}, textOK: "message 1 in lobby was deleted by",
		setup: func(e env) { sayOK(t, e.bob, e.carol, "my secret address") },
		check: func(t *testing.T, e env) {
			var d deletedPayload
			e.carol.skipUntil("message_deleted").decode(t, &d)
			if d.Room != "lobby" || d.Seq != 1 || d.By != e.by || d.Epoch == "" {
				t.Errorf("message_deleted %+v; want lobby seq 1 by %s", d, e.by)
			}
			late := e.s.dial(t, "room", "lobby", "name", "guest-late")
			hist := late.historyOf()
			if len(hist) != 1 || !hist[0].Deleted || hist[0].Message != "" || hist[0].From != "" || hist[0].By != e.by {
				t.Errorf("history after the delete: %+v; want one tombstone by %s", hist, e.by)
			}
			text := e.s.dial(t, "room", "lobby", "name", "guest-text", "format", "text")
			if l := text.lineWith("[lobby]"); l != "[lobby] (history) message deleted" {
				t.Errorf("text replay %q; want the tombstone", l)
			}
		},
	}, {
		action: "slow_mode", args: modArgs{interval: "1h"}, textOK: "set slow mode in lobby: one message every 1h",
		check: func(t *testing.T, e env) {
			sayOK(t, e.bob, e.carol, "first")
			e.bob.say("second")
			if err := e.bob.errorOf(); err.Code != errSlowMode || err.RetryAfterMS <= 0 || !strings.Contains(err.Message, "one message every 1h") {
				t.Errorf("bob's second message: %+v; want slow_mode with retry_after_ms", err)
			}
			mo := e.s.as(t, "mo", "lobby", false) // moderators are exempt
			sayOK(t, mo, e.carol, "mod one")
			sayOK(t, mo, e.carol, "mod two")
		},
	}, {
		action: "slow_mode", args: modArgs{interval: "off"}, textOK: "turned slow mode off in lobby",
		setup: func(e env) {
			if code, body := e.s.api(t, "PUT", "/api/rooms/lobby/slow-mode", testKey, `{"interval":"1h"}`); code != http.StatusOK {
				t.Fatalf("slow mode: %d %s", code, body)
			}
		},
		check: func(t *testing.T, e env) {
			sayOK(t, e.bob, e.carol, "first")
			sayOK(t, e.bob, e.carol, "second")
		},
	}}
	for _, tt := range tests {
		for _, via := range []iface{viaJSON, viaText, viaAPI} {
			t.Run(tt.action+"/"+tt.args.interval+"/"+string(via), func(t *testing.T) {
				s := modServer(t, Config{})
				e := env{s: s, by: "mo"}
				e.bob = s.as(t, "bob", "lobby", false)
				e.carol = s.as(t, "carol", "lobby", false)
				var actor *peer
				switch via {
				case viaAPI:
					e.by = "api"
				default:
					actor = s.as(t, "mo", "lobby", via == viaText)
				}
				if tt.setup != nil {
					tt.setup(e)
				}
				if got := s.moderateVia(t, via, actor, tt.action, tt.args, tt.textOK); got != "ok" {
					t.Fatalf("%s: %s", tt.action, got)
				}
				tt.check(t, e)
			})
		}
	}
}

// TestModerationPermissions: who may do what. Guests and plain users may
// do nothing, moderators act in rooms, admins and the API key also
// server-wide; a refused request is forbidden and changes nothing.
func TestModerationPermissions(t *testing.T) {
	actions := []struct {
		action string
		args   modArgs
	}{
		{"kick", modArgs{name: "bob"}},
		{"ban", modArgs{name: "bob", dur: "1h"}},
		{"unban", modArgs{name: "guest-eve"}},
		{"mute", modArgs{name: "bob", dur: "1h"}},
		{"unmute", modArgs{name: "guest-eve"}},
		{"delete_message", modArgs{seq: 1}},
		{"slow_mode", modArgs{interval: "1h"}},
		{"kick", modArgs{name: "bob", server: true}},
		{"ban", modArgs{name: "bob", dur: "1h", server: true}},
		{"unban", modArgs{name: "guest-eve", server: true}},
		{"mute", modArgs{name: "bob", dur: "1h", server: true}},
		{"unmute", modArgs{name: "guest-eve", server: true}},
	}
	actors := []struct {
		who              string // a login, a guest's name, or "api"
		inRoom, anywhere bool   // may act in a room; server-wide
	}{
		{"guest-gus", false, false},
		{"dave", false, false},
		{"mo", true, false},
		{"ad", true, true},
		{"api", true, true},
	}
	for _, ac := range actors {
		for _, act := range actions {
			name := fmt.Sprintf("%s/%s/server=%v", ac.who, act.action, act.args.server)
			t.Run(name, func(t *testing.T) {
				s := modServer(t, Config{})
				bob := s.as(t, "bob", "lobby", false)
				carol := s.as(t, "carol", "lobby", false)
				sayOK(t, bob, carol, "message one")
				// guest-eve is banned and muted, in lobby and everywhere,
				// for the unban and unmute rows.
				for _, path := range []string{"/api/rooms/lobby/bans", "/api/bans", "/api/rooms/lobby/mutes", "/api/mutes"} {
					if code, body := s.api(t, "POST", path, testKey, `{"name":"guest-eve","duration":"1h"}`); code != http.StatusOK {
						t.Fatalf("%s: %d %s", path, code, body)
					}
				}
				via, actor := viaAPI, (*peer)(nil)
				if ac.who != "api" {
					via, actor = viaJSON, s.as(t, ac.who, "lobby", false)
				}
				allowed := ac.inRoom && (!act.args.server || ac.anywhere)
				got := s.moderateVia(t, via, actor, act.action, act.args, "")
				switch {
				case allowed && got != "ok":
					t.Fatalf("refused: %s; want it carried out", got)
				case allowed:
					return
				case got != errForbidden:
					t.Fatalf("got %q; want forbidden", got)
				}
				// Nothing happened: bob still speaks, twice (no kick, ban,
				// mute or slow mode), message one is intact, and
				// guest-eve is still banned.
				sayOK(t, bob, carol, "still here")
				sayOK(t, bob, carol, "and again")
				late := s.dial(t, "room", "lobby", "name", "guest-late")
				if hist := late.historyOf(); len(hist) == 0 || hist[0].Message != "message one" {
					t.Errorf("history %+v; want message one intact", hist)
				}
				if _, resp, err := s.tryDial("room", "lobby", "name", "guest-eve"); err == nil || resp.StatusCode != http.StatusForbidden {
					t.Errorf("guest-eve connected (%v); want still banned", err)
				}
			})
		}
	}
}

// TestModerationRefusals: requests that cannot be carried out are refused
// with an error that says why, through the socket and the API alike, and
// change nothing.
func TestModerationRefusals(t *testing.T) {
	s := modServer(t, Config{})
	bob := s.as(t, "bob", "lobby", false)
	carol := s.as(t, "carol", "lobby", false)
	mo := s.as(t, "mo", "lobby", false)
	sayOK(t, bob, carol, "one")
	tests := []struct {
		action string
		args   modArgs
		code   string
		msg    string
		status int
	}{
		{"kick", modArgs{name: "nobody"}, errNoSuchUser, "nobody is not in lobby", http.StatusNotFound},
		{"unban", modArgs{name: "bob"}, errNotFound, "bob is not banned in lobby", http.StatusNotFound},
		{"unmute", modArgs{name: "bob"}, errNotFound, "bob is not muted in lobby", http.StatusNotFound},
		{"delete_message", modArgs{seq: 9}, errNotFound, "lobby has no message 9: its newest is 1", http.StatusNotFound},
		{"slow_mode", modArgs{interval: "off"}, errNotFound, "slow mode is already off in lobby", http.StatusNotFound},
		{"ban", modArgs{name: "bob", dur: "soon"}, errBadPayload, `bad duration "soon"`, http.StatusBadRequest},
		{"mute", modArgs{name: "bob", dur: "-1s"}, errBadPayload, "longer than zero", http.StatusBadRequest},
		{"slow_mode", modArgs{interval: "fast"}, errBadPayload, `bad interval "fast"`, http.StatusBadRequest},
		{"kick", modArgs{name: "no one"}, errBadName, "bad name", http.StatusBadRequest},
	}
	for _, tt := range tests {
		t.Run(tt.action+"/"+tt.code, func(t *testing.T) {
			b, _ := json.Marshal(map[string]any{"type": tt.action, "id": "r1", "payload": map[string]any{
				"name": tt.args.name, "duration": tt.args.dur, "interval": tt.args.interval, "seq": tt.args.seq}})
			mo.sendRaw(string(b))
			if e := mo.errorOf(); e.Code != tt.code || e.ID != "r1" || !strings.Contains(e.Message, tt.msg) {
				t.Errorf("socket: %+v; want %s %q with id r1", e, tt.code, tt.msg)
			}
			method, path, body := apiRoute(tt.action, tt.args)
			status, resp := s.api(t, method, path, testKey, body)
			if status != tt.status || !strings.Contains(resp, tt.code) || !strings.Contains(resp, strings.ReplaceAll(tt.msg, `"`, `\"`)) {
				t.Errorf("API: %d %s; want %d with %s %q", status, resp, tt.status, tt.code, tt.msg)
			}
		})
	}
	// The API's own refusals: a body that is not one, an unknown field,
	// no key.
	for _, tt := range []struct{ method, path, key, body, want string }{
		{"POST", "/api/rooms/lobby/bans", testKey, `{"name":"bob"`, "body must be a JSON object"},
		{"POST", "/api/rooms/lobby/bans", testKey, `{"name":"bob","duration":"1h","until":"never"}`, `unknown field \"until\"`},
		{"POST", "/api/rooms/lobby/kick", testKey, `{"name":"bob","by":"a b"}`, "bad by"},
		{"DELETE", "/api/rooms/lobby/messages/zero", testKey, ``, "bad seq"},
		{"POST", "/api/rooms/lobby/kick", "", `{"name":"bob"}`, ""},
	} {
		status, resp := s.api(t, tt.method, tt.path, tt.key, tt.body)
		if status/100 != 4 || !strings.Contains(resp, tt.want) {
			t.Errorf("%s %s %s: %d %s; want 4xx with %q", tt.method, tt.path, tt.body, status, resp, tt.want)
		}
	}
	sayOK(t, bob, carol, "nothing happened to me") // and bob is still there, unmuted
}

// TestModerationExpiry: a ban and a mute stop applying when they end, and
// the sweep forgets them.
func TestModerationExpiry(t *testing.T) {
	s := modServer(t, Config{ModerationSweep: 50 * time.Millisecond})
	carol := s.as(t, "carol", "lobby", false)
	bob := s.as(t, "bob", "lobby", false)
	for _, call := range []struct{ path, body string }{
		{"/api/rooms/lobby/mutes", `{"name":"bob","duration":"1s"}`},
		{"/api/rooms/lobby/bans", `{"name":"guest-eve","duration":"1s"}`},
	} {
		if code, resp := s.api(t, "POST", call.path, testKey, call.body); code != http.StatusOK {
			t.Fatalf("%s: %d %s", call.path, code, resp)
		}
	}
	s.waitSeries(t, map[string]float64{`hubbub_moderation_entries{kind="ban"}`: 1, `hubbub_moderation_entries{kind="mute"}`: 1})
	bob.say("muted?")
	if e := bob.errorOf(); e.Code != errMuted {
		t.Fatalf("bob: %+v; want muted", e)
	}
	if _, resp, err := s.tryDial("room", "lobby", "name", "guest-eve"); err == nil || resp.StatusCode != http.StatusForbidden {
		t.Fatalf("guest-eve: %v; want refused while banned", err)
	}
	s.waitSeries(t, map[string]float64{`hubbub_moderation_entries{kind="ban"}`: 0, `hubbub_moderation_entries{kind="mute"}`: 0})
	sayOK(t, bob, carol, "free again")
	s.dial(t, "room", "lobby", "name", "guest-eve").skipUntil("room_changed")
}

// TestModerationSurvivesRestart: with -data-dir, bans, mutes and slow mode
// hold after a restart, and a deleted message stays deleted: its text is
// gone from the history file too.
func TestModerationSurvivesRestart(t *testing.T) {
	dir := t.TempDir()
	users := writeUsers(t, "mo:moderator", "pw", "bob", "pw", "carol", "pw")
	start := func() (*testServer, func()) {
		cfg := deployed(Config{UsersFile: users, APIKey: testKey, DataDir: dir})
		srv, err := Open(cfg, testLogger(t))
		if err != nil {
			t.Fatal(err)
		}
		ts := httptest.NewServer(srv.routes())
		return &testServer{Server: srv, ts: ts}, func() {
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			srv.Shutdown(ctx)
			ts.Close()
		}
	}
	s, stop := start()
	bob := s.as(t, "bob", "lobby", false)
	carol := s.as(t, "carol", "lobby", false)
	sayOK(t, bob, carol, "my secret address is 12 Elm St")
	sayOK(t, carol, bob, "kept")
	for _, call := range []struct{ method, path, body string }{
		{"DELETE", "/api/rooms/lobby/messages/1", ""},
		{"POST", "/api/rooms/lobby/mutes", `{"name":"bob","duration":"1h"}`},
		{"POST", "/api/rooms/lobby/bans", `{"name":"guest-eve","duration":"1h","reason":"spam"}`},
		{"PUT", "/api/rooms/lobby/slow-mode", `{"interval":"1h"}`},
	} {
		if code, resp := s.api(t, call.method, call.path, testKey, call.body); code != http.StatusOK {
			t.Fatalf("%s %s: %d %s", call.method, call.path, code, resp)
		}
	}
	carol.skipUntil("message_deleted")
	stop()

	// The file's messages hold the tombstone, not the text.
	db, err := bolt.Open(filepath.Join(dir, "history.db"), 0o600, &bolt.Options{ReadOnly: true})
	if err != nil {
		t.Fatal(err)
	}
	var kept int
	db.View(func(tx *bolt.Tx) error {
		return tx.Bucket(bucketRooms).Bucket([]byte("lobby")).Bucket(bucketMsgs).ForEach(func(_, v []byte) error {
			kept++
			if bytes.Contains(v, []byte("12 Elm St")) {
				t.Errorf("history.db keeps the deleted message: %s", v)
			}
			return nil
		})
	})
	db.Close()
	if kept != 2 {
		t.Errorf("history.db keeps %d messages of lobby; want 2 (the tombstone and kept)", kept)
	}

	s, stop = start()
	defer stop()
	bob = s.dial(t, "room", "lobby", "ticket", s.login(t, "bob", "pw"))
	hist := bob.historyOf()
	if len(hist) != 2 || !hist[0].Deleted || hist[0].Message != "" || hist[1].Message != "kept" {
		t.Errorf("history after the restart: %+v; want the tombstone, then kept", hist)
	}
	bob.say("still muted?")
	if e := bob.errorOf(); e.Code != errMuted {
		t.Errorf("bob after the restart: %+v; want muted", e)
	}
	carol = s.as(t, "carol", "lobby", false)
	carol.say("one")
	carol.say("two")
	if e := carol.errorOf(); e.Code != errSlowMode {
		t.Errorf("carol's second message after the restart: %+v; want slow_mode", e)
	}
	if _, resp, err := s.tryDial("room", "lobby", "name", "guest-eve"); err == nil || resp.StatusCode != http.StatusForbidden {
		t.Errorf("guest-eve after the restart: %v; want refused", err)
	}
}

// TestModerationNames: a moderator names whom it acts on as the room
// shows them. A logged-in user is one member under its login whatever
// its connections, so acting on it acts on every one of them there; a
// guest's name binds in any case.
func TestModerationNames(t *testing.T) {
	s := modServer(t, Config{})
	mo := s.as(t, "mo", "lobby", false)
	bob := s.as(t, "bob", "lobby", false)
	bob2 := s.as(t, "bob", "lobby", false)
	if got := bob2.members(); !slices.Equal(got.Members, []string{"bob", "mo"}) || got.Count != 2 {
		t.Fatalf("members with bob's second tab: %v (%d); want bob and mo (2)", got.Members, got.Count)
	}
	mo.sendRaw(`{"type":"kick","id":"k","payload":{"name":"BOB","reason":"both tabs"}}`)
	// mo reads its answer and the room's news of bob leaving, once, marked
	// as kicked, in whichever order they come.
	var n modNotice
	var left []presencePayload
	for n.Action == "" || len(left) < 1 {
		switch e := mo.next(); e.Type {
		case "moderation":
			e.decode(t, &n)
		case "presence":
			var p presencePayload
			if e.decode(t, &p); p.Event == "leave" {
				left = append(left, p)
			}
		}
	}
	if n.Name != "bob" || n.Kicked != 2 {
		t.Errorf("kick notice %+v; want bob (the login), 2 connections", n)
	}
	if p := left[0]; p.Name != "bob" || !p.Kicked || p.By != "mo" || p.Reason != "both tabs" {
		t.Errorf("leave %+v; want bob, kicked by mo for both tabs", p)
	}
	for i, p := range []*peer{bob, bob2} {
		if code := p.closeCode(5 * time.Second); code != closeKicked {
			t.Errorf("bob's connection %d closed with %d; want %d", i, code, closeKicked)
		}
	}
	mo.say("marker")
	for {
		e := mo.next()
		if e.Type == "presence" {
			t.Errorf("a second presence event %s: bob's two tabs leave once", e.Payload)
		}
		if e.Type == "new_message" && e.msg(t).Message == "marker" {
			break
		}
	}

	spam := s.as(t, "guest-Spammer", "lobby", false)
	mo.sendJSON("ban", map[string]string{"name": "GUEST-spammer", "duration": "1h"})
	if code := spam.closeCode(5 * time.Second); code != closeBanned {
		t.Errorf("guest-Spammer closed with %d; want %d", code, closeBanned)
	}
	for _, name := range []string{"guest-spammer", "GUEST-SPAMMER"} {
		if _, resp, err := s.tryDial("room", "lobby", "name", name); err == nil || resp.StatusCode != http.StatusForbidden {
			t.Errorf("%s connected (%v); want refused by the ban", name, err)
		}
	}
	// Nor can a guest in another room take the banned name in lobby.
	g := s.as(t, "guest-x", "attic", false)
	g.sendJSON("change_name", map[string]string{"name": "guest-SPAMMER"})
	g.sendJSON("change_room", map[string]string{"name": "lobby"})
	if e := g.errorOf(); e.Code != errBanned {
		t.Errorf("the banned name joining lobby: %+v; want banned", e)
	}
}

// TestModerationTargets: nobody acts on an equal, a superior or itself;
// the API key acts on anyone.
func TestModerationTargets(t *testing.T) {
	tests := []struct {
		actor, target string
		ok            bool
	}{
		{"mo", "bob", true},
		{"mo", "mo", false},
		{"mo", "ad", false},
		{"ad", "mo", true},
		{"ad", "ad", false},
		{"api", "ad", true},
	}
	for _, tt := range tests {
		for _, action := range []string{"kick", "ban", "mute"} {
			t.Run(tt.actor+"/"+action+"/"+tt.target, func(t *testing.T) {
				s := modServer(t, Config{})
				target := s.as(t, tt.target, "lobby", false)
				via, actor := viaAPI, target
				if tt.actor != "api" {
					via = viaJSON
					if tt.actor != tt.target {
						actor = s.as(t, tt.actor, "lobby", false)
					}
				}
				got := s.moderateVia(t, via, actor, action, modArgs{name: tt.target, dur: "1h"}, "")
				if want := map[bool]string{true: "ok", false: errForbidden}[tt.ok]; got != want {
					t.Errorf("got %s; want %s", got, want)
				}
			})
		}
	}
}

// TestSlowModeCountsUsers: slow mode holds a user to one message per
// interval across its tabs, and a guest across its names; lifting it
// names who lifted it. A muted guest cannot shed the mute by renaming.
func TestSlowModeCountsUsers(t *testing.T) {
	s := modServer(t, Config{})
	carol := s.as(t, "carol", "lobby", false)
	carol2 := s.as(t, "carol", "lobby", false)
	guest := s.as(t, "guest-gus", "lobby", false)
	watch := s.as(t, "dave", "lobby", false)
	if code, resp := s.api(t, "PUT", "/api/rooms/lobby/slow-mode", testKey, `{"interval":"1h","by":"setter"}`); code != http.StatusOK {
		t.Fatalf("slow mode: %d %s", code, resp)
	}
	sayOK(t, carol, watch, "from tab one")
	carol2.say("from tab two")
	if e := carol2.errorOf(); e.Code != errSlowMode {
		t.Errorf("carol's second tab: %+v; want slow_mode", e)
	}
	sayOK(t, guest, watch, "as gus")
	guest.sendJSON("change_name", map[string]string{"name": "guest-other"})
	guest.skipUntil("presence")
	guest.say("as someone else")
	if e := guest.errorOf(); e.Code != errSlowMode {
		t.Errorf("the renamed guest: %+v; want slow_mode", e)
	}

	if code, resp := s.api(t, "DELETE", "/api/rooms/lobby/slow-mode", testKey, `{"by":"lifter"}`); code != http.StatusOK {
		t.Fatalf("slow mode off: %d %s", code, resp)
	}
	for {
		var n modNotice
		watch.skipUntil("moderation").decode(t, &n)
		if n.Action == "slow_mode" && n.Interval == "" {
			if n.By != "lifter" {
				t.Errorf("slow mode lifted by %q; want lifter", n.By)
			}
			break
		}
	}
	sayOK(t, carol2, watch, "free")

	if code, resp := s.api(t, "POST", "/api/rooms/lobby/mutes", testKey, `{"name":"guest-other","duration":"1h"}`); code != http.StatusOK {
		t.Fatalf("mute: %d %s", code, resp)
	}
	guest.sendJSON("change_name", map[string]string{"name": "guest-fresh"})
	if e := guest.errorOf(); e.Code != errMuted || !strings.Contains(e.Message, "your name stays") {
		t.Errorf("the muted guest renaming: %+v; want muted", e)
	}
}

// TestTextModeratorsSeeSeqs: a moderator in the text format reads each
// message's seq, live and in history, so that it can /delete it; other
// text users read the plain lines.
func TestTextModeratorsSeeSeqs(t *testing.T) {
	s := modServer(t, Config{})
	bob := s.as(t, "bob", "lobby", false)
	mo := s.as(t, "mo", "lobby", true)
	plain := s.as(t, "carol", "lobby", true)
	bob.say("buy cheap stuff")
	if l := mo.lineWith("bob:"); l != "[lobby #1] bob: buy cheap stuff" {
		t.Errorf("moderator's line %q; want [lobby #1] bob: buy cheap stuff", l)
	}
	if l := plain.lineWith("bob:"); l != "[lobby] bob: buy cheap stuff" {
		t.Errorf("user's line %q; want [lobby] bob: buy cheap stuff", l)
	}
	late := s.as(t, "ad", "elsewhere", true)
	late.sendRaw("/join lobby")
	if l := late.lineWith("(history)"); l != "[lobby #1] (history) bob: buy cheap stuff" {
		t.Errorf("admin's history line %q", l)
	}
	mo.sendRaw("/delete 1")
	if l := mo.lineWith("deleted"); l != "* message 1 in lobby was deleted by mo" {
		t.Errorf("moderator read %q", l)
	}
	replay := s.dial(t, "room", "lobby", "ticket", s.login(t, "mo", "pw"), "format", "text")
	if l := replay.lineWith("(history)"); l != "[lobby #1] (history) message deleted" {
		t.Errorf("moderator's replay of the tombstone %q", l)
	}
}

// TestModerationInForce: GET /api/moderation lists the bans, mutes and
// slow modes in force, oldest first, for a room or all; a lifted or ended
// one is not listed.
func TestModerationInForce(t *testing.T) {
	s := modServer(t, Config{})
	for _, call := range []struct{ method, path, body string }{
		{"POST", "/api/rooms/lobby/bans", `{"name":"bob","duration":"1h","reason":"spam","by":"ops"}`},
		{"POST", "/api/mutes", `{"name":"guest-eve","duration":"30m"}`},
		{"PUT", "/api/rooms/attic/slow-mode", `{"interval":"10s"}`},
		{"POST", "/api/rooms/attic/mutes", `{"name":"dave","duration":"1h"}`},
		{"DELETE", "/api/rooms/attic/mutes/dave", ""},
		{"PUT", "/api/rooms/cellar/slow-mode", `{"interval":"10s"}`},
		{"DELETE", "/api/rooms/cellar/slow-mode", ""},
	} {
		if code, resp := s.api(t, call.method, call.path, testKey, call.body); code != http.StatusOK {
			t.Fatalf("%s %s: %d %s", call.method, call.path, code, resp)
		}
		time.Sleep(2 * time.Millisecond) // distinct times, for the order
	}
	list := func(query string) string {
		t.Helper()
		code, resp := s.api(t, "GET", "/api/moderation"+query, testKey, "")
		if code != http.StatusOK {
			t.Fatalf("GET /api/moderation%s: %d %s", query, code, resp)
		}
		var r struct {
			InForce []modNotice `json:"in_force"`
		}
		decodeJSONBody(t, resp, &r)
		var got []string
		for _, n := range r.InForce {
			got = append(got, strings.TrimSpace(fmt.Sprintf("%s %s %s %s %s %s %s", n.Action, n.Room, n.Name, n.By, n.Duration, n.Interval, n.Reason)))
		}
		return strings.Join(got, "; ")
	}
	if got, want := list(""), "ban lobby bob ops 1h  spam; mute  guest-eve api 30m; slow_mode attic  api  10s"; got != want {
		t.Errorf("all in force: %q; want %q", got, want)
	}
	if got, want := list("?room=lobby"), "ban lobby bob ops 1h  spam; mute  guest-eve api 30m"; got != want {
		t.Errorf("in force in lobby: %q; want %q", got, want)
	}
	if code, resp := s.api(t, "GET", "/api/moderation?room=a/b", testKey, ""); code != http.StatusBadRequest || !strings.Contains(resp, "bad room") {
		t.Errorf("a bad room: %d %s; want 400 bad room", code, resp)
	}
	if code, _ := s.api(t, "GET", "/api/moderation", "", ""); code != http.StatusUnauthorized {
		t.Errorf("without the key: %d; want 401", code)
	}
}

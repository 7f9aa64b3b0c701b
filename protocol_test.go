package main

import (
	"encoding/json"
	"strings"
	"testing"
	"unicode/utf8"
)

// op names a command's kind in the tables of these tests.
type op uint8

const (
	opNone op = iota // nil, or a command these tests do not know
	opSay
	opJoin
	opNick
	opWho
	opRooms
	opHelp
	opQuit
	opFail
	opStatus
	opAct // an action message, /me
)

// flatCmd is a command as a row of the tables here: kind, argument, error.
type flatCmd struct {
	op  op
	arg string
	err *protoError
}

// flat describes cmd for comparison with a table row.
func flat(cmd command) flatCmd {
	switch c := cmd.(type) {
	case sayCmd:
		if c.action {
			return flatCmd{op: opAct, arg: c.msg}
		}
		return flatCmd{op: opSay, arg: c.msg}
	case joinCmd:
		return flatCmd{op: opJoin, arg: c.room}
	case nickCmd:
		return flatCmd{op: opNick, arg: c.name}
	case whoCmd:
		return flatCmd{op: opWho}
	case roomsCmd:
		return flatCmd{op: opRooms}
	case helpCmd:
		return flatCmd{op: opHelp}
	case quitCmd:
		return flatCmd{op: opQuit}
	case statusCmd:
		return flatCmd{op: opStatus}
	case failCmd:
		return flatCmd{op: opFail, err: c.err}
	}
	return flatCmd{}
}

func TestDecodeJSON(t *testing.T) {
	tests := []struct {
		in     string
		wantOp op
		arg    string
		code   string
	}{
		{`{"type":"send_message","payload":{"message":"hi"}}`, opSay, "hi", ""},
		{`{"type":"send_message","payload":{"message":"  padded  "}}`, opSay, "padded", ""},
		{`{"type":"send_message","payload":{"message":"waves","action":true}}`, opAct, "waves", ""},
		{`{"type":"send_message","payload":{"message":"waves","action":"yes"}}`, opFail, "", errBadPayload},
		{`{"type":"send_message","payload":{"message":" ","action":true}}`, opFail, "", errEmptyMessage},
		{`{"type":"change_room","payload":{"name":"lobby"}}`, opJoin, "lobby", ""},
		{`{"type":"change_name","payload":{"name":"zed"}}`, opNick, "zed", ""},
		{`{"type":"list_rooms"}`, opRooms, "", ""},
		{`{"type":"list_members","payload":null}`, opWho, "", ""},
		{`nope`, opFail, "", errBadJSON},
		{``, opFail, "", errBadJSON},
		{`{"type":1}`, opFail, "", errBadJSON},
		{`{"type":"x"}`, opFail, "", errUnknownType},
		{`{}`, opFail, "", errBadPayload},
		{`{"type":"send_message","payload":{"message":null}}`, opFail, "", errBadPayload},
		{`{"type":"send_message","payload":{"message":"\u0000"}}`, opSay, "\uFFFD", ""},
		{`{"type":"change_room","payload":{"name":"a.b"}}`, opFail, "", errBadRoom},
		{`{"type":"change_name","payload":{"name":""}}`, opFail, "", errBadName},
	}
	for _, tt := range tests {
		cmd, _ := decodeJSON([]byte(tt.in))
		r := flat(cmd)
		if r.op != tt.wantOp || r.arg != tt.arg {
			t.Errorf("decodeJSON(%q) = op %d arg %q; want op %d arg %q", tt.in, r.op, r.arg, tt.wantOp, tt.arg)
		}
		if tt.code != "" && (r.err == nil || r.err.Code != tt.code) {
			t.Errorf("decodeJSON(%q) error = %v; want code %s", tt.in, r.err, tt.code)
		}
	}
}

func TestBadJSONSaysWhatWasExpected(t *testing.T) {
	tests := []struct {
		in   string
		want []string // in the message
		not  []string // never in it: Go's parser internals
	}{
		{"hello", []string{`expected one JSON event per frame`, "?format=text"}, []string{"invalid character"}},
		{"  /join lobby", []string{"?format=text"}, nil},
		{`{"type":"send_message",`, []string{"the JSON breaks at byte"}, []string{"?format=text", "unexpected end"}},
		{`{"type":1}`, []string{`"type" must be a string, not a number`}, []string{"?format=text"}},
		{`[1,2]`, []string{"not an object"}, nil},
	}
	for _, tt := range tests {
		cmd, _ := decodeJSON([]byte(tt.in))
		r := flat(cmd)
		if r.op != opFail || r.err.Code != errBadJSON {
			t.Errorf("decodeJSON(%q) = %+v; want bad_json", tt.in, r)
			continue
		}
		for _, w := range tt.want {
			if !strings.Contains(r.err.Message, w) {
				t.Errorf("decodeJSON(%q) says %q; want it to say %q", tt.in, r.err.Message, w)
			}
		}
		for _, n := range tt.not {
			if strings.Contains(r.err.Message, n) {
				t.Errorf("decodeJSON(%q) says %q; it should not say %q", tt.in, r.err.Message, n)
			}
		}
	}
}

func TestParseLine(t *testing.T) {
	tests := []struct {
		in     string
		wantOp op
		arg    string
	}{
		{"hello", opSay, "hello"},
		{"  spaced out  ", opSay, "spaced out"},
		{"/join lobby", opJoin, "lobby"},
		{"/JOIN  lobby ", opJoin, "lobby"},
		{"/join", opFail, ""},
		{"/join a/b", opFail, ""},
		{"/nick bob", opNick, "bob"},
		{"/nick", opFail, ""},
		{"/who", opWho, ""},
		{"/rooms", opRooms, ""},
		{"/help", opHelp, ""},
		{"/quit", opQuit, ""},
		{"/", opFail, ""},
		{"/dance", opFail, ""},
		{"", opFail, ""},
		{"\x1b[2Jcleared", opSay, "\uFFFD[2Jcleared"},
		{strings.Repeat("x", maxMessageRunes), opSay, strings.Repeat("x", maxMessageRunes)},
		{strings.Repeat("x", maxMessageRunes+1), opFail, ""},
		{"/status", opStatus, ""},
		{"/me waves", opAct, "waves"},
		{"/ME  waves hello ", opAct, "waves hello"},
		{"/me", opFail, ""},
	}
	for _, tt := range tests {
		r := flat(parseLine(tt.in))
		if r.op != tt.wantOp || r.arg != tt.arg {
			t.Errorf("parseLine(%q) = op %d arg %q; want op %d arg %q", tt.in, r.op, r.arg, tt.wantOp, tt.arg)
		}
	}
}

func TestSplitLines(t *testing.T) {
	tests := []struct {
		in   string
		want []string
	}{
		{"hello\n", []string{"hello"}},
		{"hello\r\n", []string{"hello"}},
		{"hello", []string{"hello"}},
		{"a\nb\n", []string{"a", "b"}},
		{"a\r\n\r\nb", []string{"a", "b"}},
		{"\n", []string{""}},
		{"\n\n\n", []string{""}},
		{"", []string{""}},
	}
	for _, tt := range tests {
		got := splitLines([]byte(tt.in))
		if strings.Join(got, "|") != strings.Join(tt.want, "|") || len(got) != len(tt.want) {
			t.Errorf("splitLines(%q) = %q; want %q", tt.in, got, tt.want)
		}
	}
}

func TestCleanMessage(t *testing.T) {
	tests := []struct{ in, want string }{
		{"plain", "plain"},
		{"tab\there", "tab here"},
		{"bell\a", "bell\uFFFD"},
		{"bad \xff utf8", "bad \uFFFD utf8"},
		{"naïve café ☕", "naïve café ☕"},
		{strings.Repeat("é", 500), strings.Repeat("é", 500)}, // cleaned, never cut: sayCommand refuses it
	}
	for _, tt := range tests {
		if got := cleanMessage(tt.in); got != tt.want {
			t.Errorf("cleanMessage(%q) = %q; want %q", tt.in, got, tt.want)
		}
	}
}

func TestMessageEventEncoding(t *testing.T) {
	o := messageEvent(9, "r", "al", `quote " and <tag>`, testTime)
	var e event
	if err := json.Unmarshal(o.json, &e); err != nil {
		t.Fatalf("json %s: %v", o.json, err)
	}
	m := e.msg(t)
	if m.Message != `quote " and <tag>` || m.ID != 9 || m.Time != "2026-11-22T10:00:00.000Z" {
		t.Errorf("decoded %+v", m)
	}
	if string(o.text) != `[r] al: quote " and <tag>` {
		t.Errorf("text %q", o.text)
	}
}

// FuzzDecode feeds arbitrary frames to both decoders. They must never
// panic, must always produce a command, and anything they accept must be
// clean: valid UTF-8, no control characters, names that pass validation.
func FuzzDecode(f *testing.F) {
	for _, s := range []string{
		`{"type":"send_message","payload":{"message":"hi"}}`,
		`{"type":"change_room","payload":{"name":"lobby"}}`,
		`{"type":"change_name","payload":{"name":"x"}}`,
		`{"type":"list_rooms"}`, `{"type":`, `[]`, `null`,
		"/join lobby", "/nick a", "/who", "plain\nlines\r\n", "\xff\xfe", "/",
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		check := func(cmd command) {
			r := flat(cmd)
			switch r.op {
			case opFail:
				if r.err == nil || r.err.Code == "" {
					t.Fatalf("failure without error code for %q", data)
				}
				if !utf8.ValidString(r.err.Message) {
					t.Fatalf("error message %q for %q is not UTF-8", r.err.Message, data)
				}
			case opSay:
				if r.arg == "" || !utf8.ValidString(r.arg) || strings.ContainsAny(r.arg, "\x00\n\r\x1b") {
					t.Fatalf("accepted unclean message %q from %q", r.arg, data)
				}
			case opJoin:
				if !validRoom(r.arg) {
					t.Fatalf("accepted bad room %q", r.arg)
				}
			case opNick:
				if !validName(r.arg) {
					t.Fatalf("accepted bad name %q", r.arg)
				}
			case opNone:
				t.Fatalf("no command for %q", data)
			}
		}
		cmd, id := decodeJSON(data)
		if id != "" && !validID(id) {
			t.Fatalf("accepted bad id %q from %q", id, data)
		}
		check(cmd)
		for _, line := range splitLines(data) {
			check(parseLine(line))
		}
	})
}

package main

import (
	"strings"
	"testing"
	"time"
)

// modOf returns the action a moderation command carries, or the error of
// a refusal; ok is false for any other command.
func modOf(cmd command) (a modAction, e *protoError, ok bool) {
	switch c := cmd.(type) {
	case modCmd:
		return c.modAction, nil, true
	case failCmd:
		return modAction{}, c.err, true
	}
	return modAction{}, nil, false
}

// TestParseModeration: every moderation request reads the same from a
// JSON event and a text command, and each bad one is refused with an error
// that says what to send instead.
func TestParseModeration(t *testing.T) {
	tests := []struct {
		line string // text command
		json string // the same as a JSON event ("" for none)
		want modAction
		code string // the refusal's code, "" for none
		msg  string // a part of the refusal's message, in any case
	}{
		{"/kick bob", `{"type":"kick","payload":{"name":"bob"}}`,
			modAction{kind: actKick, name: "bob"}, "", ""},
		{"/kick bob  spam and more ", `{"type":"kick","payload":{"name":"bob","reason":"spam and more"}}`,
			modAction{kind: actKick, name: "bob", reason: "spam and more"}, "", ""},
		{"/kick-all bob", `{"type":"kick","payload":{"name":"bob","server":true}}`,
			modAction{kind: actKick, name: "bob", server: true}, "", ""},
		{"/ban bob 10m spam", `{"type":"ban","payload":{"name":"bob","duration":"10m","reason":"spam"}}`,
			modAction{kind: actBan, name: "bob", dur: 10 * time.Minute, reason: "spam"}, "", ""},
		{"/BAN-ALL bob 1h30m", `{"type":"ban","payload":{"name":"bob","duration":"1h30m","server":true}}`,
			modAction{kind: actBan, name: "bob", dur: 90 * time.Minute, server: true}, "", ""},
		{"/unban bob", `{"type":"unban","payload":{"name":"bob"}}`, modAction{kind: actUnban, name: "bob"}, "", ""},
		{"/unban-all bob", `{"type":"unban","payload":{"name":"bob","server":true}}`,
			modAction{kind: actUnban, name: "bob", server: true}, "", ""},
		{"/mute bob 5m", `{"type":"mute","payload":{"name":"bob","duration":"5m"}}`,
			modAction{kind: actMute, name: "bob", dur: 5 * time.Minute}, "", ""},
		{"/unmute bob", `{"type":"unmute","payload":{"name":"bob"}}`, modAction{kind: actUnmute, name: "bob"}, "", ""},
		{"/delete 42", `{"type":"delete_message","payload":{"seq":42}}`, modAction{kind: actDelete, seq: 42}, "", ""},
		{"/slow 10s", `{"type":"slow_mode","payload":{"interval":"10s"}}`,
			modAction{kind: actSlow, dur: 10 * time.Second}, "", ""},
		{"/slow off", `{"type":"slow_mode","payload":{"interval":"off"}}`, modAction{kind: actSlow}, "", ""},
		{"/slow 0s", `{"type":"slow_mode","payload":{"interval":"0s"}}`, modAction{kind: actSlow}, "", ""},

		// Durations.
		{"/ban bob 10 spam", `{"type":"ban","payload":{"name":"bob","duration":"10"}}`,
			modAction{}, errBadPayload, `bad duration "10": want a Go duration such as 30s, 10m or 1h30m`},
		{"/ban bob tomorrow", `{"type":"ban","payload":{"name":"bob","duration":"tomorrow"}}`,
			modAction{}, errBadPayload, `bad duration "tomorrow"`},
		{"/mute bob -5m", `{"type":"mute","payload":{"name":"bob","duration":"-5m"}}`,
			modAction{}, errBadPayload, "longer than zero"},
		{"/mute bob 0s", `{"type":"mute","payload":{"name":"bob","duration":"0s"}}`,
			modAction{}, errBadPayload, "longer than zero"},
		{"/ban bob 9000h", `{"type":"ban","payload":{"name":"bob","duration":"9000h"}}`,
			modAction{}, errBadPayload, "at most 8760h"},
		{"/slow 2d", `{"type":"slow_mode","payload":{"interval":"2d"}}`,
			modAction{}, errBadPayload, `bad interval "2d"`},
		{"/slow 25h", `{"type":"slow_mode","payload":{"interval":"25h"}}`,
			modAction{}, errBadPayload, `bad interval "25h"`},

		// Missing or malformed parts.
		{"/ban bob", `{"type":"ban","payload":{"name":"bob"}}`, modAction{}, errBadPayload, "DURATION"},
		{"/kick", `{"type":"kick","payload":{}}`, modAction{}, errBadPayload, "NAME"},
		{"/kick b@d", `{"type":"kick","payload":{"name":"b@d"}}`, modAction{}, errBadName, `bad name "b@d"`},
		{"/unban bob now", "", modAction{}, errBadPayload, "usage: /unban NAME"},
		{"/delete x", `{"type":"delete_message","payload":{"seq":"x"}}`, modAction{}, errBadPayload, "seq"},
		{"/delete 0", `{"type":"delete_message","payload":{"seq":0}}`, modAction{}, errBadPayload, "seq"},
		{"/slow", `{"type":"slow_mode","payload":{}}`, modAction{}, errBadPayload, "interval"},
		{"/kick bob " + strings.Repeat("x", maxReasonRunes+1), "", modAction{}, errTooLong, "at most 100"},
		{"", `{"type":"kick","payload":{"name":"bob","room":"lobby","server":true}}`,
			modAction{}, errBadPayload, "not both"},
		{"", `{"type":"slow_mode","payload":{"interval":"5s","server":true}}`,
			modAction{}, errBadPayload, "per room"},
		{"", `{"type":"kick","payload":{"name":"bob","room":"no/such"}}`, modAction{}, errBadRoom, "bad room name"},
		{"", `{"type":"delete_message","payload":{"seq":3,"epoch":"a.b"}}`, modAction{}, errBadPayload, "bad epoch"},
		{"", `{"type":"mute","payload":"bob"}`, modAction{}, errBadPayload, `mute needs {"payload":{"name":"bob","duration":"5m"}}`},
	}
	for _, tt := range tests {
		for in, cmd := range bothForms(tt.line, tt.json) {
			a, e, ok := modOf(cmd)
			switch {
			case !ok:
				t.Errorf("%s: %T; want a moderation command", in, cmd)
			case tt.code == "" && e != nil:
				t.Errorf("%s: refused (%s: %s)", in, e.Code, e.Message)
			case tt.code == "" && a != tt.want:
				t.Errorf("%s: %+v; want %+v", in, a, tt.want)
			case tt.code != "" && (e == nil || e.Code != tt.code || !strings.Contains(strings.ToLower(e.Message), strings.ToLower(tt.msg))):
				t.Errorf("%s: %+v, error %+v; want %s containing %q", in, a, e, tt.code, tt.msg)
			}
		}
	}
}

// TestParseDirect: /msg and send_direct read alike; a bad recipient or
// message is refused before it reaches the hub.
func TestParseDirect(t *testing.T) {
	tests := []struct {
		line, json string
		to, msg    string
		code       string
	}{
		{"/msg bob hi there", `{"type":"send_direct","payload":{"to":"bob","message":"hi there"}}`, "bob", "hi there", ""},
		{"/msg bob", `{"type":"send_direct","payload":{"to":"bob"}}`, "", "", errBadPayload},
		{"/msg", `{"type":"send_direct","payload":{}}`, "", "", errBadPayload},
		{"/msg b@d hi", `{"type":"send_direct","payload":{"to":"b@d","message":"hi"}}`, "", "", errBadName},
		{"/msg bob " + strings.Repeat("x", maxMessageRunes+1), "", "", "", errTooLong},
		{"", `{"type":"send_direct","payload":{"to":"bob","message":" "}}`, "", "", errEmptyMessage},
	}
	for _, tt := range tests {
		for in, cmd := range bothForms(tt.line, tt.json) {
			switch c := cmd.(type) {
			case directCmd:
				if tt.code != "" || c.to != tt.to || c.msg != tt.msg {
					t.Errorf("%s: direct to %q %q; want to %q %q (error %q)", in, c.to, c.msg, tt.to, tt.msg, tt.code)
				}
			case failCmd:
				if c.err.Code != tt.code {
					t.Errorf("%s: refused %s (%s); want %q", in, c.err.Code, c.err.Message, tt.code)
				}
			default:
				t.Errorf("%s: %T", in, cmd)
			}
		}
	}
}

// bothForms decodes a request as a text line and as a JSON event (either
// may be ""), keyed by a label for the test's messages.
func bothForms(line, json string) map[string]command {
	cmds := map[string]command{}
	if line != "" {
		cmds["text "+line] = parseLine(line)
	}
	if json != "" {
		cmds["json "+json] = jsonCmd(json)
	}
	return cmds
}

// jsonCmd decodes one JSON event as a client's frame is decoded.
func jsonCmd(s string) command {
	cmd, _ := decodeJSON([]byte(s))
	return cmd
}

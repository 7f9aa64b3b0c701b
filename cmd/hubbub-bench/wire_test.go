package main

import (
	"encoding/json"
	"maps"
	"slices"
	"strings"
	"testing"
)

func TestMarkerRoundTrip(t *testing.T) {
	tests := []struct {
		m    marker
		size int
	}{
		{marker{0, 1, 1}, 48},
		{marker{7, 42, 1732200000123456789}, 128},
		{marker{4294967295, 18446744073709551615, 9223372036854775807}, 48},
		{marker{3, 9, 1732200000123456789}, 512},
	}
	for _, tt := range tests {
		text := appendMessage(nil, tt.m, tt.size)
		if len(text) < tt.size {
			t.Errorf("appendMessage(%+v, %d) has %d bytes; want >= %d", tt.m, tt.size, len(text), tt.size)
		}
		got, ok := parseMarker(text)
		if !ok || got != tt.m {
			t.Errorf("parseMarker(%q) = %+v, %v; want %+v", text, got, ok, tt.m)
		}
	}
}

// TestFrameSizeLimit checks the promise behind -size: at the maximum size
// the whole frame, JSON envelope included, fits the server's 512-byte limit,
// and the JSON is valid.
func TestFrameSizeLimit(t *testing.T) {
	big := marker{4294967295, 18446744073709551615, 9223372036854775807}
	for _, format := range []string{formatJSON, formatText} {
		frame := appendFrame(nil, format, big, maxSize(format))
		if len(frame) != maxFrame {
			t.Errorf("%s frame at max size is %d bytes; want %d", format, len(frame), maxFrame)
		}
	}
	frame := appendFrame(nil, formatJSON, marker{1, 2, 3}, 100)
	var ev struct {
		Type    string
		Payload struct{ Message string }
	}
	if err := json.Unmarshal(frame, &ev); err != nil || ev.Type != "send_message" || len(ev.Payload.Message) != 100 {
		t.Errorf("JSON frame %s decodes to %+v, %v", frame, ev, err)
	}
}

func TestParseMarker(t *testing.T) {
	tests := []struct {
		in   string
		want marker
		ok   bool
	}{
		{"hb1 1-2 3", marker{1, 2, 3}, true},
		{"hb1 1-2 3 xxxx", marker{1, 2, 3}, true},
		{"hb1 1-2 3xyz", marker{1, 2, 3}, true},
		{"hb1 1-2", marker{}, false},
		{"hb1 1 2 3", marker{}, false},
		{"hb1 -2 3", marker{}, false},
		{"hb2 1-2 3", marker{}, false},
		{"hb1 4294967296-2 3", marker{}, false}, // sender overflows uint32
		{"hb1 1-2 9223372036854775808", marker{}, false},
		{"", marker{}, false},
	}
	for _, tt := range tests {
		got, ok := parseMarker([]byte(tt.in))
		if ok != tt.ok || got != tt.want {
			t.Errorf("parseMarker(%q) = %+v, %v; want %+v, %v", tt.in, got, ok, tt.want, tt.ok)
		}
	}
}

func TestSplitFrame(t *testing.T) {
	m1 := string(appendMessage(nil, marker{1, 1, 100}, 60))
	m2 := string(appendMessage(nil, marker{2, 5, 200}, 60))
	ev := func(typ, payload string) string { return `{"type":"` + typ + `","payload":` + payload + `}` }
	msg := func(text string) string {
		return ev("new_message", `{"id":1,"room":"r","from":"a","message":"`+text+`"}`)
	}
	tests := []struct {
		name     string
		format   string
		frame    string
		want     []marker
		wantErrs map[string]int
	}{
		{"json one", formatJSON, msg(m1), []marker{{1, 1, 100}}, nil},
		{"json coalesced", formatJSON, msg(m1) + "\n" + msg(m2) + "\n", []marker{{1, 1, 100}, {2, 5, 200}}, nil},
		{"json crlf and blank", formatJSON, msg(m1) + "\r\n\n" + msg(m2), []marker{{1, 1, 100}, {2, 5, 200}}, nil},
		{"json other events", formatJSON,
			ev("room_changed", `{"room":"r","name":"hb1 9-9 9","members":["hb1 9-9 9"],"count":1}`) + "\n" +
				ev("presence", `{"room":"r","event":"join","name":"b"}`) + "\n" + msg(m2),
			[]marker{{2, 5, 200}}, nil},
		{"json chat from a person", formatJSON, msg("hello"), nil, nil},
		{"json escaped message", formatJSON,
			ev("new_message", `{"id":1,"room":"r","from":"a","message":"\"q\" `+m1+`"}`), []marker{{1, 1, 100}}, nil},
		{"json other key order", formatJSON,
			ev("new_message", `{"message":"`+m1+`","id":1}`), []marker{{1, 1, 100}}, nil},
		{"json marker outside message", formatJSON,
			ev("new_message", `{"id":1,"room":"hb1 9-9 9","message":"`+m2+`"}`), []marker{{2, 5, 200}}, nil},
		{"json error", formatJSON, ev("error", `{"code":"bad_json","message":"x"}`), nil, map[string]int{"bad_json": 1}},
		{"json garbage", formatJSON, "not json\n" + msg(m1), []marker{{1, 1, 100}}, map[string]int{"undecodable": 1}},
		{"text hubbub line", formatText, "[bench] hb3-0: " + m1, []marker{{1, 1, 100}}, nil},
		{"text notices", formatText, "* hb4-0 joined bench\n* you are hb1-0 in bench (2 members: hb1-0, hb4-0)", nil, nil},
		{"text error line", formatText, "! empty message", nil, map[string]int{"text": 1}},
		{"raw gorilla coalesced", formatText, m1 + "\n" + m2, []marker{{1, 1, 100}, {2, 5, 200}}, nil},
		{"raw two markers in a line", formatText, m1 + " " + m2, []marker{{1, 1, 100}, {2, 5, 200}}, nil},
		{"empty", formatText, "", nil, nil},
	}
	for _, tt := range tests {
		var got []marker
		st := splitFrame(tt.format, []byte(tt.frame), func(m marker) { got = append(got, m) })
		if !slices.Equal(got, tt.want) || st.Markers != len(tt.want) {
			t.Errorf("%s: splitFrame = %+v (count %d); want %+v", tt.name, got, st.Markers, tt.want)
		}
		if !maps.Equal(st.ServerErrors, tt.wantErrs) && (len(st.ServerErrors) != 0 || len(tt.wantErrs) != 0) {
			t.Errorf("%s: server errors = %v; want %v", tt.name, st.ServerErrors, tt.wantErrs)
		}
	}
}

func TestSeqWindow(t *testing.T) {
	tests := []struct {
		name string
		seqs []uint64
		dups []bool
	}{
		{"in order", []uint64{1, 2, 3}, []bool{false, false, false}},
		{"repeat", []uint64{1, 2, 2, 1}, []bool{false, false, true, true}},
		{"gap then fill", []uint64{1, 5, 3, 4, 2, 3}, []bool{false, false, false, false, false, true}},
		{"big jump", []uint64{1, 200, 150, 150}, []bool{false, false, false, true}},
		{"older than window", []uint64{100, 36, 1}, []bool{false, true, true}},
		{"edge of window", []uint64{100, 37, 37}, []bool{false, false, true}},
	}
	for _, tt := range tests {
		var w seqWindow
		var got []bool
		for _, s := range tt.seqs {
			got = append(got, w.see(s))
		}
		if !slices.Equal(got, tt.dups) {
			t.Errorf("%s: see(%v) = %v; want %v", tt.name, tt.seqs, got, tt.dups)
		}
	}
}

// FuzzSplitFrame feeds arbitrary frames to the receive path, which parses
// whatever the server under test sends.
func FuzzSplitFrame(f *testing.F) {
	f.Add(`{"type":"new_message","payload":{"message":"hb1 1-2 3"}}`)
	f.Add("[r] a: hb1 1-2 3 xx\nhb1 4-5 6")
	f.Add(`{"push":{"channel":"bench","pub":{"data":{"text":"hb1 1-2 3"}}}}` + "\n{}\n" + `{"id":2,"subscribe":{}}`)
	f.Fuzz(func(t *testing.T, frame string) {
		for _, format := range []string{formatJSON, formatText, formatCentrifugo} {
			n := 0
			st := splitFrame(format, []byte(frame), func(marker) { n++ })
			if st.Markers != n || (format == formatText && n > strings.Count(frame, markerTag)) {
				t.Errorf("splitFrame(%q) counted %d, called %d", frame, st.Markers, n)
			}
		}
	})
}

package main

import (
	"bytes"
	"encoding/json"
	"strconv"
)

// markerTag starts every benchmark message. The version digit lets a later
// layout coexist with this one: "hb1 <sender>-<seq> <unixnano> xxxx…".
const markerTag = "hb1 "

// The JSON envelope of a chat message sent to hubbub. The text we put
// between prefix and suffix never needs escaping (digits, letters, spaces).
const (
	jsonSendPrefix = `{"type":"send_message","payload":{"message":"`
	jsonSendSuffix = `"}}`
)

// marker is what a benchmark message carries: who sent it, its sequence
// number for that sender (from 1), and when it was sent.
type marker struct {
	Sender   uint32
	Seq      uint64
	SentNano int64
}

// appendMessage appends the chat text for m to dst, padded with 'x' to size
// bytes. A size smaller than the marker yields just the marker.
func appendMessage(dst []byte, m marker, size int) []byte {
	start := len(dst)
	dst = append(dst, markerTag...)
	dst = strconv.AppendUint(dst, uint64(m.Sender), 10)
	dst = append(dst, '-')
	dst = strconv.AppendUint(dst, m.Seq, 10)
	dst = append(dst, ' ')
	dst = strconv.AppendInt(dst, m.SentNano, 10)
	if len(dst)-start < size {
		dst = append(dst, ' ')
	}
	for len(dst)-start < size {
		dst = append(dst, 'x')
	}
	return dst
}

// appendFrame appends the whole client frame for m in the given format: the
// bare text for text (and raw), the send_message envelope for JSON.
func appendFrame(dst []byte, format string, m marker, size int) []byte {
	if format != formatJSON {
		return appendMessage(dst, m, size)
	}
	dst = append(dst, jsonSendPrefix...)
	dst = appendMessage(dst, m, size)
	return append(dst, jsonSendSuffix...)
}

// parseMarker decodes a marker at the start of b (which must begin with
// markerTag). The timestamp must end at the end of b or at a non-digit.
func parseMarker(b []byte) (marker, bool) {
	if !bytes.HasPrefix(b, []byte(markerTag)) {
		return marker{}, false
	}
	b = b[len(markerTag):]
	sender, b, ok := parseUint(b, 32)
	if !ok || len(b) == 0 || b[0] != '-' {
		return marker{}, false
	}
	seq, b, ok := parseUint(b[1:], 64)
	if !ok || len(b) == 0 || b[0] != ' ' {
		return marker{}, false
	}
	nano, _, ok := parseUint(b[1:], 63)
	if !ok {
		return marker{}, false
	}
	return marker{Sender: uint32(sender), Seq: seq, SentNano: int64(nano)}, true
}

// parseUint reads leading decimal digits of b that fit in bits bits and
// returns the value and the rest of b.
func parseUint(b []byte, bits int) (uint64, []byte, bool) {
	n := 0
	for n < len(b) && b[n] >= '0' && b[n] <= '9' {
		n++
	}
	if n == 0 {
		return 0, b, false
	}
	v, err := strconv.ParseUint(string(b[:n]), 10, bits)
	if err != nil {
		return 0, b, false
	}
	return v, b[n:], true
}

// scanMarkers calls fn for every marker anywhere in text. Markers are found
// wherever they appear, so "[room] name: hb1 …" (hubbub text) and a bare
// relayed "hb1 …" (gorilla chat) both work; it reports how many it found.
func scanMarkers(text []byte, fn func(marker)) int {
	found := 0
	for {
		i := bytes.Index(text, []byte(markerTag))
		if i < 0 {
			return found
		}
		text = text[i:]
		if m, ok := parseMarker(text); ok {
			fn(m)
			found++
		}
		text = text[len(markerTag):]
	}
}

// frameStats is what one received data frame contained.
type frameStats struct {
	// Markers is the number of benchmark messages found.
	Markers int
	// ServerErrors counts error events (JSON code, or "text" for "! " lines).
	ServerErrors map[string]int

	// The rest is only set for Centrifugo frames.

	// Pings counts server pings ({}), which the client must answer.
	Pings int
	// Acked lists the handshake commands (centrifugoConnectID,
	// centrifugoSubscribeID) that the server accepted, in order.
	Acked []uint32
	// Refused is set when the server answered a handshake command with an
	// error: the client will never join.
	Refused bool
}

// serverEvent is the subset of a hubbub JSON event the tool reads. Fields of
// other event types are simply ignored by encoding/json.
type serverEvent struct {
	Type    string `json:"type"`
	Payload struct {
		Message string `json:"message"`
		Code    string `json:"code"`
	} `json:"payload"`
}

// splitFrame finds every benchmark message in one received text frame and
// calls fn for each. JSON frames hold one or more events separated by '\n'
// (only new_message is read); text frames hold one or more lines, as hubbub
// sends one line and the gorilla example joins queued messages with '\n';
// Centrifugo frames hold one or more replies and pushes separated by '\n'
// (see centrifugoLine).
func splitFrame(format string, frame []byte, fn func(marker)) frameStats {
	var st frameStats
	for len(frame) > 0 {
		var line []byte
		if i := bytes.IndexByte(frame, '\n'); i >= 0 {
			line, frame = frame[:i], frame[i+1:]
		} else {
			line, frame = frame, nil
		}
		line = bytes.TrimSpace(line)
		if len(line) == 0 {
			continue
		}
		if format == formatCentrifugo {
			st.centrifugoLine(line, fn)
			continue
		}
		if format != formatJSON {
			st.Markers += scanMarkers(line, fn)
			if line[0] == '!' {
				st.addError("text")
			}
			continue
		}
		if msg, ok := fastMessage(line); ok {
			st.Markers += scanMarkers(msg, fn)
			continue
		}
		var ev serverEvent
		if err := json.Unmarshal(line, &ev); err != nil {
			st.addError("undecodable")
			continue
		}
		switch ev.Type {
		case "new_message":
			st.Markers += scanMarkers([]byte(ev.Payload.Message), fn)
		case "error":
			st.addError(ev.Payload.Code)
		}
	}
	return st
}

// newMessagePrefix and messageKey let fastMessage find the chat text of a
// new_message event as hubbub encodes it without decoding the whole event.
var (
	newMessagePrefix = []byte(`{"type":"new_message","payload":{`)
	messageKey       = []byte(`"message":"`)
)

// fastMessage returns the raw "message" string of a new_message event when
// it can be read off the bytes exactly: the line has hubbub's key order and
// the message has no escapes. Otherwise it reports false and the caller
// decodes the event. The receiver reads hundreds of thousands of events a
// second, and decoding each one with encoding/json made the tool, not the
// server under test, the bottleneck of JSON runs.
func fastMessage(line []byte) ([]byte, bool) {
	if !bytes.HasPrefix(line, newMessagePrefix) {
		return nil, false
	}
	i := bytes.Index(line, messageKey)
	if i < 0 {
		return nil, false
	}
	msg := line[i+len(messageKey):]
	end := bytes.IndexAny(msg, `"\`)
	if end < 0 || msg[end] != '"' {
		return nil, false
	}
	return msg[:end], true
}

// addError counts one server error of the given code.
func (st *frameStats) addError(code string) {
	if code == "" {
		code = "unknown"
	}
	if st.ServerErrors == nil {
		st.ServerErrors = map[string]int{}
	}
	st.ServerErrors[code]++
}

// seqWindow remembers which sequence numbers of one sender a receiver has
// seen: the highest one and a bitmap of the 64 below it. Servers deliver a
// sender's messages in order, so a number older than the window is counted
// as a duplicate rather than kept forever.
type seqWindow struct {
	max  uint64
	bits uint64 // bit d set: max-d was seen
}

// see records seq and reports whether it had been seen before.
func (w *seqWindow) see(seq uint64) (dup bool) {
	switch {
	case seq > w.max:
		shift := seq - w.max
		if shift >= 64 {
			w.bits = 0
		} else {
			w.bits <<= shift
		}
		w.bits |= 1
		w.max = seq
		return false
	case w.max-seq >= 64:
		return true
	default:
		bit := uint64(1) << (w.max - seq)
		dup = w.bits&bit != 0
		w.bits |= bit
		return dup
	}
}

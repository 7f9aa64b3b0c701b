package main

import (
	"encoding/json"
	"fmt"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	"hubbub/internal/wsconn"
)

// format is the wire format a client chose with ?format=.
type format uint8

const (
	formatJSON format = iota // NDJSON events, for browsers and scripts
	formatText               // one readable line per frame, for terminals
)

func (f format) String() string {
	if f == formatText {
		return "text"
	}
	return "json"
}

// parseFormat maps the ?format= value to a format. The empty string means JSON.
func parseFormat(s string) (format, bool) {
	switch s {
	case "", "json":
		return formatJSON, true
	case "text":
		return formatText, true
	}
	return 0, false
}

// Error codes sent in error events. They are part of the protocol: clients
// may switch on them, so they never change meaning.
const (
	errBadJSON         = "bad_json"
	errUnknownType     = "unknown_type"
	errBadPayload      = "bad_payload"
	errEmptyMessage    = "empty_message"
	errBadRoom         = "bad_room"
	errBadName         = "bad_name"
	errNameTaken       = "name_taken"
	errBinary          = "binary_unsupported"
	errUnknownCommand  = "unknown_command"
	errAlreadyThere    = "already_in_room"
	errRateLimited     = "rate_limited"
	errNameReserved    = "name_reserved"
	errNameLocked      = "name_locked"
	roomRule           = "room names are 1-64 characters from A-Z a-z 0-9 _ -"
	nameRule           = "names are 1-32 characters from A-Z a-z 0-9 _ -"
	textHelpHint       = "unknown command; try /help"
	timeLayout         = "2006-01-02T15:04:05.000Z07:00"
	maxMembersInReply  = 200 // member names listed in one reply; the count is always exact
	maxRoomsInReply    = 200 // rooms listed in one reply
	maxMessageRunes    = 400 // a message longer than this is cut: it could not have come from a 512-byte frame anyway
	binaryFrameMessage = "binary frames are not supported; send text"
)

// op is what a client asked the hub to do.
type op uint8

const (
	opSay    op = iota + 1 // post arg to the current room
	opJoin                 // move to room arg
	opNick                 // take name arg
	opWho                  // list the current room's members
	opRooms                // list rooms
	opHelp                 // text mode: show the command list
	opQuit                 // text mode: leave and close
	opFail                 // the frame was bad: tell the client err
	opKick                 // the client kept flooding: close it with 1008
	opBroker               // not from a client: a broker delivery (bk)
	opGone                 // the client's connection is over, for reason end (sent by Client.Closed, never decoded)
)

// request is one decoded client action on its way to the hub. It is built
// by the client's reader, so it holds nothing the hub owns.
type request struct {
	c   *Client
	op  op
	arg string
	err *protoError       // set when op == opFail
	end wsconn.Disconnect // set when op == opGone
	bk  *brokerEvent      // set when op == opBroker; c is nil then
	api *apiCall          // set for HTTP API calls (api.go); c is nil then
	at  time.Time         // set by submit, for the hub request latency metric
}

// protoError is a rejected frame: a stable code plus a sentence for people.
type protoError struct {
	Code    string `json:"code"`
	Message string `json:"message"`
}

func (e *protoError) Error() string { return e.Code + ": " + e.Message }

// failf builds an opFail request.
func failf(code, msgFormat string, args ...any) request {
	return request{op: opFail, err: &protoError{Code: code, Message: fmt.Sprintf(msgFormat, args...)}}
}

// inEvent is the envelope of every JSON client frame.
type inEvent struct {
	Type    string          `json:"type"`
	Payload json.RawMessage `json:"payload"`
}

// decodeJSON turns one JSON client frame into a request. It never fails:
// a bad frame becomes an opFail request so the client is told what was wrong.
func decodeJSON(data []byte) request {
	var ev inEvent
	if err := json.Unmarshal(data, &ev); err != nil {
		return failf(errBadJSON, "frame is not a JSON object: %v", err)
	}
	switch ev.Type {
	case "send_message":
		var p struct {
			Message *string `json:"message"`
		}
		if err := decodePayload(ev.Payload, &p); err != nil || p.Message == nil {
			return failf(errBadPayload, `send_message needs {"payload":{"message":"..."}}`)
		}
		return sayRequest(*p.Message)
	case "change_room":
		var p struct {
			Name *string `json:"name"`
		}
		if err := decodePayload(ev.Payload, &p); err != nil || p.Name == nil {
			return failf(errBadPayload, `change_room needs {"payload":{"name":"room"}}`)
		}
		return joinRequest(*p.Name)
	case "change_name":
		var p struct {
			Name *string `json:"name"`
		}
		if err := decodePayload(ev.Payload, &p); err != nil || p.Name == nil {
			return failf(errBadPayload, `change_name needs {"payload":{"name":"nick"}}`)
		}
		return nickRequest(*p.Name)
	case "list_rooms":
		return request{op: opRooms}
	case "list_members":
		return request{op: opWho}
	case "":
		return failf(errBadPayload, `event has no "type"`)
	}
	return failf(errUnknownType, "unknown event type %q", truncate(ev.Type, 40))
}

// decodePayload unmarshals a payload, treating a missing one as an error.
func decodePayload(raw json.RawMessage, v any) error {
	if len(raw) == 0 || string(raw) == "null" {
		return fmt.Errorf("missing payload")
	}
	return json.Unmarshal(raw, v)
}

// splitLines returns the lines of a text-mode frame. One trailing newline is
// dropped (websocat sends "hello\n"), \r\n is accepted, and blank lines in
// the middle of a multi-line frame are skipped. A frame that is only
// whitespace yields a single empty line so the sender hears about it.
func splitLines(data []byte) []string {
	s := strings.TrimSuffix(string(data), "\n")
	s = strings.TrimSuffix(s, "\r")
	if !strings.Contains(s, "\n") {
		return []string{s}
	}
	var lines []string
	for line := range strings.SplitSeq(s, "\n") {
		line = strings.TrimSuffix(line, "\r")
		if strings.TrimSpace(line) != "" {
			lines = append(lines, line)
		}
	}
	if len(lines) == 0 {
		return []string{""}
	}
	return lines
}

// parseLine turns one text-mode line into a request. Plain lines are chat;
// lines starting with '/' are commands.
func parseLine(line string) request {
	if !strings.HasPrefix(line, "/") {
		return sayRequest(line)
	}
	cmd, arg, _ := strings.Cut(strings.TrimSpace(line[1:]), " ")
	arg = strings.TrimSpace(arg)
	switch strings.ToLower(cmd) {
	case "join":
		if arg == "" {
			return failf(errBadRoom, "usage: /join ROOM")
		}
		return joinRequest(arg)
	case "nick":
		if arg == "" {
			return failf(errBadName, "usage: /nick NAME")
		}
		return nickRequest(arg)
	case "who":
		return request{op: opWho}
	case "rooms":
		return request{op: opRooms}
	case "help":
		return request{op: opHelp}
	case "quit":
		return request{op: opQuit}
	}
	// cmd is echoed unquoted, so clean it like a message: the reply is a
	// text frame (which must be UTF-8) bound for a terminal.
	return failf(errUnknownCommand, "%s: /%s", textHelpHint, truncate(cleanMessage(cmd), 20))
}

// sayRequest validates and cleans a chat message.
func sayRequest(msg string) request {
	msg = cleanMessage(msg)
	if msg == "" {
		return failf(errEmptyMessage, "empty message")
	}
	return request{op: opSay, arg: msg}
}

// joinRequest validates a room name.
func joinRequest(name string) request {
	if !validRoom(name) {
		return failf(errBadRoom, "bad room name %q: %s", truncate(name, 70), roomRule)
	}
	return request{op: opJoin, arg: name}
}

// nickRequest validates a nickname.
func nickRequest(name string) request {
	if !validName(name) {
		return failf(errBadName, "bad name %q: %s", truncate(name, 40), nameRule)
	}
	return request{op: opNick, arg: name}
}

// cleanMessage trims surrounding space and replaces invalid UTF-8 and control
// characters. Control characters are dropped because text clients print
// messages straight to a terminal, where an escape sequence from one user
// could rewrite another user's screen.
func cleanMessage(s string) string {
	s = strings.TrimSpace(s)
	clean := true
	for _, r := range s {
		if r == utf8.RuneError || unicode.IsControl(r) {
			clean = false
			break
		}
	}
	if !clean {
		s = strings.Map(func(r rune) rune {
			switch {
			case r == '\t':
				return ' '
			case r == utf8.RuneError, unicode.IsControl(r):
				return '\uFFFD'
			}
			return r
		}, strings.ToValidUTF8(s, "\uFFFD"))
	}
	if utf8.RuneCountInString(s) > maxMessageRunes {
		s = string([]rune(s)[:maxMessageRunes])
	}
	return s
}

// truncate shortens s for quoting in an error message.
func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return strings.ToValidUTF8(s[:n], "") + "…"
}

// outbound is one server event, encoded once for each format. The hub
// builds it once per broadcast and hands the same pointer to every
// recipient, so encoding cost does not grow with room size. It is
// immutable after construction.
type outbound struct {
	json []byte // one JSON object, no trailing newline
	text []byte // one line for text clients, no trailing newline
}

// outEvent is the envelope of every JSON server event.
type outEvent struct {
	Type    string `json:"type"`
	Payload any    `json:"payload"`
}

// messagePayload is the payload of new_message. Seq and Epoch place the
// message in its room's history (see history.go).
type messagePayload struct {
	ID      uint64 `json:"id"`
	Seq     uint64 `json:"seq"`
	Epoch   string `json:"epoch"`
	Room    string `json:"room"`
	From    string `json:"from"`
	Message string `json:"message"`
	Time    string `json:"time"`
	Bot     bool   `json:"bot,omitempty"` // posted through the HTTP API, not by a member
}

// roomPayload is the payload of room_changed and members.
type roomPayload struct {
	Room    string   `json:"room"`
	Name    string   `json:"name,omitempty"`
	Members []string `json:"members"`
	Count   int      `json:"count"`
}

// presencePayload is the payload of presence.
type presencePayload struct {
	Room    string `json:"room"`
	Event   string `json:"event"`
	Name    string `json:"name"`
	OldName string `json:"old_name,omitempty"`
}

// roomInfo is one entry of the rooms event.
type roomInfo struct {
	Name    string `json:"name"`
	Members int    `json:"members"`
}

// newOutbound encodes an event for both formats. Marshalling the payload
// structs above cannot fail (strings, numbers and slices only), so an error
// here is a programming mistake and panics.
func newOutbound(typ string, payload any, text string) *outbound {
	b, err := json.Marshal(outEvent{Type: typ, Payload: payload})
	if err != nil {
		panic(fmt.Sprintf("encode %s event: %v", typ, err))
	}
	return &outbound{json: b, text: []byte(text)}
}

// messageEvent builds new_message outside any room history (seq 0, no
// epoch); the hub numbers its messages through historyBook.record.
func messageEvent(id uint64, room, from, msg string, t time.Time) *outbound {
	return encodeMessage(messagePayload{ID: id, Room: room, From: from, Message: msg, Time: stamp(t)})
}

// encodeMessage builds new_message from p.
func encodeMessage(p messagePayload) *outbound {
	from := p.From
	if p.Bot {
		from += " (bot)" // so no reader mistakes it for a member of that name
	}
	return newOutbound("new_message", p, "["+p.Room+"] "+from+": "+p.Message)
}

// stamp formats a message time the way the protocol sends it.
func stamp(t time.Time) string {
	return t.UTC().Format(timeLayout)
}

// errorEvent builds error.
func errorEvent(e *protoError) *outbound {
	return newOutbound("error", e, "! "+e.Message)
}

// textOnly builds an event that only text clients see (help lines). JSON
// clients get nothing from it: json is nil and Hub.deliver skips them.
func textOnly(line string) *outbound {
	return &outbound{text: []byte(line)}
}

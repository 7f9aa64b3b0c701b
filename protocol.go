package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"
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
	errBadID           = "bad_id"
	errTooLong         = "too_long"
	errForbidden       = "forbidden"    // the sender's role does not allow it
	errBanned          = "banned"       // banned from the room (or the server) until until
	errMuted           = "muted"        // muted in the room (or the server) until until
	errSlowMode        = "slow_mode"    // slow mode: wait retry_after_ms
	errNoSuchUser      = "no_such_user" // nobody of that name is there (kick) or online (direct message)
	errNotFound        = "not_found"    // no such ban, mute, slow mode or message to act on
	errTooMany         = "too_many"     // the server keeps no more moderation entries of this kind
	roomRule           = "room names are 1-64 characters from A-Z a-z 0-9 _ -"
	idRule             = "ids are 1-64 characters from A-Z a-z 0-9 _ . : -"
	nameRule           = "names are 1-32 characters from A-Z a-z 0-9 _ -"
	timeLayout         = "2006-01-02T15:04:05.000Z07:00"
	maxMembersInReply  = 200 // member names listed in one reply; the count is always exact
	maxRoomsInReply    = 200 // rooms listed in one reply
	maxMessageRunes    = 400 // a longer message is refused (too_long), never cut
	binaryFrameMessage = "binary frames are not supported; send text"
)

// protoError is a rejected frame: a stable code plus a sentence for people,
// and the id of the client event it answers, if that carried one.
type protoError struct {
	Code    string `json:"code"`
	Message string `json:"message"`
	ID      string `json:"id,omitempty"`
	// Until is when a ban or mute ends (banned, muted).
	Until string `json:"until,omitempty"`
	// RetryAfterMS is how long until the next message is allowed (slow_mode).
	RetryAfterMS int64 `json:"retry_after_ms,omitempty"`
}

// withID returns a copy of e answering the event with id.
func (e *protoError) withID(id string) *protoError {
	c := *e
	c.ID = id
	return &c
}

// validID reports whether s is an acceptable client event id: 1 to 64
// characters from [A-Za-z0-9_.:-].
func validID(s string) bool {
	if len(s) == 0 || len(s) > 64 {
		return false
	}
	for i := 0; i < len(s); i++ {
		switch b := s[i]; {
		case b >= 'a' && b <= 'z', b >= 'A' && b <= 'Z', b >= '0' && b <= '9', b == '_', b == '.', b == ':', b == '-':
		default:
			return false
		}
	}
	return true
}

func (e *protoError) Error() string { return e.Code + ": " + e.Message }

// failf builds the command that tells a client its frame was refused.
func failf(code, msgFormat string, args ...any) command {
	return failCmd{&protoError{Code: code, Message: fmt.Sprintf(msgFormat, args...)}}
}

// inEvent is the envelope of every JSON client frame.
type inEvent struct {
	Type    string          `json:"type"`
	ID      json.RawMessage `json:"id"`
	Payload json.RawMessage `json:"payload"`
}

// decodeJSON turns one JSON client frame into a command and the id the
// client gave it ("" for none). It never fails: a bad frame becomes a
// failCmd so the client is told what was wrong.
func decodeJSON(data []byte) (command, string) {
	var ev inEvent
	if err := json.Unmarshal(data, &ev); err != nil {
		return failf(errBadJSON, "%s", badJSONMessage(data, err)), ""
	}
	var id string
	if len(ev.ID) > 0 && string(ev.ID) != "null" {
		if err := json.Unmarshal(ev.ID, &id); err != nil || !validID(id) {
			return failf(errBadID, "bad id %s: %s", truncate(string(ev.ID), 70), idRule), ""
		}
	}
	return decodeEvent(ev), id
}

// badJSONMessage explains a frame that is not a JSON event, to a person:
// what was expected, where the JSON broke, and — for a frame that is not
// JSON at all, as when someone types into a JSON connection — that text
// mode exists.
func badJSONMessage(data []byte, err error) string {
	const want = `expected one JSON event per frame, e.g. {"type":"send_message","payload":{"message":"hi"}}`
	trimmed := strings.TrimSpace(string(data))
	if trimmed == "" || (trimmed[0] != '{' && trimmed[0] != '[' && trimmed[0] != '"') {
		return want + "; to type plain lines, connect with ?format=text"
	}
	var se *json.SyntaxError
	var te *json.UnmarshalTypeError
	switch {
	case errors.As(err, &se):
		return fmt.Sprintf("%s; the JSON breaks at byte %d", want, se.Offset)
	case trimmed[0] != '{':
		return want + "; this is JSON, but not an object"
	case errors.As(err, &te) && te.Field != "":
		return fmt.Sprintf("%s; %q must be a %s, not a %s", want, te.Field, te.Type, te.Value)
	}
	return want
}

// decodeEvent turns a JSON client event into a command.
func decodeEvent(ev inEvent) command {
	switch ev.Type {
	case "send_message":
		var p struct {
			Message *string `json:"message"`
			Action  bool    `json:"action"`
		}
		if err := decodePayload(ev.Payload, &p); err != nil || p.Message == nil {
			return failf(errBadPayload, `send_message needs {"payload":{"message":"..."}} (and "action":true for an action)`)
		}
		return sayCommand(*p.Message, p.Action)
	case "change_room":
		var p struct {
			Name *string `json:"name"`
		}
		if err := decodePayload(ev.Payload, &p); err != nil || p.Name == nil {
			return failf(errBadPayload, `change_room needs {"payload":{"name":"room"}}`)
		}
		return joinCommand(*p.Name)
	case "change_name":
		var p struct {
			Name *string `json:"name"`
		}
		if err := decodePayload(ev.Payload, &p); err != nil || p.Name == nil {
			return failf(errBadPayload, `change_name needs {"payload":{"name":"nick"}}`)
		}
		return nickCommand(*p.Name)
	case "list_rooms":
		return roomsCmd{}
	case "list_members":
		return whoCmd{}
	case "send_direct":
		var p struct {
			To      *string `json:"to"`
			Message *string `json:"message"`
		}
		if err := decodePayload(ev.Payload, &p); err != nil || p.To == nil || p.Message == nil {
			return failf(errBadPayload, `send_direct needs {"payload":{"to":"name","message":"..."}}`)
		}
		return directCommand(*p.To, *p.Message)
	case "kick", "ban", "unban", "mute", "unmute", "delete_message", "slow_mode":
		return decodeModeration(ev)
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

// parseLine turns one text-mode line into a command. Plain lines are chat;
// lines starting with '/' are commands.
func parseLine(line string) command {
	if !strings.HasPrefix(line, "/") {
		return sayCommand(line, false)
	}
	cmd, arg, _ := strings.Cut(strings.TrimSpace(line[1:]), " ")
	arg = strings.TrimSpace(arg)
	switch strings.ToLower(cmd) {
	case "join":
		if arg == "" {
			return failf(errBadRoom, "usage: /join ROOM")
		}
		return joinCommand(arg)
	case "nick":
		if arg == "" {
			return failf(errBadName, "usage: /nick NAME")
		}
		return nickCommand(arg)
	case "who":
		return whoCmd{}
	case "rooms":
		return roomsCmd{}
	case "help":
		return helpCmd{}
	case "quit":
		return quitCmd{}
	case "status":
		return statusCmd{}
	case "me":
		if arg == "" {
			return failf(errEmptyMessage, "usage: /me ACTION, e.g. /me waves")
		}
		return sayCommand(arg, true)
	case "msg":
		to, text, _ := strings.Cut(arg, " ")
		if to == "" || strings.TrimSpace(text) == "" {
			return failf(errBadPayload, "usage: /msg NAME text")
		}
		return directCommand(to, text)
	case "kick", "kick-all", "ban", "ban-all", "unban", "unban-all", "mute", "mute-all", "unmute", "unmute-all",
		"delete", "slow":
		return parseModeration(strings.ToLower(cmd), arg)
	}
	// cmd is echoed unquoted, so clean it like a message: the reply is a
	// text frame (which must be UTF-8) bound for a terminal.
	return failf(errUnknownCommand, "unknown command /%s; try /help", truncate(cleanMessage(cmd), 20))
}

// sayCommand validates and cleans a chat message (an action, /me, if
// action is set). One over maxMessageRunes characters is refused whole,
// never cut: the sender would otherwise not know what the others read.
func sayCommand(msg string, action bool) command {
	msg = cleanMessage(msg)
	if msg == "" {
		return failf(errEmptyMessage, "empty message")
	}
	if n := utf8.RuneCountInString(msg); n > maxMessageRunes {
		return failf(errTooLong, "message has %d characters; at most %d are allowed (and a frame is at most 512 bytes); it was not sent", n, maxMessageRunes)
	}
	return sayCmd{msg, action}
}

// directCommand validates a direct message to the user to.
func directCommand(to, msg string) command {
	if !validName(to) {
		return failf(errBadName, "bad name %q: %s", truncate(to, 40), nameRule)
	}
	say := sayCommand(msg, false)
	s, ok := say.(sayCmd)
	if !ok {
		return say // the message's own refusal
	}
	return directCmd{to: to, msg: s.msg}
}

// joinCommand validates a room name.
func joinCommand(name string) command {
	if !validRoom(name) {
		return failf(errBadRoom, "bad room name %q: %s", truncate(name, 70), roomRule)
	}
	return joinCmd{name}
}

// nickCommand validates a nickname.
func nickCommand(name string) command {
	if !validName(name) {
		return failf(errBadName, "bad name %q: %s", truncate(name, 40), nameRule)
	}
	return nickCmd{name}
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
	return s
}

// truncate shortens s for quoting in an error message.
func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return strings.ToValidUTF8(s[:n], "") + "…"
}

// Bounds of moderation requests.
const (
	maxReasonRunes = 100                  // a reason fits a close frame's 123 bytes with the rest of the text
	maxModDuration = 365 * 24 * time.Hour // the longest ban or mute
	maxSlowMode    = 24 * time.Hour       // the longest slow-mode interval
	durationRule   = "want a Go duration such as 30s, 10m or 1h30m"
)

// modPayload is the payload of every moderation event a client sends;
// each uses the fields it needs (docs/PROTOCOL.md).
type modPayload struct {
	Name     *string `json:"name"`
	Room     string  `json:"room"`
	Server   bool    `json:"server"`
	Duration *string `json:"duration"`
	Interval *string `json:"interval"`
	Reason   string  `json:"reason"`
	Seq      *uint64 `json:"seq"`
	Epoch    string  `json:"epoch"`
}

// modUsage is what each moderation event's payload must hold.
var modUsage = map[string]string{
	"kick":           `kick needs {"payload":{"name":"bob"}} (and optionally "reason", "room", or "server":true)`,
	"ban":            `ban needs {"payload":{"name":"bob","duration":"10m"}} (and optionally "reason", "room", or "server":true)`,
	"unban":          `unban needs {"payload":{"name":"bob"}} (and optionally "room", or "server":true)`,
	"mute":           `mute needs {"payload":{"name":"bob","duration":"5m"}} (and optionally "reason", "room", or "server":true)`,
	"unmute":         `unmute needs {"payload":{"name":"bob"}} (and optionally "room", or "server":true)`,
	"delete_message": `delete_message needs {"payload":{"seq":42}} (and optionally "room" and "epoch")`,
	"slow_mode":      `slow_mode needs {"payload":{"interval":"10s"}} ("off" turns it off; optionally "room")`,
}

// decodeModeration turns a JSON moderation event into its command.
func decodeModeration(ev inEvent) command {
	var p modPayload
	if err := decodePayload(ev.Payload, &p); err != nil {
		return failf(errBadPayload, "%s", modUsage[ev.Type])
	}
	a := modAction{room: p.Room, server: p.Server, epoch: p.Epoch}
	switch ev.Type {
	case "kick", "ban", "unban", "mute", "unmute":
		a.kind = actionByName[ev.Type]
		if p.Name == nil {
			return failf(errBadPayload, "%s", modUsage[ev.Type])
		}
		a.name = *p.Name
		if a.kind == actBan || a.kind == actMute {
			if p.Duration == nil {
				return failf(errBadPayload, "%s", modUsage[ev.Type])
			}
			d, fail := modDuration(*p.Duration, maxModDuration)
			if fail != nil {
				return fail
			}
			a.dur = d
		}
	case "delete_message":
		a.kind = actDelete
		if p.Seq == nil || *p.Seq == 0 {
			return failf(errBadPayload, "%s", modUsage[ev.Type])
		}
		a.seq = *p.Seq
	case "slow_mode":
		a.kind = actSlow
		if p.Interval == nil {
			return failf(errBadPayload, "%s", modUsage[ev.Type])
		}
		d, fail := slowInterval(*p.Interval)
		if fail != nil {
			return fail
		}
		a.dur = d
	}
	a.reason = p.Reason
	return modCommand(a)
}

// parseModeration turns a text moderation command (cmd without its '/',
// in lower case) and its arguments into its command.
func parseModeration(cmd, arg string) command {
	base, all := strings.CutSuffix(cmd, "-all")
	a := modAction{kind: actionByName[base], server: all}
	if base == "delete" {
		a.kind = actDelete
	}
	if base == "slow" {
		a.kind = actSlow
	}
	first, rest, _ := strings.Cut(arg, " ")
	rest = strings.TrimSpace(rest)
	usage := map[actionKind]string{
		actKick: "usage: /" + cmd + " NAME [reason]", actBan: "usage: /" + cmd + " NAME DURATION [reason], e.g. /" + cmd + " bob 10m spam",
		actUnban: "usage: /" + cmd + " NAME", actMute: "usage: /" + cmd + " NAME DURATION [reason], e.g. /" + cmd + " bob 5m",
		actUnmute: "usage: /" + cmd + " NAME", actDelete: "usage: /delete SEQ (a moderator's text lines show each message's seq: [lobby #12])",
		actSlow: "usage: /slow INTERVAL (e.g. /slow 10s), or /slow off",
	}[a.kind]
	if first == "" {
		return failf(errBadPayload, "%s", usage)
	}
	switch a.kind {
	case actKick:
		a.name, a.reason = first, rest
	case actBan, actMute:
		durText, reason, _ := strings.Cut(rest, " ")
		if durText == "" {
			return failf(errBadPayload, "%s", usage)
		}
		d, fail := modDuration(durText, maxModDuration)
		if fail != nil {
			return fail
		}
		a.name, a.dur, a.reason = first, d, strings.TrimSpace(reason)
	case actUnban, actUnmute:
		if rest != "" {
			return failf(errBadPayload, "%s", usage)
		}
		a.name = first
	case actDelete:
		seq, err := strconv.ParseUint(first, 10, 64)
		if err != nil || seq == 0 || rest != "" {
			return failf(errBadPayload, "bad seq %q; %s", truncate(cleanMessage(first), 20), usage)
		}
		a.seq = seq
	case actSlow:
		if rest != "" {
			return failf(errBadPayload, "%s", usage)
		}
		d, fail := slowInterval(first)
		if fail != nil {
			return fail
		}
		a.dur = d
	}
	return modCommand(a)
}

// modDuration reads a ban's or mute's length: a Go duration above zero and
// at most limit.
func modDuration(s string, limit time.Duration) (time.Duration, command) {
	d, err := time.ParseDuration(s)
	switch {
	case err != nil:
		return 0, failf(errBadPayload, "bad duration %q: %s", truncate(cleanMessage(s), 20), durationRule)
	case d <= 0:
		return 0, failf(errBadPayload, "bad duration %q: it must be longer than zero", truncate(s, 20))
	case d > limit:
		return 0, failf(errBadPayload, "bad duration %q: at most %s", truncate(s, 20), shortDuration(limit))
	}
	return d, nil
}

// slowInterval reads a slow-mode interval: "off" (or a zero duration)
// turns slow mode off, anything else is a duration up to maxSlowMode.
func slowInterval(s string) (time.Duration, command) {
	if strings.EqualFold(s, "off") {
		return 0, nil
	}
	if d, err := time.ParseDuration(s); err == nil && d == 0 {
		return 0, nil
	}
	d, fail := modDuration(s, maxSlowMode)
	if fail != nil {
		return 0, failf(errBadPayload, "bad interval %q: %s, or off", truncate(cleanMessage(s), 20), durationRule)
	}
	return d, nil
}

// modCommand validates what every moderation request shares — the name,
// the room, the reason, server-wide or not — and builds its command.
func modCommand(a modAction) command {
	what := actionNames[a.kind]
	switch {
	case a.kind != actDelete && a.kind != actSlow && !validName(a.name):
		return failf(errBadName, "bad name %q: %s", truncate(a.name, 40), nameRule)
	case a.room != "" && !validRoom(a.room):
		return failf(errBadRoom, "bad room name %q: %s", truncate(a.room, 70), roomRule)
	case a.server && a.room != "":
		return failf(errBadPayload, "%s: give a room or server-wide, not both", what)
	case a.server && (a.kind == actDelete || a.kind == actSlow):
		return failf(errBadPayload, "%s is per room; it cannot be server-wide", what)
	case a.epoch != "" && !validIdent(a.epoch, maxEpochLen):
		return failf(errBadPayload, "bad epoch %q: not an epoch id", truncate(a.epoch, 70))
	}
	a.reason = cleanMessage(a.reason)
	if n := utf8.RuneCountInString(a.reason); n > maxReasonRunes {
		return failf(errTooLong, "reason has %d characters; at most %d are allowed", n, maxReasonRunes)
	}
	return modCmd{a}
}

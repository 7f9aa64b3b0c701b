package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"strconv"
	"strings"
	"time"
)

// The events the server sends. Each is encoded once, for both formats —
// a JSON object for JSON clients, a line for text clients — and the same
// *outbound is handed to every recipient. docs/PROTOCOL.md describes them.

// outbound is one server event, encoded once for each format. The hub
// builds it once per broadcast and hands the same pointer to every
// recipient, so encoding cost does not grow with room size. It is
// immutable after construction.
type outbound struct {
	json []byte // one JSON object, no trailing newline
	text []byte // one line for text clients, no trailing newline
	// seq is a numbered message's seq (new_message only), and seqText
	// its text line with the seq ("[lobby #12] bob: hi") for text clients
	// that moderate (Client.showSeq). seqText is built by the hub on the
	// first delivery to such a client, so that a server without one pays
	// nothing for it; only the hub touches either field.
	seq     uint64
	seqText []byte
}

// outEvent is the envelope of every JSON server event.
type outEvent struct {
	Type    string `json:"type"`
	Payload any    `json:"payload"`
}

// messagePayload is the payload of new_message. Seq and Epoch place the
// message in its room's history (see history.go).
//
// A deleted message (a tombstone) keeps only Seq, Epoch and Room, with
// Deleted and By: never its text, its sender or its time.
type messagePayload struct {
	ID      uint64 `json:"id,omitempty"`
	Seq     uint64 `json:"seq"`
	Epoch   string `json:"epoch"`
	Room    string `json:"room"`
	From    string `json:"from,omitempty"`
	Message string `json:"message,omitempty"`
	Time    string `json:"time,omitempty"`
	Deleted bool   `json:"deleted,omitempty"`
	By      string `json:"by,omitempty"`     // who deleted it
	Bot     bool   `json:"bot,omitempty"`    // posted through the HTTP API, not by a member
	Action  bool   `json:"action,omitempty"` // an action (/me waves): read as "* from message"
}

// roomPayload is the payload of room_changed and members.
type roomPayload struct {
	Room    string   `json:"room"`
	Name    string   `json:"name,omitempty"`
	Members []string `json:"members"`
	Count   int      `json:"count"`
	// Epoch and Seq (room_changed only) are the room log's epoch and the
	// seq of its newest message, 0 when it has none: where a client
	// resumes from even in a quiet room.
	Epoch string  `json:"epoch,omitempty"`
	Seq   *uint64 `json:"seq,omitempty"`
	// Role (room_changed only) is the recipient's role, admin or
	// moderator, so that a page knows to offer moderation; absent: none.
	Role string `json:"role,omitempty"`
	ID   string `json:"id,omitempty"` // the id of the event this answers
}

// presencePayload is the payload of presence.
type presencePayload struct {
	Room    string `json:"room"`
	Event   string `json:"event"`
	Name    string `json:"name"`
	OldName string `json:"old_name,omitempty"`
	ID      string `json:"id,omitempty"` // the renamer's copy: the id of its change_name
	// Kicked marks a leave caused by a kick or, with Banned, a ban; By and
	// Reason say who did it and why.
	Kicked bool   `json:"kicked,omitempty"`
	Banned bool   `json:"banned,omitempty"`
	By     string `json:"by,omitempty"`
	Reason string `json:"reason,omitempty"`
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
	if p.Deleted {
		return encodeTombstone(p.Room, p.Epoch, p.Seq, p.By)
	}
	from := p.From
	if p.Bot {
		from += " (bot)" // so no reader mistakes it for a member of that name
	}
	if p.Action {
		return newOutbound("new_message", p, "["+p.Room+"] * "+from+" "+p.Message)
	}
	o := newOutbound("new_message", p, "["+p.Room+"] "+from+": "+p.Message)
	o.seq = p.Seq
	return o
}

// withSeq returns line, which starts with "[room]", with seq after the
// room's name: "[lobby #12] bob: hi". Room names hold no ']'.
func withSeq(line []byte, seq uint64) []byte {
	end := bytes.IndexByte(line, ']')
	if end < 0 {
		return line
	}
	out := make([]byte, 0, len(line)+22)
	out = append(out, line[:end]...)
	out = append(out, " #"...)
	out = strconv.AppendUint(out, seq, 10)
	return append(out, line[end:]...)
}

// encodeTombstone builds the new_message that stands for message seq of
// room, deleted by by: the seq and who deleted it, nothing of the message.
// Text clients read "[room] message deleted".
func encodeTombstone(room, epoch string, seq uint64, by string) *outbound {
	o := newOutbound("new_message", messagePayload{Seq: seq, Epoch: epoch, Room: room, Deleted: true, By: by},
		"["+room+"] message deleted")
	o.seq = seq
	return o
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

// presenceNote is a join, leave or rename waiting to be announced.
type presenceNote struct {
	room    *Room
	event   string
	name    string
	oldName string
	mark    *kickMark // a leave caused by a kick or ban
}

// membersEvent builds room_changed (name set: the recipient's own name) or
// members (name empty) for r.
func membersEvent(typ string, r *Room, name, id string) *outbound {
	p, list := membersOf(r)
	p.Name, p.ID = name, id
	return newOutbound(typ, p, fmt.Sprintf("* members of %s (%d): %s", r.name, p.Count, list))
}

// roomChangedEvent builds room_changed for a client that is name in r
// with role rl, whose log is at seq under epoch; id answers its
// change_room, if any.
func roomChangedEvent(r *Room, name string, rl role, epoch string, seq uint64, id string) *outbound {
	p, list := membersOf(r)
	p.Name, p.Role, p.Epoch, p.Seq, p.ID = name, rl.String(), epoch, &seq, id
	return newOutbound("room_changed", p, fmt.Sprintf("* you are %s in %s (%s: %s)", name, r.name, countOf(p.Count, "member"), list))
}

// statusLine is the text-only answer to /status.
func statusLine(r *Room, name, epoch string, seq uint64) *outbound {
	_, list := membersOf(r)
	return textOnly(fmt.Sprintf("* you are %s in %s; epoch %s, last seq %d (reconnect with ?since=%d&epoch=%s); %s: %s",
		name, r.name, epoch, seq, seq, epoch, countOf(r.size(), "member"), list))
}

// countOf is n and noun, in the plural unless n is 1.
func countOf(n int, noun string) string {
	if n == 1 {
		return "1 " + noun
	}
	return fmt.Sprintf("%d %ss", n, noun)
}

// membersOf lists r's members for a reply: the payload's room, names and
// count, and the names as text.
func membersOf(r *Room) (roomPayload, string) {
	names := r.memberNames(maxMembersInReply)
	list := strings.Join(names, ", ")
	size := r.size()
	if len(names) < size {
		list += ", …"
	}
	return roomPayload{Room: r.name, Members: names, Count: size}, list
}

// presenceEvent builds a presence event from a note.
func presenceEvent(n presenceNote) *outbound {
	var text string
	switch n.event {
	case "join":
		text = "* " + n.name + " joined " + n.room.name
	case "leave":
		text = "* " + n.name + " left " + n.room.name
	default:
		text = "* " + n.oldName + " is now known as " + n.name
	}
	p := presencePayload{Room: n.room.name, Event: n.event, Name: n.name, OldName: n.oldName}
	if m := n.mark; m != nil && n.event == "leave" {
		p.Kicked, p.Banned, p.By, p.Reason = true, m.banned, m.by, m.reason
		how := "kicked from "
		if m.banned {
			how = "banned from "
		}
		text = "* " + n.name + " was " + how + n.room.name + " by " + m.by
		if m.reason != "" {
			text += ": " + m.reason
		}
	}
	return newOutbound("presence", p, text)
}

// countPayload is the payload of presence_count.
type countPayload struct {
	Room  string `json:"room"`
	Count int    `json:"count"`
}

// countEvent builds presence_count: room has count people, on every node.
// Text clients read "* lobby has 1234 members".
func countEvent(room string, count int) *outbound {
	return newOutbound("presence_count", countPayload{Room: room, Count: count},
		fmt.Sprintf("* %s has %s", room, countOf(count, "member")))
}

// deletedPayload is the payload of message_deleted.
type deletedPayload struct {
	Room  string `json:"room"`
	Epoch string `json:"epoch"`
	Seq   uint64 `json:"seq"`
	By    string `json:"by"`
}

// deletedEvent builds message_deleted: message seq of room (in epoch) was
// deleted by by.
func deletedEvent(room, epoch string, seq uint64, by string) *outbound {
	return newOutbound("message_deleted", deletedPayload{Room: room, Epoch: epoch, Seq: seq, By: by},
		fmt.Sprintf("* message %d in %s was deleted by %s", seq, room, by))
}

// presenceReply is presenceEvent for the client the note is about,
// answering its event id.
func presenceReply(n presenceNote, id string) *outbound {
	if id == "" {
		return presenceEvent(n)
	}
	o := presenceEvent(n)
	return newOutbound("presence",
		presencePayload{Room: n.room.name, Event: n.event, Name: n.name, OldName: n.oldName, ID: id}, string(o.text))
}

// helpLines is the text-mode answer to /help.
var helpLines = []string{
	"* commands: /join ROOM, /nick NAME, /me ACTION, /msg USER TEXT, /who, /rooms, /status, /help, /quit",
	"* anything else you type is sent to your current room",
}

// modHelpLines is the rest of /help for moderators and admins.
var modHelpLines = []string{
	"* moderation in this room: /kick NAME [reason], /ban NAME DURATION [reason], /unban NAME,",
	"*   /mute NAME DURATION [reason], /unmute NAME, /delete SEQ, /slow INTERVAL, /slow off (durations: 30s, 10m, 1h30m)",
	"* admins, server-wide: /kick-all, /ban-all, /unban-all, /mute-all, /unmute-all",
}

// roomsEvent lists rooms (sorted, with member counts) for the rooms event,
// at most maxRoomsInReply of them; the count is always of all.
func roomsEvent(infos []roomInfo, id string) *outbound {
	total := len(infos)
	infos = infos[:min(total, maxRoomsInReply)]
	var b strings.Builder
	fmt.Fprintf(&b, "* rooms (%d):", total)
	for i, ri := range infos {
		if i > 0 {
			b.WriteByte(',')
		}
		fmt.Fprintf(&b, " %s (%d)", ri.Name, ri.Members)
	}
	return newOutbound("rooms", struct {
		Rooms []roomInfo `json:"rooms"`
		ID    string     `json:"id,omitempty"`
	}{infos, id}, b.String())
}

package main

import (
	"cmp"
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"hubbub/internal/wsconn"
)

// Moderation: roles, and what moderators and admins may do.
//
// Roles. A registered user's role comes from the third field of its line
// in the users file (name:bcrypt-hash:role) and is looked up at every
// action, so a SIGHUP reload changes it without a reconnect. With -auth
// jwt the token's role claim decides: the token is the only word the
// server has about its holder. Guests have no role, and a request with the
// API key acts as an admin. Every check is made here, on the server.

// role is what a connection may do beyond chatting.
type role uint8

const (
	roleNone      role = iota // a user or a guest
	roleModerator             // acts in any room
	roleAdmin                 // acts in any room and server-wide
)

// String is the role's name in the users file, a JWT and the protocol.
func (r role) String() string {
	switch r {
	case roleModerator:
		return "moderator"
	case roleAdmin:
		return "admin"
	}
	return ""
}

// parseRole reads a role name: admin or moderator.
func parseRole(s string) (role, error) {
	switch s {
	case "admin":
		return roleAdmin, nil
	case "moderator":
		return roleModerator, nil
	}
	return roleNone, fmt.Errorf("role %q: want admin or moderator", truncate(s, 20))
}

// roleOf is c's role now: none for a guest, its token's for a JWT, else
// what the users file says at this moment. Must only be called from run.
func (h *Hub) roleOf(c *Client) role {
	switch {
	case c.account == "":
		return roleNone
	case c.fixedRole:
		return c.tokenRole
	case h.userRole != nil:
		return h.userRole(c.account)
	}
	return roleNone
}

// Actions. A moderator acts in any room: the room the request names, else
// the one it is in. An admin may also act server-wide ("server":true, the
// -all text commands, the /api/bans and /api/mutes paths).
//
// Where each action lives. Kicks are signals (broker.go): every node closes
// its own connections of the user and answers how many, so the moderator
// learns whether anyone was there. Bans, mutes, slow mode and deleted
// messages are records: the actor's node puts one, and every node applies
// it when the broker hands it back, the actor's node included, so that
// there is one route for every node. A node applying a ban closes its
// connections of the banned user in that room (everywhere, server-wide).
// Records are kept where history is: the JetStream bucket in a cluster,
// the history file with -data-dir (store_bolt.go), memory otherwise.
//
// Names. Bans and mutes name whom they bind as the room shows them: a
// logged-in user by its login, a guest by its current nickname; compared
// ignoring case, as registered names are, so that "Bob" does not slip
// past a ban on "bob". A guest can come back under another name: a
// deployment that needs bans to hold runs -auth login or jwt.

// actionKind names one moderation action.
type actionKind uint8

const (
	actKick actionKind = iota + 1
	actBan
	actUnban
	actMute
	actUnmute
	actDelete
	actSlow
)

// actionNames are the actions' names in the protocol, the logs and the
// hubbub_moderation_actions_total metric.
var actionNames = [...]string{actKick: "kick", actBan: "ban", actUnban: "unban", actMute: "mute",
	actUnmute: "unmute", actDelete: "delete", actSlow: "slow_mode"}

// actionByName maps the JSON event type of an action to its kind.
var actionByName = map[string]actionKind{"kick": actKick, "ban": actBan, "unban": actUnban, "mute": actMute,
	"unmute": actUnmute, "delete_message": actDelete, "slow_mode": actSlow}

// modAction is one decoded moderation request.
type modAction struct {
	kind   actionKind
	name   string        // the target (kick, ban, unban, mute, unmute)
	room   string        // "": the actor's room (never with server)
	server bool          // server-wide (kick, ban, unban, mute, unmute)
	dur    time.Duration // ban, mute: how long; slow_mode: the interval (0: off)
	reason string
	seq    uint64 // delete: the message
	epoch  string // delete: its epoch; "": the room's current one
}

// Bounds of the moderation state each node holds. Ban and mute entries
// are about 300 bytes, slow modes and tombstones less, so the whole state
// stays under about 10 MB; a new entry past a bound is refused (too_many),
// never one in force forgotten.
const (
	maxRestrictions = 10_000 // bans and mutes in force
	maxSlowModes    = 10_000 // rooms in slow mode
	maxTombstones   = 10_000 // deleted messages that can still be replayed
	kickMarkTTL     = 10 * time.Second
	slowOffTTL      = time.Minute // how long the record of a lifted slow mode stays (setSlowMode)
)

// actor is who asks for a moderation action, and where the answer goes: a
// client (and its event id) or an HTTP API call.
type actor struct {
	name string // who it is, for "by" and the logs
	role role
	room string // the room it is in; "" for the API
	c    *Client
	id   string
	api  *apiCall
}

// clientActor is c asking, with event id id. Must only be called from run.
func (h *Hub) clientActor(c *Client, id string) actor {
	a := actor{name: c.name, role: h.roleOf(c), c: c, id: id}
	if c.room != nil {
		a.room = c.room.name
	}
	return a
}

// modNotice is the payload of moderation: the answer to the actor, and
// the notice a room gets of a ban, mute or slow mode there.
type modNotice struct {
	Action   string `json:"action"`
	Room     string `json:"room,omitempty"`
	Server   bool   `json:"server,omitempty"`
	Name     string `json:"name,omitempty"`
	By       string `json:"by"`
	Reason   string `json:"reason,omitempty"`
	Duration string `json:"duration,omitempty"` // ban, mute
	Until    string `json:"until,omitempty"`    // ban, mute
	Interval string `json:"interval,omitempty"` // slow_mode; absent: off
	Seq      uint64 `json:"seq,omitempty"`      // delete
	Kicked   int    `json:"kicked,omitempty"`   // kick: connections closed
	ID       string `json:"id,omitempty"`       // the actor's event id
}

// noticeEvent builds moderation for n.
func noticeEvent(n modNotice) *outbound {
	return newOutbound("moderation", n, "* "+noticeText(n))
}

// noticeText says what n did, for people: "alice banned bob from lobby
// for 10m: spam".
func noticeText(n modNotice) string {
	where := "from " + n.Room
	in := "in " + n.Room
	if n.Server {
		where, in = "from the server", "everywhere"
	}
	var s string
	switch n.Action {
	case "kick":
		s = fmt.Sprintf("%s kicked %s %s", n.By, n.Name, where)
		if n.Kicked > 1 {
			s += fmt.Sprintf(" (%d connections)", n.Kicked)
		}
	case "ban":
		s = fmt.Sprintf("%s banned %s %s for %s", n.By, n.Name, where, n.Duration)
	case "unban":
		s = fmt.Sprintf("%s lifted the ban on %s %s", n.By, n.Name, in)
	case "mute":
		s = fmt.Sprintf("%s muted %s %s for %s", n.By, n.Name, in, n.Duration)
	case "unmute":
		s = fmt.Sprintf("%s unmuted %s %s", n.By, n.Name, in)
	case "delete":
		s = fmt.Sprintf("%s deleted message %d in %s", n.By, n.Seq, n.Room)
	case "slow_mode":
		if n.Interval == "" {
			s = fmt.Sprintf("%s turned slow mode off in %s", n.By, n.Room)
		} else {
			s = fmt.Sprintf("%s set slow mode in %s: one message every %s", n.By, n.Room, n.Interval)
		}
	}
	if n.Reason != "" {
		s += ": " + n.Reason
	}
	return s
}

// shortDuration writes d as people write it: 10m, not 10m0s.
func shortDuration(d time.Duration) string {
	s := d.String()
	if strings.HasSuffix(s, "m0s") {
		s = s[:len(s)-2]
	}
	if strings.HasSuffix(s, "h0m") {
		s = s[:len(s)-2]
	}
	return s
}

// moderate checks that a may do m and carries it out. Must only be called
// from run.
func (h *Hub) moderate(a actor, m modAction) {
	what := actionNames[m.kind]
	if m.room == "" && !m.server {
		m.room = a.room
	}
	switch {
	case m.room == "" && !m.server:
		h.modFail(a, &protoError{Code: errBadPayload, Message: what + " needs a room"})
		return
	case a.role < roleModerator:
		h.modFail(a, &protoError{Code: errForbidden, Message: what + " is for moderators and admins"})
		return
	case m.server && a.role < roleAdmin:
		h.modFail(a, &protoError{Code: errForbidden, Message: "a server-wide " + what + " is for admins"})
		return
	}
	if m.kind != actDelete && m.kind != actSlow {
		m.name = h.targetName(m.name, m.room)
	}
	if m.kind == actKick || m.kind == actBan || m.kind == actMute {
		// Nobody acts on an equal or a superior, or on itself; the API key
		// is the operator's and acts on anyone.
		if tr := h.targetRole(m.name); a.api == nil && tr >= a.role {
			h.modFail(a, &protoError{Code: errForbidden,
				Message: fmt.Sprintf("%s is %s; only an admin or the API can %s them", m.name, article(tr), what)})
			return
		}
	}
	switch m.kind {
	case actKick:
		h.kick(a, m)
	case actBan, actMute:
		h.restrict(a, m)
	case actUnban, actUnmute:
		h.lift(a, m)
	case actDelete:
		h.deleteMessage(a, m)
	case actSlow:
		h.setSlowMode(a, m)
	}
}

// modFail tells a its request was refused. Must only be called from run.
func (h *Hub) modFail(a actor, e *protoError) {
	if a.api != nil {
		a.api.reply <- apiResult{Fail: e}
		return
	}
	if a.c != nil && a.c.active {
		h.deliver(a.c, errorEvent(e.withID(a.id)))
	}
}

// modDone tells a its request was carried out, logs it and counts it.
// Must only be called from run.
func (h *Hub) modDone(a actor, n modNotice) {
	h.m.moderation[n.Action].Inc()
	h.log.Info("moderation", "action", n.Action, "actor", a.name, "target", n.Name, "room", n.Room,
		"server", n.Server, "reason", n.Reason, "duration", n.Duration, "interval", n.Interval, "seq", n.Seq)
	if a.api != nil {
		a.api.reply <- apiResult{Mod: &n}
		return
	}
	if a.c != nil && a.c.active {
		if a.c.format == formatText && a.c.room != nil && a.c.room.name == n.Room && !n.Server && announced[n.Action] {
			return // the room's notice, which it also gets, says the same
		}
		n.ID = a.id
		h.deliver(a.c, noticeEvent(n))
	}
}

// announced are the actions whose room hears of them (handleRecord): a
// text actor in that room reads the room's line and no second one.
var announced = map[string]bool{"ban": true, "mute": true, "slow_mode": true, "delete": true}

// notice builds the notice of m, done by a.
func (m modAction) notice(a actor) modNotice {
	n := modNotice{Action: actionNames[m.kind], Room: m.room, Server: m.server, Name: m.name, By: a.name, Reason: m.reason}
	switch m.kind {
	case actBan, actMute:
		n.Duration = shortDuration(m.dur)
	case actSlow:
		if m.dur > 0 {
			n.Interval = shortDuration(m.dur)
		}
	case actDelete:
		n.Seq = m.seq
	}
	return n
}

// modResult carries a broker's verdict on a moderation action to the hub.
type modResult struct {
	a     actor
	n     modNotice
	err   error
	count int // kick: connections closed on every node
	kick  bool
}

func (r modResult) handle(h *Hub) {
	switch {
	case r.err != nil:
		h.modFail(r.a, notDone(r.n.Action, r.err))
	case r.kick && r.count == 0:
		where := "in " + r.n.Room
		if r.n.Server {
			where = "connected"
		}
		h.modFail(r.a, &protoError{Code: errNoSuchUser, Message: fmt.Sprintf("%s is not %s", r.n.Name, where)})
	default:
		r.n.Kicked = r.count
		h.modDone(r.a, r.n)
	}
}

// notDone explains a moderation action the broker could not carry out.
func notDone(action string, err error) *protoError {
	e := notDelivered(err)
	e.Message = action + " not carried out" + strings.TrimPrefix(e.Message, "message not delivered")
	return e
}

// putRecord puts r through the broker and answers a with n once it is in
// force. Must only be called from run.
func (h *Hub) putRecord(a actor, r modRecord, n modNotice) {
	value, _ := json.Marshal(r) // strings, numbers and times only
	err := h.broker.PutRecord(r.key(), value, func(_ uint64, err error) {
		h.fromBrokerResult(modResult{a: a, n: n, err: err})
	})
	if err != nil {
		h.modFail(a, notDone(n.Action, err))
	}
}

// kick signals every node to close the named user's connections in the
// room (everywhere, server-wide). Must only be called from run.
func (h *Hub) kick(a actor, m modAction) {
	n := m.notice(a)
	body, _ := json.Marshal(kickSignal{Room: m.room, Server: m.server, Name: m.name, By: a.name, Reason: m.reason})
	err := h.broker.Signal(Signal{Kind: sigKick, Body: body}, func(sum, _ int) {
		h.fromBrokerResult(modResult{a: a, n: n, count: sum, kick: true})
	})
	if err != nil {
		h.modFail(a, notDone(n.Action, err))
	}
}

// restrict bans or mutes. Must only be called from run.
func (h *Hub) restrict(a actor, m modAction) {
	now := time.Now()
	r := modRecord{Kind: recBan, Room: m.room, Server: m.server, Name: m.name, Until: now.Add(m.dur).UTC(),
		By: a.name, Reason: m.reason, At: now.UTC()}
	if m.kind == actMute {
		r.Kind = recMute
	}
	if m.server {
		r.Room = ""
	}
	if h.mod.entries[r.key()] == nil && h.mod.count[recBan]+h.mod.count[recMute] >= maxRestrictions {
		h.modFail(a, &protoError{Code: errTooMany, Message: fmt.Sprintf(
			"%d bans and mutes are in force, as many as this server keeps; lift some or wait for them to expire", maxRestrictions)})
		return
	}
	n := m.notice(a)
	n.Until = stamp(r.Until)
	h.putRecord(a, r, n)
}

// lift removes a ban or a mute. Must only be called from run.
func (h *Hub) lift(a actor, m modAction) {
	r := modRecord{Kind: recBan, Room: m.room, Server: m.server, Name: m.name}
	what := "banned"
	if m.kind == actUnmute {
		r.Kind, what = recMute, "muted"
	}
	if m.server {
		r.Room = ""
	}
	key := r.key()
	if e := h.mod.entries[key]; e == nil || !time.Now().Before(e.rec.Until) {
		where := "in " + m.room
		if m.server {
			where = "server-wide"
		}
		h.modFail(a, &protoError{Code: errNotFound, Message: fmt.Sprintf("%s is not %s %s", m.name, what, where)})
		return
	}
	n := m.notice(a)
	err := h.broker.DeleteRecord(key, 0, func(err error) { h.fromBrokerResult(modResult{a: a, n: n, err: err}) })
	if err != nil {
		h.modFail(a, notDone(n.Action, err))
	}
}

// setSlowMode sets or lifts a room's slow mode. Lifting it puts a record
// with interval 0, not a delete, so that every node can say who lifted it;
// the sweep removes that record once it is slowOffTTL old. Must only be
// called from run.
func (h *Hub) setSlowMode(a actor, m modAction) {
	r := modRecord{Kind: recSlow, Room: m.room, Interval: m.dur, By: a.name, At: time.Now().UTC()}
	n := m.notice(a)
	if m.dur == 0 && h.mod.slowMode(m.room) == 0 {
		h.modFail(a, &protoError{Code: errNotFound, Message: "slow mode is already off in " + m.room})
		return
	}
	if h.mod.entries[r.key()] == nil && h.mod.count[recSlow] >= maxSlowModes {
		h.modFail(a, &protoError{Code: errTooMany, Message: fmt.Sprintf(
			"%d rooms are in slow mode, as many as this server keeps", maxSlowModes)})
		return
	}
	h.putRecord(a, r, n)
}

// deleteMessage replaces a message of a room's history with a tombstone on
// every node. The message must be one this node keeps: the actor names
// what it has seen. Must only be called from run.
func (h *Hub) deleteMessage(a actor, m modAction) {
	l := h.history.known(m.room)
	fail := func(format string, args ...any) {
		h.modFail(a, &protoError{Code: errNotFound, Message: fmt.Sprintf(format, args...)})
	}
	switch {
	case l == nil:
		fail("this server keeps no history of %s", m.room)
		return
	case m.epoch != "" && m.epoch != l.epoch:
		fail("message %d is from an earlier history of %s (epoch %s); that history is gone", m.seq, m.room, m.epoch)
		return
	case m.seq > max(l.last, l.assigned):
		fail("%s has no message %d: its newest is %d", m.room, m.seq, max(l.last, l.assigned))
		return
	case m.seq < l.first():
		fail("message %d of %s is no longer kept", m.seq, m.room)
		return
	case h.history.deleted(m.room, l.epoch, m.seq):
		fail("message %d of %s is already deleted", m.seq, m.room)
		return
	case h.mod.count[recTomb] >= maxTombstones:
		h.modFail(a, &protoError{Code: errTooMany, Message: fmt.Sprintf(
			"%d deleted messages are kept, as many as this server keeps; try again once rooms have moved on", maxTombstones)})
		return
	}
	h.putRecord(a, modRecord{Kind: recTomb, Room: m.room, Seq: m.seq, Epoch: l.epoch, By: a.name, At: time.Now().UTC()},
		m.notice(a))
}

// Record kinds, the first token of their keys.
const (
	recBan  = "ban"
	recMute = "mute"
	recSlow = "slow"
	recTomb = "tomb"
)

// modRecord is the value of a moderation record, as the broker carries it
// (JSON) and the history file keeps it.
type modRecord struct {
	Kind     string        `json:"kind"`
	Room     string        `json:"room,omitempty"` // "" with server
	Server   bool          `json:"server,omitempty"`
	Name     string        `json:"name,omitempty"`     // ban, mute: whom it binds
	Until    time.Time     `json:"until,omitzero"`     // ban, mute: when it ends
	Interval time.Duration `json:"interval,omitempty"` // slow: between two messages of one sender
	Seq      uint64        `json:"seq,omitempty"`      // tomb: the message
	Epoch    string        `json:"epoch,omitempty"`    // tomb: its epoch
	By       string        `json:"by"`
	Reason   string        `json:"reason,omitempty"`
	At       time.Time     `json:"at"`
}

// key names r's record: ban.room.ROOM.NAME, ban.server.NAME (mute
// likewise, the name in lower case), slow.ROOM, tomb.ROOM.EPOCH.SEQ.
// Rooms, names and epochs are [A-Za-z0-9_-], so the tokens never run into
// each other; the epoch keeps a recreated room's new messages from being
// taken for the old ones.
func (r modRecord) key() string {
	switch r.Kind {
	case recBan, recMute:
		if r.Server {
			return r.Kind + ".server." + fold(r.Name)
		}
		return r.Kind + ".room." + r.Room + "." + fold(r.Name)
	case recSlow:
		return recSlow + "." + r.Room
	case recTomb:
		return recTomb + "." + r.Room + "." + r.Epoch + "." + strconv.FormatUint(r.Seq, 10)
	}
	return "" // not a kind this server knows: matches no record's key
}

// fold is how moderation compares names: ignoring case.
func fold(name string) string { return strings.ToLower(name) }

// modEntry is one record a node holds.
type modEntry struct {
	rec modRecord
	rev uint64 // the broker's revision; 0 for one read from disk and not yet back from the broker
	gen uint64 // modState.gen when last put
}

// modState is the moderation a node knows of. Owned by Hub.run.
type modState struct {
	entries map[string]*modEntry
	count   map[string]int // entries by kind
	// gen counts the broker's resets: after one, entries not put again
	// by the time of the synced marker are gone.
	gen       uint64
	resetting bool
	// sent is, per room in slow mode, when each sender (folded) last sent
	// there, as far as this node has seen: its own clients' messages and
	// every message the broker delivers.
	sent map[string]map[string]time.Time
	// marks remembers recent kicks and bans, so that the leave they cause
	// is shown as one, on this node and, through presence, on the others.
	marks map[markKey]kickMark
	// gauges export count, by kind (hubbub_moderation_entries).
	gauges map[string]prometheus.Gauge
}

// markKey names a user in a room for marks.
type markKey struct{ room, name string }

// kickMark is why a user is about to leave a room.
type kickMark struct {
	by, reason string
	banned     bool
	at         time.Time
}

// newModState returns an empty state.
func newModState(gauges map[string]prometheus.Gauge) *modState {
	return &modState{entries: make(map[string]*modEntry), count: make(map[string]int),
		sent: make(map[string]map[string]time.Time), marks: make(map[markKey]kickMark), gauges: gauges}
}

// put records r under key at revision rev and reports the entry it
// replaced, if any.
func (s *modState) put(key string, r modRecord, rev uint64) *modEntry {
	old := s.entries[key]
	if old == nil {
		s.count[r.Kind]++
		s.gauges[r.Kind].Set(float64(s.count[r.Kind]))
	}
	s.entries[key] = &modEntry{rec: r, rev: rev, gen: s.gen}
	return old
}

// remove forgets key and returns what it held, or nil.
func (s *modState) remove(key string) *modEntry {
	e := s.entries[key]
	if e != nil {
		delete(s.entries, key)
		s.count[e.rec.Kind]--
		s.gauges[e.rec.Kind].Set(float64(s.count[e.rec.Kind]))
	}
	return e
}

// restriction returns the ban or mute (kind) of name in room, or server-
// wide, that is in force at now; server-wide first. room "" looks only
// server-wide.
func (s *modState) restriction(kind, room, name string, now time.Time) *modRecord {
	if s.count[kind] == 0 {
		return nil // the common case, checked on every message: no keys built
	}
	for _, r := range []modRecord{{Kind: kind, Server: true, Name: name}, {Kind: kind, Room: room, Name: name}} {
		if r.Room == "" && !r.Server {
			continue
		}
		if e := s.entries[r.key()]; e != nil && now.Before(e.rec.Until) {
			return &e.rec
		}
	}
	return nil
}

// slowMode returns room's slow-mode interval, 0 when off.
func (s *modState) slowMode(room string) time.Duration {
	if s.count[recSlow] == 0 {
		return 0
	}
	if e := s.entries[recSlow+"."+room]; e != nil {
		return e.rec.Interval
	}
	return 0
}

// noteSent records that name (a login, or a guest's nickname) sent in
// room at t, if the room is in slow mode.
func (s *modState) noteSent(room, name string, t time.Time) {
	if s.slowMode(room) == 0 {
		return
	}
	m := s.sent[room]
	if m == nil {
		m = make(map[string]time.Time)
		s.sent[room] = m
	}
	if k := fold(name); t.After(m[k]) {
		m[k] = t
	}
}

// renamed carries what slow mode knows of a guest's messages in room from
// its old name to its new one.
func (s *modState) renamed(room, old, name string) {
	if t, ok := s.sent[room][fold(old)]; ok {
		s.noteSent(room, name, t)
	}
}

// mark remembers that name is leaving room ("": every room) because of m.
func (s *modState) mark(room, name string, m kickMark) { s.marks[markKey{room, fold(name)}] = m }

// takeMark returns the mark of name's leave from room, if there is a
// recent one: a room's, else a server-wide one. A mark serves every
// connection of the name that leaves within kickMarkTTL (a user kicked
// with two tabs leaves twice) and ends when the name joins the room again
// (clearMark).
func (s *modState) takeMark(room, name string, now time.Time) *kickMark {
	m, ok := s.marks[markKey{room, fold(name)}]
	if !ok {
		m, ok = s.marks[markKey{"", fold(name)}]
	}
	if !ok || now.Sub(m.at) > kickMarkTTL {
		return nil
	}
	return &m
}

// leaveMark is m as the broker carries it to the other nodes.
func (m *kickMark) leaveMark() LeaveMark {
	return LeaveMark{By: m.by, Reason: m.reason, Banned: m.banned}
}

// clearMark forgets why name last left room: it is back.
func (s *modState) clearMark(room, name string) { delete(s.marks, markKey{room, fold(name)}) }

// modName is the name moderation knows c by: its login, else its nickname.
func (c *Client) modName() string {
	if c.account != "" {
		return c.account
	}
	return c.name
}

// until says when r ends, for people.
func until(r *modRecord) string {
	return r.Until.UTC().Format("2006-01-02 15:04:05 UTC")
}

// banError is the error a client banned by r gets.
func banError(r *modRecord) *protoError {
	return restrictionError(r, errBanned, "banned from "+r.Room, "banned from this server", "")
}

// muteError is the error a client muted by r gets when it sends.
func muteError(r *modRecord) *protoError {
	return restrictionError(r, errMuted, "muted in "+r.Room, "muted everywhere", "; you can still read")
}

// restrictionError says that the ban or mute r binds the client: what
// (in a room or server-wide), until when, by whom, why.
func restrictionError(r *modRecord, code, inRoom, server, note string) *protoError {
	what := inRoom
	if r.Server {
		what = server
	}
	msg := fmt.Sprintf("you are %s until %s (by %s)%s", what, until(r), r.By, note)
	if r.Reason != "" {
		msg += ": " + r.Reason
	}
	return &protoError{Code: code, Message: msg, Until: stamp(r.Until)}
}

// banned returns why c may not be in room, or nil. Must only be called
// from run.
func (h *Hub) banned(c *Client, room string) *protoError {
	if r := h.mod.restriction(recBan, room, c.modName(), time.Now()); r != nil {
		return banError(r)
	}
	return nil
}

// sayRefused returns why c may not send a message to its room now, or
// nil: a mute, or slow mode (moderators and admins are exempt). A message
// it may send counts for slow mode from now. Must only be called from run.
func (h *Hub) sayRefused(c *Client) *protoError {
	now := time.Now()
	room := c.room.name
	if r := h.mod.restriction(recMute, room, c.modName(), now); r != nil {
		return muteError(r)
	}
	every := h.mod.slowMode(room)
	if every == 0 || h.roleOf(c) >= roleModerator {
		return nil
	}
	if last, ok := h.mod.sent[room][fold(c.modName())]; ok {
		if wait := last.Add(every).Sub(now); wait > 0 {
			secs := (wait + time.Second - 1) / time.Second
			return &protoError{Code: errSlowMode, RetryAfterMS: wait.Milliseconds() + 1,
				Message: fmt.Sprintf("slow mode in %s: one message every %s; wait %ds", room, shortDuration(every), secs)}
		}
	}
	h.mod.noteSent(room, c.modName(), now)
	return nil
}

// matching returns this node's clients that name denotes (ignoring case),
// in room, or anywhere when room is "". Must only be called from run.
func (h *Hub) matching(name, room string) []*Client {
	var out []*Client
	for c := range h.named[fold(name)] {
		if c.active && (room == "" || (c.room != nil && c.room.name == room)) {
			out = append(out, c)
		}
	}
	return out
}

// targetName is whom name, as a moderator saw it in room ("": anywhere),
// denotes: the login, as it is spelled, of a logged-in member shown under
// name there (in any case; or carol-2, where a guest held carol first),
// else name itself. Must only be called from run.
func (h *Hub) targetName(name, room string) string {
	look := h.clients
	if r := h.rooms[room]; r != nil {
		look = r.members
	}
	for c := range look {
		if c.account != "" && strings.EqualFold(c.name, name) {
			return c.account
		}
	}
	return name
}

// targetRole is the highest role name has: in the users file, or on any
// of this node's connections under that name (a JWT's role). Must only
// be called from run.
func (h *Hub) targetRole(name string) role {
	r := roleNone
	if h.userRole != nil {
		r = h.userRole(name)
	}
	for c := range h.named[fold(name)] {
		r = max(r, h.roleOf(c))
	}
	return r
}

// article names role r for a sentence: "a moderator", "an admin".
func article(r role) string {
	switch r {
	case roleModerator:
		return "a moderator"
	case roleAdmin:
		return "an admin"
	}
	return "a user"
}

// eject closes c for a kick or ban. Must only be called from run.
func (h *Hub) eject(c *Client, d wsconn.Disconnect) {
	c.logger().Info("closing: "+d.Label, "name", c.name, "reason", d.Reason)
	h.disconnect(c, d)
}

// sigKick and the direct-message kinds (direct.go) are the signals the
// hub sends.
const sigKick = "kick"

// kickSignal is the body of a kick signal.
type kickSignal struct {
	Room   string `json:"room,omitempty"`
	Server bool   `json:"server,omitempty"`
	Name   string `json:"name"`
	By     string `json:"by"`
	Reason string `json:"reason,omitempty"`
}

// onKick closes this node's connections of the kicked user and returns
// how many. Must only be called from run.
func (h *Hub) onKick(k kickSignal) int {
	room := k.Room
	if k.Server {
		room = ""
	}
	// The actor's node resolved the name against its own members only; a
	// member of this node shown under a variant (bob-2) is resolved here,
	// so that the name means the same login on every node.
	name := h.targetName(k.Name, room)
	h.mod.mark(room, name, kickMark{by: k.By, reason: k.Reason, at: time.Now()})
	d := dcKicked(k.Room, k.By, k.Reason)
	cs := h.matching(name, room)
	for _, c := range cs {
		h.eject(c, d)
	}
	return len(cs)
}

// enforceBan closes this node's connections that r bans. Must only be
// called from run.
func (h *Hub) enforceBan(r modRecord) {
	if !time.Now().Before(r.Until) {
		return
	}
	room := r.Room
	h.mod.mark(room, r.Name, kickMark{by: r.By, reason: r.Reason, banned: true, at: time.Now()})
	d := dcBanned(r)
	for _, c := range h.matching(r.Name, room) {
		h.eject(c, d)
	}
}

// banQuery asks the hub, for a handshake, whether name is banned from room.
type banQuery struct {
	name, room string
	reply      chan *protoError // buffered (1): the hub never waits
}

func (q banQuery) handle(h *Hub) {
	var e *protoError
	if r := h.mod.restriction(recBan, q.room, q.name, time.Now()); r != nil {
		e = banError(r)
	}
	q.reply <- e
}

// bannedAt asks the hub whether name is banned from room, for serveWs to
// refuse the handshake (403). ctx bounds the wait; a hub that has stopped
// or a ctx that ended answers "no", and the hub checks again when the
// client arrives (Hub.add).
func (h *Hub) bannedAt(ctx context.Context, name, room string) *protoError {
	q := banQuery{name: name, room: room, reply: make(chan *protoError, 1)}
	select {
	case h.inbound <- queued{r: q}: // not a client's request: not in the latency metric
	case <-h.done:
		return nil
	case <-ctx.Done():
		return nil
	}
	select {
	case e := <-q.reply:
		return e
	case <-h.done:
		return nil
	case <-ctx.Done():
		return nil
	}
}

// recordRequest is a record update on its way to the hub.
type recordRequest struct{ u RecordUpdate }

func (r recordRequest) handle(h *Hub) { h.handleRecord(r.u) }

// handleRecord applies one record update: it keeps the state, writes it to
// disk with -data-dir, and acts on it — a ban closes connections, a
// tombstone rewrites the history, and a change made now (not the state
// read at startup) is announced in its room. Must only be called from run.
func (h *Hub) handleRecord(u RecordUpdate) {
	switch u.Kind {
	case RecordsReset:
		h.mod.gen++
		h.mod.resetting = true
		return
	case RecordsSynced:
		if h.mod.resetting {
			h.mod.resetting = false
			for key, e := range h.mod.entries {
				if e.gen < h.mod.gen {
					h.forgetRecord(key, false)
				}
			}
		}
		return
	case RecordDeleted:
		h.forgetRecord(u.Record.Key, u.Live)
		return
	}
	var r modRecord
	if err := json.Unmarshal(u.Record.Value, &r); err != nil || r.key() != u.Record.Key {
		h.log.Warn("moderation record ignored: not one of ours", "key", u.Record.Key, "err", err)
		return
	}
	h.mod.put(u.Record.Key, r, u.Record.Rev)
	if st := h.history.store; st != nil && r.Kind != recTomb {
		st.putModeration(u.Record.Key, u.Record.Value) // tombstones rewrite the message itself
	}
	switch r.Kind {
	case recBan:
		h.enforceBan(r)
	case recSlow:
		if r.Interval == 0 {
			delete(h.mod.sent, r.Room) // lifted
		}
	case recTomb:
		if h.history.tombstone(r.Room, r.Epoch, r.Seq, r.By) && u.Live {
			if rm := h.rooms[r.Room]; rm != nil {
				h.broadcast(rm, deletedEvent(r.Room, r.Epoch, r.Seq, r.By), nil)
			}
		}
		return
	}
	if u.Live && !r.Server {
		if rm := h.rooms[r.Room]; rm != nil {
			h.broadcast(rm, noticeEvent(r.notice()), nil)
		}
	}
}

// notice is the room's notice of a ban, mute or slow mode r.
func (r modRecord) notice() modNotice {
	n := modNotice{Room: r.Room, Server: r.Server, Name: r.Name, By: r.By, Reason: r.Reason}
	switch r.Kind {
	case recBan, recMute:
		n.Action = r.Kind
		n.Duration = shortDuration(r.Until.Sub(r.At).Round(time.Second))
		n.Until = stamp(r.Until)
	case recSlow:
		n.Action = "slow_mode"
		if r.Interval > 0 {
			n.Interval = shortDuration(r.Interval) // none: lifted
		}
	}
	return n
}

// inForce lists the bans, mutes and slow modes in force, as notices,
// oldest first; room "" lists all, else those that bind in room
// (server-wide ones too). Must only be called from run.
func (h *Hub) inForce(room string) []modNotice {
	now := time.Now()
	var recs []modRecord
	for _, e := range h.mod.entries {
		r := e.rec
		switch {
		case r.Kind == recTomb,
			r.Kind == recSlow && r.Interval == 0,
			(r.Kind == recBan || r.Kind == recMute) && !now.Before(r.Until),
			room != "" && !r.Server && r.Room != room:
			continue
		}
		recs = append(recs, r)
	}
	slices.SortFunc(recs, func(a, b modRecord) int {
		return cmp.Or(a.At.Compare(b.At), cmp.Compare(a.key(), b.key()))
	})
	out := make([]modNotice, len(recs))
	for i, r := range recs {
		out[i] = r.notice()
	}
	return out
}

// forgetRecord drops key from the state and the disk; live announces the
// end of a room's slow mode if it was on (one lifted by a moderator was
// announced when it was lifted). Must only be called from run.
func (h *Hub) forgetRecord(key string, live bool) {
	e := h.mod.remove(key)
	if e == nil {
		return
	}
	if st := h.history.store; st != nil && e.rec.Kind != recTomb {
		st.deleteModeration(key)
	}
	switch e.rec.Kind {
	case recSlow:
		delete(h.mod.sent, e.rec.Room)
		if rm := h.rooms[e.rec.Room]; rm != nil && live && e.rec.Interval > 0 {
			h.broadcast(rm, noticeEvent(modNotice{Action: "slow_mode", Room: e.rec.Room, By: e.rec.By}), nil)
		}
	case recTomb:
		h.history.forgetTombstone(e.rec.Room, e.rec.Epoch, e.rec.Seq)
	}
}

// sweepModeration forgets bans and mutes that have expired and tombstones
// that can no longer be replayed, here and, through the broker, for the
// cluster; and the slow-mode and kick notes nobody needs any more. The
// broker's delete names the revision seen, so a ban put again meanwhile
// stays. Must only be called from run.
func (h *Hub) sweepModeration(now time.Time) {
	for key, e := range h.mod.entries {
		r := e.rec
		gone := false
		switch r.Kind {
		case recBan, recMute:
			gone = !now.Before(r.Until)
		case recSlow:
			gone = r.Interval == 0 && now.Sub(r.At) >= slowOffTTL
		case recTomb:
			gone = h.history.moot(r.Room, r.Epoch, r.Seq)
		}
		if !gone {
			continue
		}
		h.forgetRecord(key, false)
		if err := h.broker.DeleteRecord(key, e.rev, nil); err != nil {
			h.log.Debug("expired moderation entry not removed from the cluster; the next sweep tries again", "key", key, "err", err)
		}
	}
	for room, senders := range h.mod.sent {
		every := h.mod.slowMode(room)
		for name, t := range senders {
			if now.Sub(t) >= every {
				delete(senders, name)
			}
		}
		if len(senders) == 0 {
			delete(h.mod.sent, room)
		}
	}
	for k, m := range h.mod.marks {
		if now.Sub(m.at) > kickMarkTTL {
			delete(h.mod.marks, k)
		}
	}
}

// restoreModeration takes the records kept on disk into the state and
// hands them to the broker, which then holds them for the process, as if
// just put. Expired ones are dropped. Called by newHub before run starts.
func (h *Hub) restoreModeration(recs map[string][]byte) {
	now := time.Now()
	for key, value := range recs {
		var r modRecord
		if err := json.Unmarshal(value, &r); err != nil || r.key() != key {
			h.log.Warn("moderation record on disk ignored", "key", key, "err", err)
			continue
		}
		if (r.Kind == recBan || r.Kind == recMute) && !now.Before(r.Until) {
			h.history.store.deleteModeration(key)
			continue
		}
		h.mod.put(key, r, 0)
		if err := h.broker.PutRecord(key, value, nil); err != nil {
			h.log.Error("moderation record not restored", "key", key, "err", err)
		}
	}
}

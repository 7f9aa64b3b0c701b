package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"slices"
	"strings"
	"time"
)

// The hub's side of the Broker.
//
// Every chat message goes to the broker and is broadcast only when the
// broker hands it back, on this node and every other: one delivery route,
// so nothing is delivered twice. Broker callbacks never touch hub state;
// they queue a brokerEvent on h.inbound, selecting on h.done, and the hub
// handles it in run like any request. The hub itself never waits for the
// broker: Publish, Subscribe, Unsubscribe and SetPresence only queue work.
// With the default memoryBroker the deliveries come back through the
// broker's own goroutine, so the hub never sends to its own inbound
// channel and cannot deadlock on it.
//
// A node subscribes to a room when its first local member joins and
// unsubscribes when the last one leaves. A sequenced broker (NATS) replays
// the room's newest messages first; members who join before that replay
// is over wait in roomLink.waiting and get their history or recovery when
// the broker says the room is synced, so that history and live messages
// meet with no gap and no duplicate.

// errNotDelivered is the error code for a message the broker could not
// take: the sender is told, nothing was delivered to anyone.
const errNotDelivered = "not_delivered"

// brokerEvent is a broker callback on its way to the hub.
type brokerEvent struct {
	room string
	sub  uint64 // the subscription it came from; stale ones are dropped
	d    Delivery
	pres *PresenceUpdate // set for presence, else d is
}

// roomLink is a room's broker subscription. Owned by Hub.run.
type roomLink struct {
	sub     uint64
	synced  bool              // the replay is over: broadcast live messages
	waiting map[*Client]entry // joined before synced, and how
}

// entry is how a client came into a room: as it connected, or with a
// change_room (and its id, for the reply).
type entry struct {
	connecting bool
	id         string
}

// clusterState is the hub's cluster bookkeeping. Owned by Hub.run.
type clusterState struct {
	links   map[string]*roomLink                 // room -> its subscription
	remote  map[string]map[string]PresenceUpdate // room -> node -> members
	nextSub uint64
}

// attachBroker sets up h's broker: b, or a private memoryBroker when b is
// nil. Called by newHub before run starts.
func (h *Hub) attachBroker(b Broker) {
	if b == nil {
		b = newMemoryBroker()
		h.ownBroker = true
	}
	h.broker = b
	h.cl = clusterState{
		links:  make(map[string]*roomLink),
		remote: make(map[string]map[string]PresenceUpdate),
	}
	b.WatchPresence(func(u PresenceUpdate) { h.fromBroker(brokerEvent{room: u.Room, pres: &u}) })
	b.WatchRecords(func(u RecordUpdate) { h.fromBrokerResult(recordRequest{u}) })
	b.WatchSignals(func(s Signal, answer func(int)) { h.fromBrokerResult(signalRequest{s, answer}) })
}

// signalRequest is a signal on its way to the hub, with the answer the
// broker wants back: how many of this node's connections it reached.
type signalRequest struct {
	s      Signal
	answer func(int)
}

func (r signalRequest) handle(h *Hub) { r.answer(h.onSignal(r.s)) }

// onSignal carries out a signal on this node and returns how many
// connections it reached. Must only be called from run.
func (h *Hub) onSignal(s Signal) int {
	switch s.Kind {
	case sigKick:
		var k kickSignal
		if err := json.Unmarshal(s.Body, &k); err == nil && validName(k.Name) {
			return h.onKick(k)
		}
	case sigDirect, sigDirectCopy:
		var p directPayload
		if err := json.Unmarshal(s.Body, &p); err == nil {
			return h.onDirect(p, s.Kind == sigDirectCopy)
		}
	}
	h.log.Warn("signal ignored: not one of ours", "kind", s.Kind)
	return 0
}

// fromBroker hands a broker event to the hub. It runs on a broker
// goroutine, never on run's.
func (h *Hub) fromBroker(ev brokerEvent) {
	select {
	case h.inbound <- queued{r: &ev}:
	case <-h.done:
	}
}

// handle applies a broker event (a request; see Hub).
func (ev *brokerEvent) handle(h *Hub) { h.handleBroker(ev) }

// publish sends c's message to its room through the broker, once per id
// when c gave one (ack.go). Failures, now or later, reach c as an error
// event. Must only be called from run.
func (h *Hub) publish(c *Client, msg, id string, action bool) {
	m := Envelope{Room: c.room.name, From: c.name, Message: msg, Action: action}
	if who := c.modName(); who != c.name {
		m.Sender = who
	}
	if id != "" {
		m.MsgID = msgIDOf(c.sender, id)
		h.sendOnce(m, waiter{c: c, id: id})
		return
	}
	_, err := h.publishAs(m, func(p Published) {
		if p.Err != nil {
			h.submit(clientRequest{c: c, cmd: failCmd{notDelivered(p.Err)}})
		}
	})
	if err != nil {
		h.deliver(c, errorEvent(notDelivered(err)))
	}
}

// publishAs hands m (room, sender, text and flags set; the rest is
// filled in here) to the broker and returns the id it will carry on this
// node, or the error if the broker refused it at once.
// done, if not nil, hears the outcome from a broker goroutine (see
// Broker.Publish). Ids are per process: a sequenced broker's messages get
// theirs when they arrive (so the id is 0 then), an unsequenced one's keep
// the id given here. Must only be called from run.
func (h *Hub) publishAs(m Envelope, done func(Published)) (uint64, error) {
	var id uint64
	if !h.broker.Sequenced() {
		h.nextID++
		id = h.nextID
	}
	m.ID, m.Time = id, time.Now()
	err := h.broker.Publish(m, func(p Published) {
		if p.Err != nil && !h.broker.Sequenced() {
			h.stats.undelivered.Add(1)
		}
		if done != nil {
			done(p)
		}
	})
	if err != nil {
		h.stats.undelivered.Add(1)
		return 0, err
	}
	return id, nil
}

// notDelivered explains a failed publish to its sender.
func notDelivered(err error) *protoError {
	reason := "the server could not take it"
	switch {
	case errors.Is(err, errBrokerDown):
		reason = "this server has lost its link to the cluster; try again shortly"
	case errors.Is(err, errBrokerBusy):
		reason = "the server is overloaded; try again shortly"
	case errors.Is(err, errBrokerClosed):
		reason = "the server is shutting down"
	}
	return &protoError{Code: errNotDelivered, Message: "message not delivered: " + reason}
}

// linkRoom subscribes to r, which has just been created for its first
// local member. Must only be called from run.
func (h *Hub) linkRoom(r *Room) {
	h.cl.nextSub++
	link := &roomLink{sub: h.cl.nextSub, synced: !h.broker.Sequenced(), waiting: make(map[*Client]entry)}
	h.cl.links[r.name] = link
	if rm := h.cl.remote[r.name]; rm != nil {
		r.remote = rm
	} else {
		r.remote = make(map[string]PresenceUpdate)
		h.cl.remote[r.name] = r.remote
	}
	room, sub := r.name, link.sub
	if err := h.broker.Ready(); err != nil && !errors.Is(err, errRecordsLoading) && !link.synced {
		// Do not make joiners wait for a link that may be down for long:
		// they get room_changed and the local history now, and whatever
		// the replay brings later arrives as live messages (never twice:
		// the log drops seqs it has seen).
		h.log.Warn("room joined while the cluster link is down; history may be incomplete", "room", room, "err", err)
		link.synced = true
	}
	err := h.broker.Subscribe(room, func(d Delivery) { h.fromBroker(brokerEvent{room: room, sub: sub, d: d}) })
	if err != nil {
		// Only a closed broker refuses; the room still works for
		// presence, and messages fail with an error to their sender.
		h.log.Error("subscribe failed", "room", room, "err", err)
		link.synced = true
	}
}

// unlinkRoom unsubscribes from a room whose last local member has left.
// Must only be called from run.
func (h *Hub) unlinkRoom(room string) {
	delete(h.cl.links, room)
	if len(h.cl.remote[room]) == 0 {
		delete(h.cl.remote, room)
	}
	h.broker.Unsubscribe(room)
}

// enterRoom runs when c has joined r: it sends room_changed and the
// history (or recovery), or parks c until the broker has replayed the
// room. A parked client is a member, so others see it join, but gets no
// broadcasts until its room_changed, so its member list and history are
// the start of what it sees. Must only be called from run.
func (h *Hub) enterRoom(c *Client, r *Room, e entry) {
	c.waiting = false
	if link := h.cl.links[r.name]; link != nil && !link.synced {
		c.waiting = true
		link.waiting[c] = e
		return
	}
	l := h.history.get(r.name)
	rl := h.roleOf(c)
	c.showSeq = c.format == formatText && rl >= roleModerator
	h.deliver(c, roomChangedEvent(r, c.name, rl, l.epoch, l.last, e.id))
	h.replayHistory(c, r.name, e.connecting)
}

// handleBroker applies one broker event. Must only be called from run.
func (h *Hub) handleBroker(ev *brokerEvent) {
	if ev.pres != nil {
		h.remotePresence(*ev.pres)
		return
	}
	link := h.cl.links[ev.room]
	r := h.rooms[ev.room]
	if link == nil || link.sub != ev.sub || r == nil {
		return // from a subscription that has since ended
	}
	switch ev.d.Kind {
	case DeliverMessage:
		m := ev.d.Msg
		id := m.ID
		if h.broker.Sequenced() || id == 0 {
			h.nextID++
			id = h.nextID
		}
		var key msgKey
		if m.MsgID != "" {
			key = msgKey{ev.room, m.MsgID}
		}
		rec, err := h.history.recordAt(ev.room, ev.d.Epoch, id, m, key)
		switch {
		case err != nil:
			h.log.Error("message not kept", "room", ev.room, "err", err)
			h.unsent(key, err)
			return
		case rec.o == nil:
			return // already seen
		}
		h.stats.messages.Add(1)
		if !m.Bot {
			who := m.Sender
			if who == "" {
				who = m.From
			}
			h.mod.noteSent(ev.room, who, m.Time) // slow mode counts every node's senders
		}
		if rec.held {
			return // broadcast and acked once it is on disk (storedRequest)
		}
		if link.synced {
			h.broadcast(r, rec.o, nil)
		}
		if key.msgID != "" && !h.broker.Sequenced() {
			h.sequenced(key, rec.seq, rec.epoch) // a sequenced broker acks through its PubAck
		}
	case DeliverSynced:
		if ev.d.Epoch != "" {
			h.history.adopt(ev.room, ev.d.Epoch)
		}
		if link.synced {
			return
		}
		link.synced = true
		for c, e := range link.waiting {
			if c.active && c.room == r { // else it has moved on since
				h.enterRoom(c, r, e)
			}
		}
		link.waiting = nil
	}
}

// sharePresence tells the other nodes who is in r here now. Only a
// sequenced broker has other nodes to tell. Must only be called from run.
func (h *Hub) sharePresence(r *Room, gone map[string]LeaveMark) {
	if !h.broker.Sequenced() {
		return
	}
	h.broker.SetPresence(r.name, r.localNames(maxMembersInReply), r.people(), gone)
}

// remotePresence records another node's members of a room and tells the
// local members who came and went. Must only be called from run.
func (h *Hub) remotePresence(u PresenceUpdate) {
	rm := h.cl.remote[u.Room]
	if rm == nil {
		if u.Count <= 0 {
			return
		}
		rm = make(map[string]PresenceUpdate)
		h.cl.remote[u.Room] = rm
	}
	old := rm[u.Node]
	if u.Count > 0 {
		rm[u.Node] = u
	} else {
		delete(rm, u.Node)
	}
	r := h.rooms[u.Room]
	if r == nil {
		if len(rm) == 0 {
			delete(h.cl.remote, u.Room)
		}
		return
	}
	if r.size() > h.cfg.PresenceLimit {
		return
	}
	// A name another node already lists, or this node has, is someone
	// already here: their connection on one more node neither joins nor,
	// when it goes, leaves.
	elsewhere := func(name string) bool { return r.uses[name] > 0 || r.remoteHas(name, u.Node) }
	for _, name := range u.Names {
		if !slices.Contains(old.Names, name) && !elsewhere(name) {
			h.broadcast(r, presenceEvent(presenceNote{room: r, event: "join", name: name}), nil)
		}
	}
	for _, name := range old.Names {
		if !slices.Contains(u.Names, name) && !elsewhere(name) {
			mark := h.mod.takeMark(r.name, name, time.Now())
			if m, ok := u.Gone[name]; ok { // the leaving node's word: it saw the kick
				mark = &kickMark{by: m.By, reason: m.Reason, banned: m.Banned, at: time.Now()}
			}
			h.leaves = append(h.leaves, presenceNote{room: r, event: "leave", name: name, mark: mark})
		}
	}
}

// remoteRooms adds to infos the rooms that have members only on other
// nodes. Must only be called from run.
func (h *Hub) remoteRooms(infos []roomInfo) []roomInfo {
	for room, rm := range h.cl.remote {
		if h.rooms[room] != nil {
			continue
		}
		n := 0
		for _, u := range rm {
			n += u.Count
		}
		if n > 0 {
			infos = append(infos, roomInfo{Name: room, Members: n})
		}
	}
	return infos
}

// openCluster connects to NATS for cfg (defaults applied), or returns a
// nil broker when cfg names no NATS URL.
func openCluster(cfg Config, log *slog.Logger) (Broker, error) {
	if cfg.NATSURL == "" {
		return nil, nil
	}
	if cfg.DataDir != "" {
		return nil, errors.New("-data-dir and -nats-url cannot be combined: with NATS, JetStream keeps the history")
	}
	b, err := newNATSBroker(natsOptions{
		URL:          cfg.NATSURL,
		Prefix:       cfg.NATSPrefix,
		Replicas:     cfg.NATSReplicas,
		Node:         cfg.NodeName,
		History:      max(cfg.History, 1),
		Interval:     cfg.PresenceInterval,
		DedupeWindow: cfg.DedupeWindow,
		Log:          log,
	})
	if err != nil {
		return nil, fmt.Errorf("cluster: %w", err)
	}
	return b, nil
}

// defaultNodeName is the host name with a random suffix, so that two
// processes on one host are still two nodes.
func defaultNodeName() string {
	host, err := os.Hostname()
	if err != nil || !validIdent(host, 40) {
		host = "node"
	}
	return host + "-" + strings.ToLower(newEpoch()[:6])
}

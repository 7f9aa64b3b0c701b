package main

import (
	"cmp"
	"context"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"hubbub/internal/wsconn"
)

// Hub owns every client and room. One goroutine, run, is the only one that
// reads or writes its maps and the hub-owned fields of Client and Room;
// everything else talks to it through channels. That is the whole
// concurrency design: no mutex guards chat state, and a slow client can
// never hold up the hub because the hub never blocks on one.
type Hub struct {
	cfg Config
	log *slog.Logger

	// Owned by run. No other goroutine may touch these.
	clients   map[*Client]struct{} // connected and in a room
	closing   map[*Client]struct{} // let go of, but its connection has not yet reported its end
	rooms     map[string]*Room
	leaves    []presenceNote // presence to announce once the current event is done
	nextID    uint64         // id of the next chat message
	draining  bool           // Shutdown has begun: no new members
	history   *historyBook   // per-room seq, epoch and recent messages (history.go)
	broker    Broker         // carries messages and presence (cluster.go); safe from any goroutine
	ownBroker bool           // broker is the private memory broker attachBroker made
	cl        clusterState   // room subscriptions and remote members (cluster.go)

	register chan *Client // from serveWs, after the upgrade
	// inbound carries chat messages and commands from clients' readers,
	// and each connection's end (opGone): one FIFO, so that a client
	// leaving never overtakes the requests it made before.
	inbound chan request
	quit    chan struct{} // closed by Shutdown: say goodbye to everyone
	kill    chan struct{} // closed by Shutdown when its deadline passes
	done    chan struct{} // closed when run returns

	quitOnce, killOnce sync.Once

	// registered reports whether a name belongs to a registered user, so
	// that guests cannot rename to it. Set before run starts; safe to call
	// from run. Nil means no names are reserved.
	registered func(name string) bool
	stats      hubStats
	m          *metrics // this hub's Prometheus instruments (metrics.go)
}

// hubStats are counters read by tests and, later, metrics. Atomic so they can
// be read from any goroutine without asking the hub.
type hubStats struct {
	slowConsumers atomic.Uint64 // clients evicted because their queue was full
	messages      atomic.Uint64 // chat messages delivered by the broker
	undelivered   atomic.Uint64 // chat messages the broker refused or lost (sender told)
	conns         atomic.Int64  // gauge: clients whose connection has not yet ended; set by run
	panics        atomic.Uint64 // panics recovered in connection goroutines
}

// presenceNote is a join, leave or rename waiting to be announced.
type presenceNote struct {
	room    *Room
	event   string
	name    string
	oldName string
}

// newHub returns a hub for cfg (defaults applied) on the opened
// dependencies d. The caller starts run in a goroutine and must call
// Shutdown to stop it.
func newHub(cfg Config, log *slog.Logger, d deps) *Hub {
	h := &Hub{
		cfg:      cfg,
		log:      log,
		clients:  make(map[*Client]struct{}),
		closing:  make(map[*Client]struct{}),
		rooms:    make(map[string]*Room),
		history:  newHistoryBook(cfg, d.store, log),
		register: make(chan *Client),
		inbound:  make(chan request, 1024),
		quit:     make(chan struct{}),
		kill:     make(chan struct{}),
		done:     make(chan struct{}),
		m:        newMetrics(),
	}
	h.attachBroker(d.broker)
	return h
}

// run is the hub goroutine. It returns after Shutdown once every client's
// connection has reported its end, so no connection goroutine outlives it.
func (h *Hub) run() {
	if h.ownBroker {
		// The hub made this broker, so it starts and stops it. Closed after
		// done (defers run last-first): a delivery blocked on inbound then
		// gives up instead of holding Close.
		h.startBroker()
		defer h.broker.Close()
	}
	defer close(h.done)
	quit, kill := h.quit, h.kill
	ping := time.NewTicker(h.cfg.PingPeriod) // one for all clients: see pingAll
	defer ping.Stop()
	for {
		select {
		case <-ping.C:
			h.pingAll()
		case c := <-h.register:
			h.m.connectsTotal.Inc()
			h.add(c)
		case r := <-h.inbound:
			h.handle(r)
		case <-quit:
			quit = nil
			h.draining = true
			for c := range h.clients {
				h.disconnect(c, dcShutdown)
			}
		case <-kill:
			kill = nil
			// The drain took too long: cut every remaining connection so
			// that it ends at once and reports in.
			for c := range h.clients {
				c.conn.Abort()
			}
			for c := range h.closing {
				c.conn.Abort()
			}
		}
		h.announceLeaves()
		h.m.connections.Set(float64(len(h.clients)))
		h.m.rooms.Set(float64(len(h.rooms)))
		h.stats.conns.Store(int64(len(h.clients) + len(h.closing)))
		if h.draining && len(h.clients) == 0 && len(h.closing) == 0 {
			return
		}
	}
}

// startBroker starts the delivery goroutine of the memory broker the hub
// made for itself; a no-op for any other broker and when already started.
// NewServer calls it before starting run, so a server's goroutines are all
// there when NewServer returns (leak checks compare counts).
func (h *Hub) startBroker() {
	if mb, ok := h.broker.(*memoryBroker); ok && h.ownBroker {
		mb.start()
	}
}

// submit hands a request to the hub. It returns false once the hub has
// stopped, so the caller can exit instead of blocking forever.
func (h *Hub) submit(r request) bool {
	r.at = time.Now()
	select {
	case h.inbound <- r:
		return true
	case <-h.done:
		return false
	}
}

// registerClient hands a new client to the hub. It returns false if the hub
// has stopped; the caller then owns the connection and must close it.
func (h *Hub) registerClient(c *Client) bool {
	select {
	case h.register <- c:
		return true
	case <-h.done:
		return false
	}
}

// gone tells the hub that c's connection is over, for reason d. It
// travels on inbound behind c's last requests, so that a message sent just
// before a close frame, /quit or a dropped connection is still delivered.
func (h *Hub) gone(c *Client, d wsconn.Disconnect) {
	select {
	case h.inbound <- request{c: c, op: opGone, end: d}:
	case <-h.done:
	}
}

// pingAll asks every client's connection for a ping. Pings come from this
// one ticker in the hub rather than a timer per connection: at tens of
// thousands of idle connections a timer each is memory for nothing, and
// the hub already knows every live client. Must only be called from run.
func (h *Hub) pingAll() {
	for c := range h.clients {
		c.conn.Ping()
	}
}

// Shutdown closes every connection with 1001 (going away) after its queue
// is written, and waits for every connection to end. If ctx ends first, the
// remaining connections are cut and Shutdown returns ctx's error once their
// goroutines are gone. Safe to call more than once.
func (h *Hub) Shutdown(ctx context.Context) error {
	h.quitOnce.Do(func() { close(h.quit) })
	select {
	case <-h.done:
		return nil
	case <-ctx.Done():
	}
	h.killOnce.Do(func() { close(h.kill) })
	<-h.done
	return fmt.Errorf("hub drain: %w", ctx.Err())
}

// add takes a newly connected client into its first room.
// Must only be called from run.
func (h *Hub) add(c *Client) {
	h.clients[c] = struct{}{}
	c.active = true
	if h.draining {
		h.disconnect(c, dcShutdown)
		return
	}
	c.name = c.wantName
	if c.name == "" {
		c.name = guestName()
	}
	h.join(c, c.wantRoom, true)
}

// disconnect lets go of c for reason d: c leaves its room and the client
// set, is counted under d's label, and its connection closes with d
// (queued events first, then the close frame). It is the one way the hub
// ends a connection and the one place drops are counted (disconnect.go
// lists the reasons). A client already let go of is left alone, so a
// reason is never counted twice. Must only be called from run.
func (h *Hub) disconnect(c *Client, d wsconn.Disconnect) {
	if !c.active {
		return
	}
	c.active = false
	if c.room != nil {
		h.leave(c)
	}
	delete(h.clients, c)
	h.closing[c] = struct{}{}
	if d.Label != "" {
		depth := c.conn.Len()
		if d.Label == "slow_consumer" {
			// The queue was full when the push failed; by now the writer
			// may have taken some of it, which says nothing about the drop.
			depth = h.cfg.SendQueue
		}
		h.m.drop(d.Label, depth)
	}
	c.conn.Close(d)
}

// deliver queues o for c without ever blocking. A client whose queue is full
// is disconnected as a slow consumer: it was not keeping up, and waiting for
// it would stall every other client. Must only be called from run.
func (h *Hub) deliver(c *Client, o *outbound) {
	if !c.active {
		return
	}
	msg := o.json
	if c.format == formatText {
		msg = o.text
	}
	if msg == nil {
		return // an event for the other format only (text help lines)
	}
	if _, err := c.conn.Push(msg); err == wsconn.ErrQueueFull {
		h.stats.slowConsumers.Add(1)
		c.logger().Info("evicting slow consumer", "name", c.name, "queue", h.cfg.SendQueue)
		h.disconnect(c, dcSlowConsumer(h.cfg.SendQueue))
	}
}

// broadcast delivers o to every member of r except skip (which may be nil).
// o is encoded once and shared. Must only be called from run.
func (h *Hub) broadcast(r *Room, o *outbound, skip *Client) {
	for m := range r.members {
		if m != skip && !m.waiting {
			h.deliver(m, o)
		}
	}
}

// handle carries out one client request. Must only be called from run.
func (h *Hub) handle(r request) {
	defer h.m.handled(r.at)
	if r.api != nil {
		h.serveAPI(r.api)
		return
	}
	if r.op == opBroker {
		h.handleBroker(r.bk)
		return
	}
	c := r.c
	if r.op == opGone {
		// The connection is over. If the hub had not let go of c yet, the
		// connection ended it (1009, pong timeout, …) or the peer did:
		// count it and take c out of its room now.
		h.disconnect(c, r.end)
		delete(h.closing, c)
		return
	}
	if !c.active {
		return // disconnected while the request was queued
	}
	switch r.op {
	case opSay:
		h.m.received[c.format].Inc()
		h.publish(c, r.arg) // broadcast when the broker hands it back
	case opJoin:
		if c.room != nil && c.room.name == r.arg {
			h.fail(c, errAlreadyThere, "you are already in %s", r.arg)
			return
		}
		h.join(c, r.arg, false)
	case opNick:
		h.rename(c, r.arg)
	case opWho:
		h.deliver(c, membersEvent("members", c.room, ""))
	case opRooms:
		h.deliver(c, h.roomsEvent())
	case opHelp:
		for _, line := range helpLines {
			h.deliver(c, textOnly(line))
		}
	case opFail:
		h.deliver(c, errorEvent(r.err))
	case opKick:
		h.disconnect(c, dcFlooding)
	case opQuit:
		h.disconnect(c, dcBye) // what is queued goes out first, then the close
	}
}

// fail sends c an error event. Must only be called from run.
func (h *Hub) fail(c *Client, code, format string, args ...any) {
	h.deliver(c, errorEvent(&protoError{Code: code, Message: fmt.Sprintf(format, args...)}))
}

// join moves c into the room called name, creating it if needed. When c is
// connecting and its name is taken there, it gets a free variant and is
// told; when it is switching rooms, the switch is refused instead so it
// never loses a name it already had. Must only be called from run.
func (h *Hub) join(c *Client, name string, connecting bool) {
	target := h.rooms[name]
	newName := c.name
	if target != nil && target.taken(newName, c) {
		if !connecting {
			h.fail(c, errNameTaken, "%s is taken in %s; choose another name first", c.name, name)
			return
		}
		newName = freeName(target, c.name)
		h.fail(c, errNameTaken, "%s is taken in %s; you are %s", c.name, name, newName)
	}
	if c.room != nil {
		h.leave(c)
	}
	if target == nil {
		target = newRoom(name)
		h.rooms[name] = target
		h.linkRoom(target)
	}
	c.name = newName
	target.add(c)
	c.room = target
	h.sharePresence(target)
	h.enterRoom(c, target, connecting) // room_changed and history, now or once the room is synced
	if len(target.members) <= h.cfg.PresenceLimit {
		h.broadcast(target, presenceEvent(presenceNote{room: target, event: "join", name: c.name}), c)
	}
}

// leave takes c out of its room, deleting the room if it is now empty, and
// queues the leave notice. The notice goes out after the current event so
// that a disconnect inside a broadcast never starts a nested broadcast.
// Must only be called from run.
func (h *Hub) leave(c *Client) {
	r := c.room
	r.remove(c)
	c.room = nil
	h.sharePresence(r)
	if len(r.members) == 0 {
		delete(h.rooms, r.name)
		h.unlinkRoom(r.name)
		h.history.emptied(r.name)
		return
	}
	if len(r.members) < h.cfg.PresenceLimit {
		h.leaves = append(h.leaves, presenceNote{room: r, event: "leave", name: c.name})
	}
}

// announceLeaves sends the queued leave notices. A notice can disconnect a
// slow client and so queue another; the loop runs until none are left, and
// ends because each client is disconnected at most once. Must only be called from run.
func (h *Hub) announceLeaves() {
	for len(h.leaves) > 0 {
		n := h.leaves[0]
		h.leaves = h.leaves[1:]
		if h.rooms[n.room.name] == n.room { // the room may have emptied meanwhile
			h.broadcast(n.room, presenceEvent(n), nil)
		}
	}
	h.leaves = nil
}

// rename gives c a new name in its room. Must only be called from run.
func (h *Hub) rename(c *Client, name string) {
	if e := h.renameRefused(c, name); e != nil {
		h.deliver(c, errorEvent(e))
		return
	}
	r := c.room
	if r.taken(name, c) {
		h.fail(c, errNameTaken, "%s is taken in %s", name, r.name)
		return
	}
	old := c.name
	c.name = name
	r.rename(c, old)
	h.sharePresence(r)
	ev := presenceEvent(presenceNote{room: r, event: "rename", name: name, oldName: old})
	if len(r.members) <= h.cfg.PresenceLimit {
		h.broadcast(r, ev, nil)
	} else {
		h.deliver(c, ev) // the renamer always hears that it worked
	}
}

// roomsEvent lists rooms by name with their member counts.
// Must only be called from run.
func (h *Hub) roomsEvent() *outbound {
	infos := make([]roomInfo, 0, len(h.rooms))
	for _, r := range h.rooms {
		infos = append(infos, roomInfo{Name: r.name, Members: r.size()})
	}
	infos = h.remoteRooms(infos)
	slices.SortFunc(infos, func(a, b roomInfo) int { return cmp.Compare(a.Name, b.Name) })
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
	}{infos}, b.String())
}

// membersEvent builds room_changed (name set: the recipient's own name) or
// members (name empty) for r.
func membersEvent(typ string, r *Room, name string) *outbound {
	names := r.memberNames(maxMembersInReply)
	list := strings.Join(names, ", ")
	size := r.size()
	if len(names) < size {
		list += ", …"
	}
	var text string
	if typ == "room_changed" {
		text = fmt.Sprintf("* you are %s in %s (%d members: %s)", name, r.name, size, list)
	} else {
		text = fmt.Sprintf("* members of %s (%d): %s", r.name, size, list)
	}
	return newOutbound(typ, roomPayload{Room: r.name, Name: name, Members: names, Count: size}, text)
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
	return newOutbound("presence",
		presencePayload{Room: n.room.name, Event: n.event, Name: n.name, OldName: n.oldName}, text)
}

// helpLines is the text-mode answer to /help.
var helpLines = []string{
	"* commands: /join ROOM, /nick NAME, /who, /rooms, /help, /quit",
	"* anything else you type is sent to your current room",
}

// guestName makes a nickname for a client that gave none. Uniqueness within
// a room is enforced by join, not here.
func guestName() string {
	return fmt.Sprintf("guest-%04x", rand.IntN(0x10000))
}

// freeName finds a variant of name that nobody in r uses: name-2, name-3, …
// trimmed so the result stays a valid name.
func freeName(r *Room, name string) string {
	for i := 2; ; i++ {
		suffix := "-" + strconv.Itoa(i)
		base := name[:min(len(name), maxNameLen-len(suffix))]
		if cand := base + suffix; !r.taken(cand, nil) {
			return cand
		}
	}
}

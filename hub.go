package main

import (
	"cmp"
	"context"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"slices"
	"strconv"
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
//
// Where the hub's handlers live. run takes one thing at a time from its
// channels; every request on inbound carries its own handler (request's
// handle method), and a client's command is handled by its run method:
//
//	from         request / command   handler                    then
//	register     *Client             Hub.add (hub.go)           Hub.join
//	client       sayCmd              command.go                 Hub.publish (cluster.go): out to the broker
//	client       joinCmd             command.go                 Hub.join: rooms, presence, Hub.replayHistory (history.go)
//	client       nickCmd             command.go                 Hub.rename, Hub.renameRefused (hub.go)
//	client       whoCmd, roomsCmd    command.go                 membersEvent, roomsEvent (events.go)
//	client       helpCmd, failCmd    command.go                 Hub.deliver
//	client       quitCmd, floodCmd   command.go                 Hub.disconnect (hub.go; reasons in disconnect.go)
//	connection   goneRequest         hub.go                     Hub.disconnect: counted if the connection ended it
//	broker       *brokerEvent        Hub.handleBroker (cluster.go)  historyBook.recordAt (history.go), Hub.broadcast
//	HTTP API     *apiCall            Hub.serveAPI (api.go)      Hub.publishAs (cluster.go)
//	ticker       —                   Hub.pingSome (hub.go)
//	Shutdown     quit, kill          run (hub.go)               Hub.disconnect(dcShutdown), then Abort
//
// Adding a request kind: docs/ARCHITECTURE.md has the checklist.
type Hub struct {
	cfg Config
	log *slog.Logger

	// Owned by run. No other goroutine may touch these.
	clients   map[*Client]struct{} // connected and in a room
	closing   map[*Client]struct{} // let go of, but its connection has not yet reported its end
	rooms     map[string]*Room
	leaves    []presenceNote // presence to announce once the current event is done
	nextID    uint64         // id of the next chat message
	apiSeq    uint64         // names API messages sent without an Idempotency-Key (api.go)
	pingTurn  uint64         // counts clients in, to deal them into ping slots
	draining  bool           // Shutdown has begun: no new members
	history   *historyBook   // per-room seq, epoch and recent messages (history.go)
	broker    Broker         // carries messages and presence (cluster.go); safe from any goroutine
	ownBroker bool           // broker is the private memory broker attachBroker made
	cl        clusterState   // room subscriptions and remote members (cluster.go)
	mod       *modState      // bans, mutes, slow mode and tombstone records (moderation.go)
	// named indexes the clients by the folded name moderation knows them
	// by (Client.modName: the login, else the nickname), for kicks, bans
	// and direct messages. A login shown under a variant (carol-2, where a
	// guest held carol first) is indexed under carol.
	named map[string]map[*Client]struct{}

	register chan *Client // from serveWs, after the upgrade
	// inbound carries every request: clients' commands, each connection's
	// end, broker deliveries, API calls. One FIFO, so that a client
	// leaving never overtakes the commands it sent before.
	inbound chan queued
	quit    chan struct{} // closed by Shutdown: say goodbye to everyone
	kill    chan struct{} // closed by Shutdown when its deadline passes
	done    chan struct{} // closed when run returns

	quitOnce, killOnce sync.Once

	// registered reports whether a name belongs to a registered user, so
	// that guests cannot rename to it. Set before run starts; safe to call
	// from run. Nil means no names are reserved.
	registered func(name string) bool
	// userRole is the role the users file gives an account (moderation.go);
	// like registered, set before run starts. Nil: nobody has a role.
	userRole func(account string) role
	stats    hubStats
	m        *metrics // this hub's Prometheus instruments (metrics.go)
}

// hubStats are counters read by tests. Atomic so they can
// be read from any goroutine without asking the hub.
type hubStats struct {
	slowConsumers atomic.Uint64 // clients evicted because their queue was full
	messages      atomic.Uint64 // chat messages delivered by the broker
	undelivered   atomic.Uint64 // chat messages the broker refused or lost (sender told)
	conns         atomic.Int64  // gauge: clients whose connection has not yet ended; set by run
	panics        atomic.Uint64 // panics recovered in connection goroutines
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
		named:    make(map[string]map[*Client]struct{}),
		register: make(chan *Client),
		inbound:  make(chan queued, 1024),
		quit:     make(chan struct{}),
		kill:     make(chan struct{}),
		done:     make(chan struct{}),
		m:        newMetrics(),
	}
	h.mod = newModState(h.m.modEntries)
	h.attachBroker(d.broker)
	if d.store != nil {
		d.store.SetOnCommit(h.fromStore)
		recs, err := d.store.loadModeration()
		if err != nil {
			log.Error("moderation not restored: bans, mutes and slow modes are lost", "err", err)
		}
		h.restoreModeration(recs)
	}
	return h
}

// run is the hub goroutine. It returns after Shutdown once every client's
// connection has reported its end, so no connection goroutine outlives it.
//
// A panic here is deliberately not recovered, unlike one in a connection's
// goroutines (wsconn). The hub owns every map, and a panic can strike
// between two updates that belong together — a client deleted from its
// room but not from the client set — after which nothing could tell which
// invariants still hold. Carrying on would trade a crash for silent
// corruption (lost messages, leaked goroutines), so the process exits and
// its supervisor restarts a clean server.
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
	ping := time.NewTicker(max(h.cfg.PingPeriod/pingSlots, time.Millisecond)) // one for all clients: see pingSome
	defer ping.Stop()
	sweep := time.NewTicker(h.cfg.ModerationSweep)
	defer sweep.Stop()
	counts := time.NewTicker(h.cfg.PresenceInterval) // big rooms' member counts: see announceCounts
	defer counts.Stop()
	slot := 0
	for {
		select {
		case <-ping.C:
			h.pingSome(slot)
			slot = (slot + 1) % pingSlots
		case now := <-sweep.C:
			h.sweepModeration(now)
		case <-counts.C:
			h.announceCounts()
		case c := <-h.register:
			h.m.connectsTotal.Inc()
			h.add(c)
		case q := <-h.inbound:
			h.handle(q)
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

// request is one thing for the hub to do. Its handle method is the hub's
// handler for it (see the index on Hub) and must only be called from run.
type request interface {
	handle(h *Hub)
}

// queued is a request on inbound, with when it was submitted for the hub
// latency metric (zero: not measured).
type queued struct {
	r  request
	at time.Time
}

// clientRequest is a command from c's reader, with the id the client gave
// it ("" for none): replies and errors it causes carry the id back.
type clientRequest struct {
	c   *Client
	cmd command
	id  string
}

func (r clientRequest) handle(h *Hub) {
	if !r.c.active {
		return // disconnected while the command was queued
	}
	r.cmd.run(h, r.c, r.id)
}

// goneRequest reports that c's connection is over, for reason end. If the
// hub had not let go of c yet, the connection ended it (1009, pong
// timeout, …) or the peer did: disconnect counts it and takes c out of its
// room now. Either way nothing of c is left to wait for.
type goneRequest struct {
	c   *Client
	end wsconn.Disconnect
}

func (r goneRequest) handle(h *Hub) {
	h.disconnect(r.c, r.end)
	delete(h.closing, r.c)
}

// submit hands a request to the hub. It returns false once the hub has
// stopped, so the caller can exit instead of blocking forever.
func (h *Hub) submit(r request) bool {
	select {
	case h.inbound <- queued{r: r, at: time.Now()}:
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
	case h.inbound <- queued{r: goneRequest{c, d}}:
	case <-h.done:
	}
}

// pingSome asks the connections of the clients in ping slot slot for a
// ping. Pings come from one ticker in the hub rather than a timer per
// connection: at tens of thousands of idle connections a timer each is
// memory for nothing, and the hub already knows every live client. The
// ticker runs pingSlots times per PingPeriod and each tick pings one slot,
// so every client is pinged once a period, and never all at once: a ping
// starts a writer goroutine and its pong a reader helper, each with a
// stack of its own for a moment, and twenty thousand of them at once
// would leave their memory in the process's RSS long after they are gone
// (measured in docs/BENCHMARKS.md). Must only be called from run.
func (h *Hub) pingSome(slot int) {
	for c := range h.clients {
		if int(c.pingSlot) == slot {
			c.conn.Ping()
		}
	}
}

// pingSlots is how many groups pings are spread over within a PingPeriod.
const pingSlots = 32

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
	h.pingTurn++
	c.pingSlot = uint8(h.pingTurn % pingSlots)
	name := c.wantName
	if name == "" {
		name = guestName()
	}
	h.setName(c, name)
	c.sender = c.name
	if c.account != "" {
		c.sender = c.account
	}
	if r := h.mod.restriction(recBan, c.wantRoom, c.modName(), time.Now()); r != nil {
		// Banned since the handshake looked (serveWs): it is refused now.
		h.deliver(c, errorEvent(banError(r)))
		h.disconnect(c, dcBanned(*r))
		return
	}
	h.join(c, c.wantRoom, true, "")
}

// setName gives c the name name, keeping the name index. Must only be
// called from run.
func (h *Hub) setName(c *Client, name string) {
	h.unindex(c)
	c.name = name
	key := fold(c.modName())
	set := h.named[key]
	if set == nil {
		set = make(map[*Client]struct{})
		h.named[key] = set
	}
	set[c] = struct{}{}
}

// unindex takes c out of the name index. Must only be called from run,
// before c's name changes.
func (h *Hub) unindex(c *Client) {
	key := fold(c.modName())
	if set := h.named[key]; set != nil {
		delete(set, c)
		if len(set) == 0 {
			delete(h.named, key)
		}
	}
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
	h.unindex(c)
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
		if c.showSeq && o.seq > 0 {
			if o.seqText == nil {
				o.seqText = withSeq(o.text, o.seq)
			}
			msg = o.seqText
		}
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

// handle carries out one request. Must only be called from run.
func (h *Hub) handle(q queued) {
	defer h.m.handled(q.at)
	q.r.handle(h)
}

// fail sends c an error event answering its event id ("" for none).
// Must only be called from run.
func (h *Hub) fail(c *Client, id, code, format string, args ...any) {
	h.deliver(c, errorEvent(&protoError{Code: code, Message: fmt.Sprintf(format, args...), ID: id}))
}

// join moves c into the room called name, creating it if needed. When c is
// connecting and its name is taken there, it gets a free variant and is
// told; when it is switching rooms, the switch is refused instead so it
// never loses a name it already had. id is the change_room event's id, if
// any, for the reply. Must only be called from run.
func (h *Hub) join(c *Client, name string, connecting bool, id string) {
	target := h.rooms[name]
	newName := c.name
	if target != nil && target.taken(newName, c) {
		if !connecting {
			h.fail(c, id, errNameTaken, "%s is taken in %s; choose another name first", c.name, name)
			return
		}
		newName = freeName(target, c.name)
		h.fail(c, id, errNameTaken, "%s is taken in %s; you are %s", c.name, name, newName)
	}
	if c.room != nil {
		h.leave(c)
	}
	if target == nil {
		target = newRoom(name)
		h.rooms[name] = target
		h.linkRoom(target)
	}
	h.setName(c, newName)
	arrived := target.add(c) && !target.remoteHas(c.name, "") // not another tab of someone here
	c.room = target
	h.mod.clearMark(name, c.modName())
	h.sharePresence(target, nil)
	h.enterRoom(c, target, entry{connecting: connecting, id: id}) // room_changed and history, now or once the room is synced
	if arrived && len(target.members) <= h.cfg.PresenceLimit {
		h.broadcast(target, presenceEvent(presenceNote{room: target, event: "join", name: c.name}), c)
	}
}

// leave takes c out of its room, deleting the room if it is now empty, and
// queues the leave notice. The notice goes out after the current event so
// that a disconnect inside a broadcast never starts a nested broadcast.
// Must only be called from run.
func (h *Hub) leave(c *Client) {
	r := c.room
	last := r.remove(c) // c was this node's last connection under its name
	c.room = nil
	var mark *kickMark
	var gone map[string]LeaveMark
	if last {
		if mark = h.mod.takeMark(r.name, c.modName(), time.Now()); mark != nil {
			gone = map[string]LeaveMark{c.name: mark.leaveMark()} // so that every node marks it
		}
	}
	h.sharePresence(r, gone)
	if len(r.members) == 0 {
		delete(h.rooms, r.name)
		h.unlinkRoom(r.name)
		h.history.emptied(r.name)
		return
	}
	if last && !r.remoteHas(c.name, "") && len(r.members) < h.cfg.PresenceLimit {
		h.leaves = append(h.leaves, presenceNote{room: r, event: "leave", name: c.name, mark: mark})
	}
}

// announceCounts tells every room above the presence limit, which gets no
// join or leave notices, how many people are in it, when that has changed
// since it was last told; and a room that has shrunk back to the limit
// once more, since from then on its notices resume. Must only be called
// from run.
func (h *Hub) announceCounts() {
	for _, r := range h.rooms {
		if sum, _ := r.summed(); sum <= h.cfg.PresenceLimit && r.told <= h.cfg.PresenceLimit {
			continue // the common case, without size's deduplication: size <= sum
		}
		n := r.size()
		if n == r.told || (n <= h.cfg.PresenceLimit && r.told <= h.cfg.PresenceLimit) {
			continue
		}
		r.told = n
		h.broadcast(r, countEvent(r.name, n), nil)
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

// rename gives c a new name in its room. id is the change_name event's id,
// if any: the renamer's own copy of the notice carries it. Must only be
// called from run.
func (h *Hub) rename(c *Client, name, id string) {
	if e := h.renameRefused(c, name); e != nil {
		h.deliver(c, errorEvent(e.withID(id)))
		return
	}
	r := c.room
	if r.taken(name, c) {
		h.fail(c, id, errNameTaken, "%s is taken in %s", name, r.name)
		return
	}
	old := c.name
	h.setName(c, name)
	if c.account == "" {
		c.sender = name // it asked for this name
	}
	h.mod.renamed(r.name, old, name) // slow mode keeps counting the guest's last message
	r.rename(c, old)
	h.sharePresence(r, nil)
	note := presenceNote{room: r, event: "rename", name: name, oldName: old}
	if len(r.members) <= h.cfg.PresenceLimit {
		h.broadcast(r, presenceEvent(note), c)
	}
	h.deliver(c, presenceReply(note, id)) // the renamer always hears that it worked
}

// renameRefused says why c may not take name, or returns nil. A logged-in
// client keeps the name its login gave it; a guest may not take a
// registered user's name. Must only be called from Hub.run.
func (h *Hub) renameRefused(c *Client, name string) *protoError {
	switch {
	case c.account != "":
		return &protoError{Code: errNameLocked, Message: "you are logged in as " + c.account + "; your name comes from your login"}
	case h.registered != nil && h.registered(name):
		return &protoError{Code: errNameReserved, Message: name + " is a registered name; log in to use it"}
	}
	now := time.Now()
	if r := h.mod.restriction(recBan, c.room.name, name, now); r != nil {
		e := banError(r)
		e.Message = "the name " + name + " is banned here: " + e.Message
		return e
	}
	if r := h.mod.restriction(recMute, c.room.name, c.name, now); r != nil {
		e := muteError(r) // a new name would shake off the mute
		e.Message += "; your name stays until then"
		return e
	}
	return nil
}

// roomList returns every room with members on any node, with its member
// count, sorted by name. Must only be called from run.
func (h *Hub) roomList() []roomInfo {
	infos := make([]roomInfo, 0, len(h.rooms))
	for _, r := range h.rooms {
		infos = append(infos, roomInfo{Name: r.name, Members: r.size()})
	}
	infos = h.remoteRooms(infos)
	slices.SortFunc(infos, func(a, b roomInfo) int { return cmp.Compare(a.Name, b.Name) })
	return infos
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

// hubbub.js is the hubbub chat client without a page: an ES module that
// speaks the WebSocket protocol of docs/PROTOCOL.md and touches no DOM.
//
// It owns what must stay right across lost connections: the socket and
// its reconnect backoff, the resume cursor (epoch and newest seq per
// room), the set of messages already handed to the page, and the outbox
// that makes every message the user sends arrive once. static/app.js
// subscribes to its events and renders them; jstest/ runs it under
// node --test with a fake WebSocket, fake timers and a fake storage, all
// passed in through the options of Client.
//
// Events (EventTarget; each is a CustomEvent whose detail is described):
//
//   status    {state, retryAt, waitingForNetwork, close}: state is
//             "connecting", "online", "reconnecting" or "offline";
//             retryAt is when the next attempt starts (ms, 0: none);
//             close is the last close {code, reason} since online, or null.
//   joined    {room, name, members, count, epoch, seq, moved, reconnect,
//             role}: a room_changed; moved: a different room than the one
//             shown, so the page clears its view; reconnect: first join on
//             a new socket after an earlier one was online; role: ours,
//             "moderator", "admin" or "".
//   message   {message, history, local}: a new_message payload to show,
//             never one shown before (by epoch and seq). history: it came
//             in a history event. local: the outbox id of the entry it is
//             the echo of, when it is one of ours. A deleted message comes
//             as its tombstone: {seq, epoch, room, deleted: true, by},
//             without its sender or text. An action (/me) has action: true.
//   deleted   {room, epoch, seq, by}: a message already shown was deleted
//             (a live message_deleted, or a tombstone replayed for it).
//   moderation the moderation payload (kick, ban, mute, delete, slow mode
//             and their undoing), plus mine: it confirms our request.
//   direct    {message, peer, mine}: a direct_message payload, once per
//             id (the sender gets a copy on each of its connections);
//             peer is the other side of the conversation, mine: we sent it.
//   recovery  the recovery payload, plus resumedFrom {epoch, seq}.
//   presence, rooms, members: the payloads as the server sent them.
//   error     an error payload, plus request (the type of our request it
//             answers, when it carried an id); outbox errors are not
//             repeated here, they arrive as outbox events.
//   closed    {code, reason, wasOnline, opened, ended}: the socket ended
//             without the page asking for it. ended is "kicked" (close
//             4000) or "banned" (close 4003, or a reconnect refused with
//             403 because of a ban, code 403 then): the client has stopped
//             and does not reconnect on its own; rejoin does, when the
//             user asks. "" otherwise.
//   outbox    {change, entry, duplicate}: change is "added", "failed",
//             "retrying", "sent" or "removed"; entry is a snapshot
//             {id, room, text, action, at, state, code, error, retryAt,
//             seq, epoch}. A message refused for slow mode stays
//             "sending", with code slow_mode and retryAt when it goes again.

export const MAX_FRAME = 512; // the server's read limit for one client frame, in bytes
export const MAX_CHARS = 400; // the server refuses longer messages (too_long)
export const BACKOFF_MIN_MS = 500; // the first reconnect waits 250–500 ms
export const BACKOFF_MAX_MS = 30_000; // and no attempt waits longer than this
export const OUTBOX_MAX = 50; // messages waiting or failed, over all rooms
export const DEDUPE_WINDOW_MS = 120_000; // the server's default -dedupe-window
export const ECHO_WAIT_MS = 2_000; // how long an ack and its echo may be apart
export const ID_LEN = 15; // every message id: 8 random characters, "-", a 6-digit counter
export const STORAGE_KEY = "hubbub.outbox";
export const CLOSE_KICKED = 4000; // the server's close code for a kick: no reconnect on our own
export const CLOSE_BANNED = 4003; // and for a ban, which also refuses the reconnect (HTTP 403)
export const DIRECT_KEEP = 200; // direct messages kept per conversation, newest last
export const MODERATOR_ROLES = ["moderator", "admin"]; // the roles that may moderate a room

// The outbox paces itself below the server's default budget (-msg-rate 10,
// -msg-burst 20), leaving room for the page's own list requests, and has at
// most SEND_WINDOW messages unanswered at once.
const SEND_BURST = 10;
const SEND_PER_SEC = 5;
const SEND_WINDOW = 4;
const RATE_PAUSE_MS = 1_000; // first pause after rate_limited; doubles to BACKOFF_MAX_MS
const NOT_DELIVERED_TRIES = 5; // not_delivered answers before a message is "not sent"
const SHOWN_MAX = 10_000; // remembered epoch:seq keys; older ones cannot come back
const ID_RE = /^[A-Za-z0-9_.:-]{1,64}$/;
const SLOW_MAX_MS = 86_400_000; // the longest slow mode the server sets (24 h)
const DIRECT_SEEN_MAX = 10_000; // remembered direct message ids
const DIRECT_PENDING_MAX = 50; // our send_direct requests remembered for their errors

const encoder = new TextEncoder();

// backoffDelay is how long to wait before reconnect attempt number attempt
// (0 for the first): the ceiling doubles from BACKOFF_MIN_MS up to
// BACKOFF_MAX_MS and the wait is spread over its upper half, so a crowd
// dropped at once does not come back at once.
export function backoffDelay(attempt, random = Math.random) {
  const ceiling = Math.min(BACKOFF_MAX_MS, BACKOFF_MIN_MS * 2 ** attempt);
  return ceiling / 2 + random() * (ceiling / 2);
}

// closeBackoff is the backoff step a close code starts from: 1008 (this
// page flooded the server) waits 1–2 s at least, 1013 (it fell behind)
// 0.5–1 s, anything else the usual 250–500 ms.
export function closeBackoff(code) {
  if (code === 1008) return 2;
  if (code === 1013) return 1;
  return 0;
}

// messageFrame is the frame that sends text with id; action makes it an
// action ("/me waves" is sent as "waves" with action).
export function messageFrame(id, text, action = false) {
  const payload = action ? { message: text, action: true } : { message: text };
  return JSON.stringify({ type: "send_message", id, payload });
}

// directFrame is the frame that sends text to the user to with id.
export function directFrame(id, to, text) {
  return JSON.stringify({ type: "send_direct", id, payload: { to, message: text } });
}

// frameBytes is the size in UTF-8 bytes of the frame that sends text (as
// an action with action). Ids all have ID_LEN characters, so this is
// exact for every message.
export function frameBytes(text, action = false) {
  return encoder.encode(messageFrame("x".repeat(ID_LEN), text, action)).length;
}

// sendable says why text cannot be sent as it is ("empty", "too_long"),
// or "" when it can; to makes it the check for a direct message to to.
export function sendable(text, { action = false, to = "" } = {}) {
  if (typeof text !== "string" || text.trim() === "") return "empty";
  const bytes = to ? encoder.encode(directFrame("x".repeat(ID_LEN), to, text)).length : frameBytes(text, action);
  if ([...text].length > MAX_CHARS || bytes > MAX_FRAME) return "too_long";
  return "";
}

// canModerate says whether role (room_changed's) may moderate.
export function canModerate(role) {
  return MODERATOR_ROLES.includes(role);
}

// connectQuery is the query of a /ws connect: the room, the format, the
// ticket if there is one (else the name), and since/epoch when resuming.
export function connectQuery({ room, name, ticket, resume }) {
  const q = new URLSearchParams({ room, format: "json" });
  if (ticket) q.set("ticket", ticket);
  else if (name) q.set("name", name);
  if (resume && resume.epoch) { // the server wants both or neither
    q.set("since", String(resume.seq));
    q.set("epoch", resume.epoch);
  }
  return q.toString();
}

// defaultStorage is sessionStorage when the environment has one and lets
// us use it (a sandboxed page may throw on access), else null.
function defaultStorage() {
  try {
    return globalThis.sessionStorage ?? null;
  } catch {
    return null;
  }
}

// Client is one chat connection with its outbox. Options, all optional
// but url:
//
//   url        the /ws endpoint, "ws://host/ws"
//   ticket     async () => string: a ticket or token for this connect
//              ("" for none: connect with the name). Called before every
//              attempt; if it throws, the attempt is retried with backoff.
//   onRefused  async () => void: called before retrying after a socket
//              that never opened (a refused handshake); it may call stop.
//   WebSocket, setTimeout, clearTimeout, now, random: the environment's
//              by default; tests pass fakes.
//   fetch      the environment's fetch by default: after a refused
//              handshake, a plain GET of the same address (with a fresh
//              ticket) reads why, since a browser's WebSocket cannot; a
//              ban (403) stops the client. null: no such look.
//   storage    where the outbox is kept ({getItem, setItem}); the
//              page's sessionStorage by default, null for none.
//   dedupeWindow, outboxMax: DEDUPE_WINDOW_MS and OUTBOX_MAX by default.
export class Client extends EventTarget {
  // The environment.
  #url;
  #WS;
  #setTimeout;
  #clearTimeout;
  #now;
  #random;
  #storage;
  #ticket;
  #onRefused;
  #fetch;
  #dedupeWindow;
  #outboxMax;

  // The connection.
  #stopped = true; // no connection wanted: before start, after stop
  #ws = null; // the current socket, or null
  #gen = 0; // connect attempts; an attempt that is no longer the latest gives up
  #conn = 0; // sockets created; an outbox entry's wire names the one it went out on
  #online = false; // the socket is open and we are in a room
  #everOnline = false; // some earlier socket was online: the next join is a reconnect
  #attempt = 0; // failed attempts since the last join, for backoff
  #network = true; // what the page last said about the network
  #retryTimer = null;
  #status = { state: "offline", retryAt: 0, waitingForNetwork: false, close: null };
  #lastClose = null; // {code, reason} of the last unasked-for close, until the next join
  #ended = null; // {code, reason, kind} when the server ended us for good (kick, ban), until rejoin
  #probed = false; // a refusal since the last join was looked at (whyRefused)

  // Who and where.
  #room = ""; // the room we are in, or ask for at connect
  #asked = ""; // the name we ask for: the one given to start, or our last rename
  #me = ""; // the name the server says we have
  #identity = ""; // whose outbox entries are ours: the user, else the asked name
  #identityIsName = true; // the identity follows the asked name (guests)
  #pendingRoom = ""; // asked for with change_room, not confirmed yet
  #role = ""; // ours, as the last room_changed said: "moderator", "admin" or ""
  #requests = new Map(); // id -> type of our requests that carry an id (room, name, moderation, direct)

  // What has been seen.
  #cursors = new Map(); // room -> {epoch, seq} of the newest message received there
  #viewRoom = ""; // the room whose messages the page shows
  #shown = new Set(); // "epoch:seq" of the messages handed to the page in viewRoom
  #resumeFrom = null; // {epoch, seq} the current socket asked to resume from
  #joinedAt = null; // {epoch, seq} its room_changed said, applied after recovery

  // Direct messages.
  #directSeen = new Set(); // ids of the direct messages handed to the page
  #conversations = new Map(); // peer -> direct_message payloads, oldest first, DIRECT_KEEP at most
  #directPending = new Map(); // id -> {to, message} of our send_direct requests with no answer yet

  // The outbox.
  #prefix; // random per Client, so ids are unique per sender
  #counter = 0;
  #entries = []; // unsettled entries, oldest first: state "sending" or "failed"
  #held = new Map(); // key -> {message, history, timer}: own messages waiting for their ack
  #awaiting = new Map(); // key -> {entry, timer}: acked entries waiting for their echo
  #tokens = SEND_BURST;
  #tokensAt = 0;
  #pausedUntil = 0; // no message goes out before this (after rate_limited)
  #rateStrikes = 0; // rate_limited answers since the last ack
  #pumpTimer = null;
  #pumping = false; // pump is running; a nested call asks it to go round again
  #pumpAgain = false;

  constructor(opts = {}) {
    super();
    this.#url = opts.url;
    this.#WS = opts.WebSocket ?? globalThis.WebSocket;
    this.#setTimeout = opts.setTimeout ?? globalThis.setTimeout.bind(globalThis);
    this.#clearTimeout = opts.clearTimeout ?? globalThis.clearTimeout.bind(globalThis);
    this.#now = opts.now ?? Date.now;
    this.#random = opts.random ?? Math.random;
    this.#storage = opts.storage !== undefined ? opts.storage : defaultStorage();
    this.#ticket = opts.ticket ?? null;
    this.#onRefused = opts.onRefused ?? null;
    this.#fetch = opts.fetch !== undefined ? opts.fetch : (globalThis.fetch?.bind(globalThis) ?? null);
    this.#dedupeWindow = opts.dedupeWindow ?? DEDUPE_WINDOW_MS;
    this.#outboxMax = opts.outboxMax ?? OUTBOX_MAX;
    this.#prefix = randomPrefix(this.#random);
    this.#load();
  }

  // ---- what the page reads ----

  get active() { return !this.#stopped; } // started and not stopped
  get online() { return this.#online; }
  get everOnline() { return this.#everOnline; }
  get room() { return this.#room; }
  get me() { return this.#me; }
  get pendingRoom() { return this.#pendingRoom; }
  get status() { return { ...this.#status }; }
  get role() { return this.#role; }
  get canModerate() { return canModerate(this.#role); }
  get ended() { return this.#ended ? { ...this.#ended } : null; } // {code, reason, kind} after a kick or ban

  // conversations lists the direct conversations, the most recent first:
  // {peer, last}, last being the newest direct_message payload.
  conversations() {
    return [...this.#conversations].map(([peer, msgs]) => ({ peer, last: { ...msgs[msgs.length - 1] } }))
      .sort((a, b) => (a.last.time < b.last.time ? 1 : a.last.time > b.last.time ? -1 : 0));
  }

  // conversation returns the direct messages exchanged with peer, oldest
  // first.
  conversation(peer) {
    return (this.#conversations.get(peer) ?? []).map((m) => ({ ...m }));
  }

  // cursor returns {epoch, seq} of the newest message received in room,
  // which the next resume of that room starts from, or undefined.
  cursor(room) {
    const c = this.#cursors.get(room);
    return c ? { ...c } : undefined;
  }

  // outbox returns our unsettled entries for room (all rooms if omitted),
  // oldest first.
  outbox(room) {
    return this.#entries.filter((e) => this.#ours(e) && (room === undefined || e.room === room)).map(snapshot);
  }

  // on calls fn with the detail of every event of type, and returns a
  // function that stops it.
  on(type, fn) {
    const listener = (e) => fn(e.detail);
    this.addEventListener(type, listener);
    return () => this.removeEventListener(type, listener);
  }

  // ---- what the page asks for ----

  // start connects to room as name (guests), or as user with the tickets
  // from the ticket option; user also names whose outbox is ours (empty:
  // the name the server gives us). It begins afresh: the first join is
  // not a resume, and the page gets a new view even of the same room.
  start({ room, name = "", user = "" }) {
    this.#everOnline = false;
    this.#viewRoom = "";
    this.#shown.clear();
    this.#ended = null;
    this.#probed = false;
    this.#role = "";
    this.#directSeen.clear();
    this.#conversations.clear();
    this.#directPending.clear();
    this.#room = room;
    this.#asked = name;
    this.#me = ""; // until the server says
    this.#identityIsName = !user;
    this.#identity = user || name;
    this.#stopped = false;
    this.#attempt = 0;
    this.#connect();
  }

  // stop closes the socket (1000 bye) and stops reconnecting. The outbox
  // is kept.
  stop() {
    this.#stopped = true;
    this.#clearRetry();
    this.#gen++;
    const ws = this.#ws;
    this.#ws = null;
    this.#online = false;
    this.#settleView();
    if (ws) {
      this.#lostWith(this.#conn);
      ws.close(1000, "bye");
    }
    this.#setStatus("offline");
  }

  // rejoin connects again after the server ended the connection (a kick)
  // or the page stopped it, keeping the view: the reconnect resumes where
  // the last connection left off. A ban still in force refuses it, and
  // the client stops again with ended "banned".
  rejoin() {
    if (!this.#stopped || !this.#room) return;
    this.#ended = null;
    this.#probed = false;
    this.#lastClose = null;
    this.#stopped = false;
    this.#attempt = 0;
    this.#connect();
  }

  // reconnectNow skips the backoff wait; the page calls it when the
  // network or the tab comes back.
  reconnectNow() {
    if (this.#stopped || this.#ws) return;
    this.#attempt = 0;
    this.#connect();
  }

  // setNetwork tells the module whether the browser thinks it is online.
  // While it is not, no attempt is scheduled; when it is back, one starts
  // at once.
  setNetwork(up) {
    this.#network = !!up;
    if (this.#network) {
      this.reconnectNow();
    } else if (!this.#ws && !this.#stopped) {
      this.#clearRetry();
      this.#setStatus("offline", { waitingForNetwork: true });
    }
  }

  // send puts text in the outbox for the current room and sends it as
  // soon as it can; action sends it as an action (/me). It returns {ok:
  // true, entry} or {ok: false, reason} with reason "empty", "too_long",
  // "stopped" or "full".
  send(text, { action = false } = {}) {
    action = action === true;
    const why = this.#stopped ? "stopped" : sendable(text, { action });
    if (why) return { ok: false, reason: why };
    if (this.#entries.length >= this.#outboxMax) return { ok: false, reason: "full" };
    const e = {
      id: this.#nextId(), room: this.#room, text, action, at: this.#now(), owner: this.#identity,
      state: "sending", code: "", error: "", tries: 0, notBefore: 0, wire: 0,
      firstSent: 0, firstAs: "", lost: false, seq: 0, epoch: "",
    };
    this.#entries.push(e);
    this.#save();
    this.#emit("outbox", { change: "added", entry: snapshot(e) });
    this.#pump();
    return { ok: true, entry: snapshot(e) };
  }

  // retry sends a failed entry again, with its original id.
  retry(id) {
    const e = this.#entry(id);
    if (!e || e.state !== "failed") return false;
    Object.assign(e, { state: "sending", code: "", error: "", tries: 0, notBefore: 0, firstSent: 0, lost: false });
    this.#save();
    this.#emit("outbox", { change: "retrying", entry: snapshot(e) });
    this.#pump();
    return true;
  }

  // discard drops a failed entry from the outbox.
  discard(id) {
    const e = this.#entry(id);
    if (!e || e.state !== "failed") return false;
    this.#entries.splice(this.#entries.indexOf(e), 1);
    this.#save();
    this.#emit("outbox", { change: "removed", entry: snapshot(e) });
    return true;
  }

  // changeRoom asks to move to room; false when not connected.
  changeRoom(room) {
    if (!this.#request("change_room", { name: room }, true)) return false;
    this.#pendingRoom = room;
    return true;
  }

  // rename asks for a new name; false when not connected.
  rename(name) {
    return this.#request("change_name", { name }, true);
  }

  // request sends any other event (list_rooms, list_members); false when
  // not connected.
  request(type, payload) {
    return this.#request(type, payload, false);
  }

  // sendDirect sends text to the logged-in user to. It returns {ok: true,
  // id} (the event id, which an error answering it carries) or {ok:
  // false, reason}: "empty", "too_long", "no_recipient" or "offline".
  // Direct messages are not kept in the outbox: the server holds none
  // for later, so one sent offline could only reach a user who is gone.
  sendDirect(to, text) {
    if (typeof to !== "string" || !to) return { ok: false, reason: "no_recipient" };
    const why = sendable(text, { to });
    if (why) return { ok: false, reason: why };
    const id = this.#ask("send_direct", { to, message: text });
    if (!id) return { ok: false, reason: "offline" };
    this.#directPending.set(id, { to, message: text });
    if (this.#directPending.size > DIRECT_PENDING_MAX) this.#directPending.delete(this.#directPending.keys().next().value);
    return { ok: true, id };
  }

  // The moderation requests. Each returns its event id, which the
  // confirmation (a moderation event with mine) or the error answering
  // it carries, or "" when not connected. opts may hold reason, room (the
  // current one by default) and server (server-wide, admins only);
  // durations and intervals are Go duration strings ("10m", "1h").
  kick(name, opts = {}) { return this.#moderate("kick", { name, ...opts }); }
  ban(name, duration, opts = {}) { return this.#moderate("ban", { name, duration, ...opts }); }
  unban(name, opts = {}) { return this.#moderate("unban", { name, ...opts }); }
  mute(name, duration, opts = {}) { return this.#moderate("mute", { name, duration, ...opts }); }
  unmute(name, opts = {}) { return this.#moderate("unmute", { name, ...opts }); }
  // deleteMessage deletes message seq; opts.epoch names the history it is
  // in, so that a reset history's seq is not taken for it.
  deleteMessage(seq, opts = {}) { return this.#moderate("delete_message", { seq, ...opts }); }
  // slowMode sets the room's slow mode: one message per interval from
  // each sender; "off" turns it off.
  slowMode(interval, opts = {}) { return this.#moderate("slow_mode", { interval, ...opts }); }

  #moderate(type, payload) {
    const p = {};
    for (const [k, v] of Object.entries(payload)) if (v !== undefined && v !== "" && v !== false) p[k] = v;
    return this.#ask(type, p);
  }

  // ---- the socket ----

  #isOpen() {
    return !!this.#ws && this.#ws.readyState === this.#WS.OPEN;
  }

  #request(type, payload, withId) {
    if (!this.#isOpen()) return false;
    if (withId) return this.#ask(type, payload) !== "";
    const ev = { type };
    if (payload !== undefined) ev.payload = payload;
    this.#ws.send(JSON.stringify(ev));
    return true;
  }

  // ask sends a request with an id, remembered with its type until the
  // answer comes, and returns the id; "" when not connected.
  #ask(type, payload) {
    if (!this.#isOpen()) return "";
    const id = this.#nextId();
    this.#requests.set(id, type);
    const ev = { type, id };
    if (payload !== undefined) ev.payload = payload;
    this.#ws.send(JSON.stringify(ev));
    return id;
  }

  async #connect() {
    this.#clearRetry();
    if (this.#ws || this.#stopped) return;
    const gen = ++this.#gen;
    this.#setStatus(this.#everOnline ? "reconnecting" : "connecting");
    let ticket = "";
    if (this.#ticket) {
      try {
        ticket = await this.#ticket();
      } catch {
        if (gen === this.#gen && !this.#stopped) this.#retryLater(false);
        return;
      }
      if (gen !== this.#gen || this.#stopped || this.#ws) return;
    }
    const cur = this.#cursors.get(this.#room);
    this.#resumeFrom = this.#everOnline && cur && cur.epoch ? { ...cur } : null;
    this.#joinedAt = null;
    const q = connectQuery({ room: this.#room, name: this.#asked, ticket, resume: this.#resumeFrom });
    let ws;
    try {
      ws = new this.#WS(`${this.#url}?${q}`);
    } catch {
      this.#retryLater(false);
      return;
    }
    this.#ws = ws;
    const conn = ++this.#conn;
    let opened = false;
    ws.onopen = () => { opened = true; };
    ws.onmessage = (e) => { if (ws === this.#ws) this.#onFrame(e.data); };
    ws.onclose = (e) => {
      if (ws !== this.#ws) return;
      this.#ws = null;
      const wasOnline = this.#online;
      this.#online = false;
      this.#lostWith(conn);
      this.#settleView();
      this.#requests.clear(); // their answers went with the socket
      this.#directPending.clear();
      this.#lastClose = { code: e.code, reason: e.reason || "" };
      const ended = e.code === CLOSE_KICKED ? "kicked" : e.code === CLOSE_BANNED ? "banned" : "";
      if (ended && !this.#stopped) {
        // A moderator's decision: coming back on our own would be a
        // reconnect loop (a ban refuses it) or would undo the kick.
        this.#stopped = true;
        this.#clearRetry();
        this.#ended = { code: e.code, reason: e.reason || "", kind: ended };
      }
      this.#emit("closed", { code: e.code, reason: e.reason || "", wasOnline, opened, ended });
      if (this.#stopped) {
        this.#setStatus("offline");
        return;
      }
      this.#attempt = Math.max(this.#attempt, closeBackoff(e.code));
      if (!opened && this.#fetch && !this.#probed) this.#refused();
      else this.#retryLater(!opened);
    };
  }

  // retryLater schedules the next attempt after backoffDelay. After a
  // socket that never opened it first lets the page look into why.
  #retryLater(refused) {
    if (this.#stopped) return;
    const wait = backoffDelay(this.#attempt, this.#random);
    this.#attempt++;
    if (!this.#network) {
      this.#setStatus("offline", { waitingForNetwork: true }); // setNetwork(true) reconnects
      return;
    }
    this.#setStatus(this.#everOnline ? "reconnecting" : "connecting", { retryAt: this.#now() + wait });
    this.#retryTimer = this.#setTimeout(async () => {
      this.#retryTimer = null;
      if (refused && this.#onRefused) {
        const gen = this.#gen;
        await this.#onRefused();
        if (this.#stopped || gen !== this.#gen) return;
      }
      this.#connect();
    }, wait);
  }

  // refused follows a handshake that failed: it asks the server why at
  // once, while the cause holds, and stops on a ban; anything else is
  // retried as usual.
  async #refused() {
    const gen = this.#gen;
    const ban = await this.#whyRefused();
    if (this.#stopped || gen !== this.#gen || this.#ws) return; // stopped, or reconnectNow went on
    if (!ban) {
      this.#retryLater(true);
      return;
    }
    this.#stopped = true;
    this.#ended = { code: 403, reason: ban, kind: "banned" };
    this.#lastClose = { code: 403, reason: ban };
    this.#emit("closed", { code: 403, reason: ban, wasOnline: false, opened: false, ended: "banned" });
    this.#setStatus("offline");
  }

  // whyRefused asks the server, with a plain GET of the connect address,
  // why it refused the last handshake, and returns the reason when it is
  // a ban (403 "you are banned …"), else "". The server checks bans
  // before it looks for an upgrade, so the GET gets the handshake's
  // answer; one that would have been let in gets 400 instead. Once the
  // server has answered, later refusals are not looked at until the next
  // join: each look costs a ticket (a login), and a ban refuses the first
  // attempt after a reload or rejoin already.
  async #whyRefused() {
    try {
      let ticket = "";
      if (this.#ticket) ticket = await this.#ticket();
      const url = this.#url.replace(/^ws/, "http");
      const q = connectQuery({ room: this.#room, name: this.#asked, ticket });
      const resp = await this.#fetch(`${url}?${q}`, { cache: "no-store" });
      this.#probed = true;
      if (resp.status !== 403) return "";
      const text = String(await resp.text()).trim();
      return text.startsWith("you are banned") ? text : "";
    } catch {
      return ""; // unreachable, or no ticket: the usual retry
    }
  }

  #clearRetry() {
    if (this.#retryTimer !== null) this.#clearTimeout(this.#retryTimer);
    this.#retryTimer = null;
  }

  #setStatus(state, { retryAt = 0, waitingForNetwork = false } = {}) {
    this.#status = { state, retryAt, waitingForNetwork, close: this.#lastClose ? { ...this.#lastClose } : null };
    this.#emit("status", this.status);
  }

  #emit(type, detail) {
    this.dispatchEvent(new CustomEvent(type, { detail }));
  }

  // onFrame splits a frame into its events (NDJSON) and handles each.
  #onFrame(data) {
    if (typeof data !== "string") return;
    for (const line of data.split("\n")) {
      if (!line.trim()) continue;
      let ev;
      try {
        ev = JSON.parse(line);
      } catch {
        continue; // not ours to fix; the next event may be fine
      }
      const p = ev && typeof ev.payload === "object" && ev.payload ? ev.payload : {};
      switch (ev && ev.type) {
        case "room_changed": this.#onRoomChanged(p); break;
        case "new_message": if (!p.room || p.room === this.#viewRoom) this.#show(p, false); break;
        case "history": this.#onHistory(p); break;
        case "recovery": this.#onRecovery(p); break;
        case "ack": this.#onAck(p); break;
        case "error": this.#onError(p); break;
        case "presence": this.#onPresence(p); break;
        case "message_deleted": this.#onDeleted(p); break;
        case "moderation": this.#onModeration(p); break;
        case "direct_message": this.#onDirect(p); break;
        case "rooms": this.#requests.delete(p.id); this.#emit("rooms", p); break;
        case "members": this.#requests.delete(p.id); this.#emit("members", p); break;
        case "presence_count": this.#emit("presence_count", p); break;
      }
    }
  }

  #onRoomChanged(p) {
    const reconnect = !this.#online && this.#everOnline;
    this.#online = true;
    this.#everOnline = true;
    this.#attempt = 0;
    this.#probed = false;
    this.#lastClose = null;
    this.#pendingRoom = "";
    this.#requests.delete(p.id);
    if (typeof p.name === "string" && p.name) this.#me = p.name;
    this.#role = typeof p.role === "string" ? p.role : "";
    if (!this.#identity && this.#me) {
      this.#identity = this.#me; // a token's user: known only now
      for (const e of this.#entries) if (!e.owner) e.owner = this.#identity;
      this.#save();
    }
    const room = String(p.room || this.#room);
    const moved = room !== this.#viewRoom;
    if (moved) {
      this.#settleView();
      this.#shown.clear();
      this.#viewRoom = room;
    }
    this.#room = room;
    const epoch = typeof p.epoch === "string" ? p.epoch : "";
    const seq = typeof p.seq === "number" ? p.seq : undefined;
    if (this.#resumeFrom && !moved) {
      // The replay that follows brings what we missed; the cursor moves
      // to the room's newest seq only once it has been read.
      this.#joinedAt = epoch && seq !== undefined ? { epoch, seq } : null;
    } else {
      this.#resumeFrom = null;
      if (epoch && seq !== undefined) this.#advance(room, epoch, seq);
    }
    this.#emit("joined", {
      room, name: this.#me, members: Array.isArray(p.members) ? p.members : [],
      count: typeof p.count === "number" ? p.count : undefined, epoch, seq, moved, reconnect, role: this.#role,
    });
    this.#setStatus("online");
    this.#pump();
  }

  #onHistory(p) {
    if (p.room && p.room !== this.#viewRoom) return;
    const msgs = Array.isArray(p.messages) ? p.messages : [];
    const epoch = typeof p.epoch === "string" ? p.epoch : "";
    if (epoch) this.#noteEpoch(this.#viewRoom, epoch);
    for (const m of msgs) {
      if (m && typeof m === "object") this.#show({ epoch, room: p.room, ...m }, true);
    }
    // The event's epoch is the room's current one. An empty history means
    // "nothing after seq 0" only on a resumed connection, where it holds
    // everything kept; on a join it may just be -history-on-join 0.
    const last = msgs.length ? msgs[msgs.length - 1].seq : this.#resumeFrom ? 0 : undefined;
    if (epoch && typeof last === "number") this.#advance(this.#viewRoom, epoch, last);
  }

  #onRecovery(p) {
    if (p.room && p.room !== this.#viewRoom) return;
    const from = this.#resumeFrom;
    this.#resumeFrom = null; // a later history (change_room) is a plain join
    if (this.#joinedAt) this.#advance(this.#viewRoom, this.#joinedAt.epoch, this.#joinedAt.seq);
    this.#joinedAt = null;
    this.#emit("recovery", { ...p, resumedFrom: from });
  }

  #onPresence(p) {
    const own = p.event === "rename" && (p.old_name === this.#me || this.#requests.has(p.id));
    this.#requests.delete(p.id);
    if (own) {
      this.#me = p.name;
      this.#asked = p.name; // the server's sender identity follows a rename
      if (this.#identityIsName) {
        const old = this.#identity;
        this.#identity = p.name;
        for (const e of this.#entries) if (e.owner === old) e.owner = p.name;
        this.#save();
      }
    }
    this.#emit("presence", { ...p, own });
  }

  #onError(p) {
    const e = p.id ? this.#entry(p.id) : null;
    if (e) {
      this.#entryError(e, p);
      return;
    }
    const request = p.id ? this.#requests.get(p.id) : undefined;
    if (request) this.#requests.delete(p.id);
    const direct = p.id ? this.#directPending.get(p.id) : undefined;
    if (direct) {
      this.#directPending.delete(p.id);
      this.#emit("error", { ...p, request, to: direct.to, text: direct.message });
      return;
    }
    this.#emit("error", { ...p, request });
    if (request === "change_room") {
      this.#pendingRoom = "";
      this.#pump(); // messages wait while a room change is pending
    }
  }

  // onDeleted handles message_deleted: a message of the view that is held
  // becomes its tombstone; one already shown is the page's to change.
  #onDeleted(p) {
    if (typeof p.seq !== "number" || (p.room && p.room !== this.#viewRoom)) return;
    const epoch = typeof p.epoch === "string" ? p.epoch : "";
    const room = p.room || this.#viewRoom;
    const by = typeof p.by === "string" ? p.by : "";
    const key = epoch + ":" + p.seq;
    const h = this.#held.get(key);
    if (h) {
      h.message = { seq: p.seq, epoch, room, deleted: true, by };
      return;
    }
    if (this.#shown.has(key)) this.#emit("deleted", { room, epoch, seq: p.seq, by });
  }

  #onModeration(p) {
    const mine = !!p.id && this.#requests.has(p.id);
    if (mine) this.#requests.delete(p.id);
    this.#emit("moderation", { ...p, mine });
  }

  // onDirect hands a direct message to the page once: the sender's copy
  // comes on each of its connections, and a reconnect may bring it again.
  #onDirect(p) {
    if (typeof p.id !== "string" || !p.id || typeof p.from !== "string" || typeof p.to !== "string" ||
        typeof p.message !== "string" || this.#directSeen.has(p.id)) return;
    this.#directSeen.add(p.id);
    if (this.#directSeen.size > DIRECT_SEEN_MAX) this.#directSeen.delete(this.#directSeen.values().next().value);
    const mine = p.from === this.#me || (!!this.#identity && p.from === this.#identity);
    const peer = mine ? p.to : p.from;
    if (mine) {
      for (const [id, d] of this.#directPending) {
        if (d.to === p.to && d.message === p.message) {
          this.#directPending.delete(id);
          this.#requests.delete(id);
          break;
        }
      }
    }
    const m = { id: p.id, from: p.from, to: p.to, message: p.message, time: String(p.time ?? "") };
    const list = this.#conversations.get(peer) ?? [];
    list.push(m);
    if (list.length > DIRECT_KEEP) list.shift();
    this.#conversations.delete(peer); // reinserted: the map's order is the order of activity
    this.#conversations.set(peer, list);
    this.#emit("direct", { message: { ...m }, peer, mine });
  }

  // ---- what has been seen ----

  // advance moves room's cursor to (epoch, seq): forward within an epoch,
  // or to a new epoch, which starts the cursor and the dedupe set afresh.
  #advance(room, epoch, seq) {
    if (!room || !epoch || typeof seq !== "number") return;
    this.#noteEpoch(room, epoch);
    const cur = this.#cursors.get(room);
    if (!cur || seq > cur.seq) this.#cursors.set(room, { epoch, seq });
  }

  // noteEpoch handles the news that room's history is now epoch. A new
  // epoch restarts the cursor. Dedupe keys carry their epoch, so the new
  // epoch's seqs never match the old one's; the old keys are dropped
  // only to free them, since the server stamps everything it sends with
  // the room's current epoch and they cannot come back.
  #noteEpoch(room, epoch) {
    const cur = this.#cursors.get(room);
    if (cur && cur.epoch === epoch) return;
    if (cur) {
      this.#cursors.set(room, { epoch, seq: 0 });
      if (room === this.#viewRoom) this.#shown.clear();
    }
  }

  #remember(key) {
    this.#shown.add(key);
    if (this.#shown.size > SHOWN_MAX) this.#shown.delete(this.#shown.values().next().value);
  }

  // show hands one message to the page unless it has been shown before.
  // Our own messages wait for their ack while one of ours is unanswered,
  // so the page can show the message in place of its outbox entry.
  #show(p, history) {
    const tomb = p.deleted === true;
    if (typeof p.message !== "string" && !tomb) return;
    if (typeof p.seq !== "number") {
      this.#emit("message", { message: p, history, local: "" });
      return;
    }
    const epoch = typeof p.epoch === "string" ? p.epoch : "";
    const room = p.room || this.#viewRoom;
    if (epoch) this.#noteEpoch(room, epoch);
    const key = epoch + ":" + p.seq;
    if (this.#shown.has(key)) {
      // A tombstone replayed for a message on screen: it was deleted since.
      if (tomb) this.#emit("deleted", { room, epoch, seq: p.seq, by: typeof p.by === "string" ? p.by : "" });
      return;
    }
    this.#remember(key);
    this.#advance(room, epoch, p.seq);
    const aw = this.#awaiting.get(key);
    if (aw) {
      this.#clearTimeout(aw.timer);
      this.#awaiting.delete(key);
      this.#emit("message", { message: p, history, local: aw.entry.id });
      return;
    }
    if (!tomb && (p.from === this.#me || p.from === this.#asked) && this.#unanswered() > 0) {
      const timer = this.#setTimeout(() => this.#release(key), ECHO_WAIT_MS);
      this.#held.set(key, { message: p, history, timer });
      return;
    }
    this.#emit("message", { message: p, history, local: "" });
  }

  // release hands a held message to the page as it is.
  #release(key) {
    const h = this.#held.get(key);
    if (!h) return;
    this.#clearTimeout(h.timer);
    this.#held.delete(key);
    this.#emit("message", { message: h.message, history: h.history, local: "" });
  }

  // synthesize shows an acked entry whose echo will not come (a duplicate
  // ack, a socket lost in between) as the message it became.
  #synthesize(key) {
    const aw = this.#awaiting.get(key);
    if (!aw) return;
    this.#clearTimeout(aw.timer);
    this.#awaiting.delete(key);
    const e = aw.entry;
    if (e.room !== this.#viewRoom || this.#shown.has(key)) return;
    this.#remember(key); // not the cursor: we never received it
    this.#emit("message", {
      message: { id: 0, seq: e.seq, epoch: e.epoch, room: e.room, from: this.#me || this.#asked,
        message: e.text, time: new Date(e.at).toISOString(), ...(e.action ? { action: true } : {}) },
      history: false, local: e.id,
    });
  }

  // settleView hands over everything held for the view, before it changes
  // or its socket is gone.
  #settleView() {
    for (const key of [...this.#held.keys()]) this.#release(key);
    for (const key of [...this.#awaiting.keys()]) this.#synthesize(key);
  }

  // ---- the outbox ----

  #nextId() {
    this.#counter++;
    return this.#prefix + "-" + this.#counter.toString(36).padStart(6, "0");
  }

  #entry(id) {
    return this.#entries.find((e) => e.id === id) || null;
  }

  #ours(e) {
    return e.owner === this.#identity || !e.owner;
  }

  // unanswered counts our messages out on the current socket with no
  // answer yet.
  #unanswered() {
    let n = 0;
    for (const e of this.#entries) if (e.wire === this.#conn && this.#ws) n++;
    return n;
  }

  // lostWith marks the messages out on socket conn as lost with it: the
  // server may or may not have taken them.
  #lostWith(conn) {
    let changed = false;
    for (const e of this.#entries) {
      if (e.wire === conn) {
        e.wire = 0;
        e.lost = true;
        changed = true;
      }
    }
    if (changed) this.#save();
  }

  // pump sends what the outbox may send now, in order: entries of the
  // current room, within the send window and the pace, none before an
  // earlier one that must wait.
  #pump() {
    if (this.#pumping) {
      this.#pumpAgain = true; // a listener of an event pump sent
      return;
    }
    this.#pumping = true;
    try {
      do {
        this.#pumpAgain = false;
        this.#pumpOnce();
      } while (this.#pumpAgain);
    } finally {
      this.#pumping = false;
    }
  }

  #pumpOnce() {
    if (this.#pumpTimer !== null) this.#clearTimeout(this.#pumpTimer);
    this.#pumpTimer = null;
    if (!this.#online || !this.#isOpen() || this.#pendingRoom) return;
    const now = this.#now();
    if (now < this.#pausedUntil) {
      this.#pumpLater(this.#pausedUntil - now);
      return;
    }
    this.#tokens = Math.min(SEND_BURST, this.#tokens + ((now - this.#tokensAt) * SEND_PER_SEC) / 1000);
    this.#tokensAt = now;
    let out = this.#unanswered();
    for (const e of this.#entries) {
      if (e.state !== "sending" || e.room !== this.#room || !this.#ours(e) || e.wire === this.#conn) continue;
      if (e.lost && (now - e.firstSent > this.#dedupeWindow || e.firstAs !== this.#identity)) {
        // A resend now would be a second copy if the first got through:
        // the server no longer remembers the id, or knows us by another name.
        this.#fail(e, { code: "unconfirmed", message: "not confirmed: it may or may not have been delivered" });
        continue;
      }
      if (e.notBefore > now) {
        this.#pumpLater(e.notBefore - now);
        break;
      }
      if (out >= SEND_WINDOW) break; // an answer pumps again
      if (this.#tokens < 1) {
        this.#pumpLater(((1 - this.#tokens) * 1000) / SEND_PER_SEC);
        break;
      }
      this.#tokens--;
      out++;
      e.wire = this.#conn;
      if (e.code === "slow_mode") e.code = e.error = ""; // its wait is over
      if (!e.firstSent) {
        e.firstSent = now;
        e.firstAs = this.#identity;
      }
      this.#save(); // before it goes: a reload must find it in doubt
      this.#ws.send(messageFrame(e.id, e.text, e.action));
    }
  }

  #pumpLater(ms) {
    if (this.#pumpTimer !== null) this.#clearTimeout(this.#pumpTimer);
    this.#pumpTimer = this.#setTimeout(() => {
      this.#pumpTimer = null;
      this.#pump();
    }, Math.max(0, ms));
  }

  #onAck(p) {
    const e = typeof p.id === "string" ? this.#entry(p.id) : null;
    if (!e) return; // a second ack for a settled entry, or not ours
    this.#entries.splice(this.#entries.indexOf(e), 1);
    this.#save();
    e.state = "sent";
    e.wire = 0;
    e.seq = typeof p.seq === "number" ? p.seq : 0;
    e.epoch = typeof p.epoch === "string" ? p.epoch : "";
    this.#rateStrikes = 0;
    this.#emit("outbox", { change: "sent", entry: snapshot(e), duplicate: p.duplicate === true });
    if (e.seq && e.room === this.#viewRoom) {
      // One socket's messages are acked in seq order: held ones before
      // this seq are someone else's under our name (another tab).
      for (const [k, h2] of this.#held) {
        if (h2.message.epoch === e.epoch && h2.message.seq < e.seq) this.#release(k);
      }
      const key = e.epoch + ":" + e.seq;
      const h = this.#held.get(key);
      if (h) {
        this.#clearTimeout(h.timer);
        this.#held.delete(key);
        this.#emit("message", { message: h.message, history: h.history, local: e.id });
      } else if (!this.#shown.has(key)) {
        // The echo comes on this socket unless the server had it before.
        this.#awaiting.set(key, { entry: e, timer: this.#setTimeout(() => this.#synthesize(key), ECHO_WAIT_MS) });
        if (p.duplicate === true) this.#synthesize(key);
      }
    }
    this.#answered();
  }

  // entryError handles an error answering one of our messages:
  // not_delivered is retried with backoff (NOT_DELIVERED_TRIES answers at
  // most), rate_limited pauses the outbox and retries without limit,
  // slow_mode waits the retry_after_ms it says and goes again, and
  // anything else (muted, banned among them) is final: the entry is "not
  // sent" until retried.
  #entryError(e, p) {
    if (e.wire !== this.#conn) return; // answers an attempt already given up
    e.wire = 0;
    if (!e.lost) e.firstSent = 0; // its only attempt is known not taken
    const now = this.#now();
    if (p.code === "not_delivered" && ++e.tries < NOT_DELIVERED_TRIES) {
      e.notBefore = now + backoffDelay(e.tries - 1, this.#random);
    } else if (p.code === "slow_mode") {
      const wait = Math.min(SLOW_MAX_MS, Math.max(0, Number(p.retry_after_ms) || 1000));
      e.notBefore = now + wait;
      e.code = "slow_mode";
      e.error = String(p.message || "slow mode");
      this.#emit("outbox", { change: "waiting", entry: snapshot(e) });
    } else if (p.code === "rate_limited") {
      this.#pausedUntil = now + Math.min(BACKOFF_MAX_MS, RATE_PAUSE_MS * 2 ** this.#rateStrikes);
      this.#rateStrikes++;
      this.#tokens = 0;
      this.#tokensAt = now;
    } else {
      this.#fail(e, p);
    }
    this.#save();
    this.#answered();
  }

  #fail(e, p) {
    e.state = "failed";
    e.wire = 0;
    e.code = String(p.code || "error");
    e.error = String(p.message || p.code || "error");
    this.#save();
    this.#emit("outbox", { change: "failed", entry: snapshot(e) });
  }

  // answered follows any answer: with nothing of ours out any more, what
  // is held is someone else's; and the outbox may go on.
  #answered() {
    if (this.#unanswered() === 0) for (const key of [...this.#held.keys()]) this.#release(key);
    this.#pump();
  }

  // ---- persistence ----

  // save writes the unsettled entries to storage, so that they survive a
  // reload. Storage that is full or off is not an error: the outbox then
  // lives as long as the page.
  #save() {
    if (!this.#storage) return;
    const entries = this.#entries.map((e) => ({
      id: e.id, room: e.room, text: e.text, action: e.action, at: e.at, owner: e.owner, state: e.state, code: e.code,
      error: e.error, firstSent: e.firstSent, firstAs: e.firstAs,
      lost: e.lost || e.wire !== 0, // after a reload, an unanswered attempt is lost
    }));
    try {
      this.#storage.setItem(STORAGE_KEY, JSON.stringify({ v: 1, entries }));
    } catch { /* full or forbidden */ }
  }

  #load() {
    if (!this.#storage) return;
    let saved;
    try {
      saved = JSON.parse(this.#storage.getItem(STORAGE_KEY) || "null");
    } catch {
      return;
    }
    if (!saved || saved.v !== 1 || !Array.isArray(saved.entries)) return;
    for (const s of saved.entries.slice(0, this.#outboxMax)) {
      if (!s || typeof s.id !== "string" || !ID_RE.test(s.id) || typeof s.room !== "string" ||
          typeof s.text !== "string" || sendable(s.text, { action: s.action === true }) || this.#entry(s.id)) continue;
      this.#entries.push({
        id: s.id, room: s.room, text: s.text, action: s.action === true, at: Number(s.at) || this.#now(),
        owner: String(s.owner || ""),
        state: s.state === "failed" ? "failed" : "sending", code: String(s.code || ""), error: String(s.error || ""),
        tries: 0, notBefore: 0, wire: 0, firstSent: Number(s.firstSent) || 0, firstAs: String(s.firstAs || ""),
        lost: !!s.lost, seq: 0, epoch: "",
      });
    }
  }
}

// randomPrefix is 8 random characters from [0-9a-z] (41 bits), from
// crypto.getRandomValues where there is one: with the counter after it,
// ids do not repeat for one sender, across pages and reloads.
function randomPrefix(random) {
  const n = new Uint32Array(8);
  if (globalThis.crypto && typeof globalThis.crypto.getRandomValues === "function") {
    globalThis.crypto.getRandomValues(n);
  } else {
    for (let i = 0; i < n.length; i++) n[i] = Math.floor(random() * 2 ** 32);
  }
  let p = "";
  for (const v of n) p += (v % 36).toString(36);
  return p;
}

// snapshot is the part of an entry the page may see.
function snapshot(e) {
  return { id: e.id, room: e.room, text: e.text, action: e.action, at: e.at, state: e.state, code: e.code,
    error: e.error, retryAt: e.state === "sending" && e.code === "slow_mode" ? e.notBefore : 0, seq: e.seq, epoch: e.epoch };
}

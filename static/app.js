// hubbub browser client. Plain JavaScript, no framework and no build step.
//
// Everything a user typed reaches the page through textContent, never as
// HTML; the server's Content-Security-Policy forbids inline script besides.
// The protocol is described in docs/PROTOCOL.md: the server sends frames of
// newline-separated JSON events; we send one JSON event per frame.
"use strict";

const MAX_FRAME = 512; // the server's read limit for one client frame, in bytes
const MAX_CHARS = 400; // the server cuts messages after this many characters
const NAME_RE = /^[A-Za-z0-9_-]{1,32}$/;
const ROOM_RE = /^[A-Za-z0-9_-]{1,64}$/;
const REFRESH_MS = 10_000; // room and member lists are re-read this often
const BACKOFF_MIN_MS = 500; // first reconnect waits about this long
const BACKOFF_MAX_MS = 30_000; // and no attempt waits longer than this
const GROUP_MS = 5 * 60_000; // messages closer than this share one header
const STICKY_PX = 48; // "at the bottom" tolerance for auto-scroll

const $ = (id) => document.getElementById(id);
const ui = {
  app: $("app"), menu: $("menu"), roomTitle: $("room-title"), status: $("status"), me: $("me"),
  sidebar: $("sidebar"), backdrop: $("backdrop"), rooms: $("rooms"), roomForm: $("room-form"),
  roomInput: $("room-input"), members: $("members"), memberCount: $("member-count"),
  renamePanel: $("rename-panel"), renameForm: $("rename-form"), renameInput: $("rename-input"),
  messages: $("messages"), jump: $("jump"), composer: $("composer"), input: $("message"),
  counter: $("counter"), send: $("send"),
  gate: $("gate"), joinForm: $("join-form"), nick: $("nick"), joinRoom: $("join-room"),
  joinError: $("join-error"), showLogin: $("show-login"), loginForm: $("login-form"),
  username: $("username"), password: $("password"), loginRoom: $("login-room"),
  loginError: $("login-error"), showJoin: $("show-join"), tokenNote: $("token-note"),
  tokenError: $("token-error"),
};

const encoder = new TextEncoder();
const timeFormat = new Intl.DateTimeFormat([], { hour: "2-digit", minute: "2-digit" });
const dateFormat = new Intl.DateTimeFormat([], { dateStyle: "medium", timeStyle: "medium" });

// state is everything the page knows. Only the functions below change it.
const state = {
  mode: "guest", // what GET /auth said: guest, login or jwt
  canLogin: false, // POST /login works here (GET /auth said "login": true)
  creds: null, // {username, password} after a login; kept in memory only, for fresh tickets
  ticket: "", // a ticket not yet used (the one the login form just got)
  token: "", // jwt mode: the token from the address fragment
  nick: "", // name asked for in guest mode
  me: "", // name the server says we have
  room: "", // room we are in, or asked for at connect
  pendingRoom: "", // room asked for with change_room, not yet confirmed
  viewRoom: "", // room whose messages are on screen
  ws: null, // the live socket, or null
  gen: 0, // connection attempt counter; stale sockets compare against it
  online: false, // the socket is open and we are in a room
  everOnline: false, // some earlier socket was online: the next one is a reconnect
  attempt: 0, // failed attempts since the last success, for backoff
  refusals: 0, // handshakes refused in a row while the server was reachable
  closeNote: "", // why the last connection ended, shown in the status line until the next one is up
  resumeFrom: null, // {epoch, seq} the current connection asked to resume from, or null
  reconnectLine: null, // the "Reconnected." line of the current connection, where recovery notes go
  retryTimer: 0,
  retryAt: 0,
  countdown: 0,
  refreshTimer: 0,
  stopped: true, // no connection wanted (before joining, or after a refused login)
  cursor: new Map(), // room -> {epoch, seq} of the newest message seen there
  shown: new Set(), // "epoch:seq" keys on screen, so history never repeats a message
  rooms: [], // the last room list the server sent
  members: [],
  memberCount: 0,
  unread: 0,
};

// ---- small helpers ---------------------------------------------------------

// make builds an element with a class and text; text goes in as text only.
function make(tag, className, text) {
  const e = document.createElement(tag);
  if (className) e.className = className;
  if (text !== undefined) e.textContent = text;
  return e;
}

function store(key, value) {
  try { localStorage.setItem("hubbub." + key, value); } catch { /* storage may be off */ }
}

function recall(key) {
  try { return localStorage.getItem("hubbub." + key) || ""; } catch { return ""; }
}

// hue gives each name a stable colour, so speakers are easy to tell apart.
function hue(name) {
  let h = 0;
  for (const ch of name) h = (h * 31 + ch.codePointAt(0)) % 360;
  return h;
}

// frameBytes is the size of the frame that sending text would take: the
// UTF-8 bytes of the whole JSON envelope, exactly as it goes on the wire.
function frameBytes(text) {
  return encoder.encode(JSON.stringify({ type: "send_message", payload: { message: text } })).length;
}

// ---- status and layout -----------------------------------------------------

const statusText = {
  connecting: "connecting…",
  online: "online",
  reconnecting: "reconnecting…",
  offline: "offline",
};

function setStatus(s, detail) {
  ui.status.dataset.state = s;
  ui.status.textContent = detail || statusText[s];
  ui.status.title = ui.status.textContent; // whole, when a narrow screen cuts it
  updateComposer();
}

function setMe(name) {
  state.me = name;
  ui.me.textContent = name;
  if (document.activeElement !== ui.renameInput) ui.renameInput.value = name;
}

function setTitle() {
  const room = state.viewRoom ? "#" + state.viewRoom : "";
  ui.roomTitle.textContent = room || "\u00a0";
  ui.input.placeholder = room ? "Message " + room : "Message";
  document.title = (state.unread ? `(${state.unread}) ` : "") + (room ? room + " · " : "") + "hubbub";
}

function openDrawer(open) {
  ui.app.classList.toggle("drawer-open", open);
  ui.menu.setAttribute("aria-expanded", String(open));
  ui.backdrop.hidden = !open;
}

// ---- the message list ------------------------------------------------------

function nearBottom() {
  const m = ui.messages;
  return m.scrollHeight - m.scrollTop - m.clientHeight < STICKY_PX;
}

function toBottom() {
  ui.messages.scrollTop = ui.messages.scrollHeight;
  ui.jump.hidden = true;
}

// place inserts li, keeping the view pinned to the bottom if it was there.
function place(li, before, force) {
  const stick = force || nearBottom();
  ui.messages.insertBefore(li, before || null);
  if (stick) toBottom();
  else ui.jump.hidden = false;
}

// systemLine shows a notice (join, leave, errors) in the message list.
function systemLine(text, kind) {
  const li = make("li", "sys" + (kind ? " " + kind : ""), text);
  if (kind === "error") li.setAttribute("role", "alert");
  place(li);
  return li;
}

// clearView empties the message list for a new room.
function clearView(room) {
  ui.messages.replaceChildren();
  ui.jump.hidden = true;
  state.shown.clear();
  state.viewRoom = room;
  setTitle();
}

// remember records the newest message position seen in a room, for since=.
function remember(p) {
  if (typeof p.seq !== "number" || !p.room) return;
  const epoch = typeof p.epoch === "string" ? p.epoch : "";
  const cur = state.cursor.get(p.room);
  if (!cur || cur.epoch !== epoch || p.seq > cur.seq) state.cursor.set(p.room, { epoch, seq: p.seq });
}

// regroup hides the header of a message that follows one by the same sender
// within GROUP_MS, so a run of messages reads as one block.
function regroup(li) {
  if (!li || !li.classList.contains("msg")) return;
  const prev = li.previousElementSibling;
  const cont = !!prev && prev.classList.contains("msg") && prev.dataset.from === li.dataset.from &&
    Math.abs(Number(li.dataset.ts) - Number(prev.dataset.ts)) < GROUP_MS;
  li.classList.toggle("cont", cont);
}

// addMessage shows one new_message payload (live or from history), once.
// Messages that carry a seq are kept in seq order and never shown twice.
function addMessage(p, fromHistory) {
  if (!p || typeof p.message !== "string") return;
  if (p.room && state.viewRoom && p.room !== state.viewRoom) return;
  const hasSeq = typeof p.seq === "number";
  const epoch = typeof p.epoch === "string" ? p.epoch : "";
  if (hasSeq) {
    const key = epoch + ":" + p.seq;
    if (state.shown.has(key)) return;
    state.shown.add(key);
    remember(p);
  }
  const from = String(p.from ?? "");
  const when = new Date(p.time);
  const ts = Number.isNaN(when.getTime()) ? Date.now() : when.getTime();
  const mine = from === state.me;

  const li = make("li", "msg" + (mine ? " mine" : "") + (fromHistory ? " old" : ""));
  li.dataset.from = from;
  li.dataset.ts = String(ts);
  if (hasSeq) {
    li.dataset.seq = String(p.seq);
    li.dataset.epoch = epoch;
  }
  const avatar = make("span", "avatar", [...from][0]?.toUpperCase() || "?");
  avatar.setAttribute("aria-hidden", "true");
  avatar.style.setProperty("--hue", hue(from)); // CSSOM, which the CSP allows
  const head = make("div", "head");
  const name = make("span", "from", from);
  name.style.setProperty("--hue", hue(from));
  const time = make("time", "time", timeFormat.format(ts));
  time.dateTime = new Date(ts).toISOString();
  time.title = dateFormat.format(ts);
  head.append(name, time);
  const body = make("div", "body", p.message);
  const bubble = make("div", "bubble");
  bubble.append(head, body);
  li.append(avatar, bubble);

  // Find the place by seq: after the last message of the same epoch with a
  // smaller seq. Live messages almost always go at the end.
  let before = null;
  if (hasSeq) {
    for (let n = ui.messages.lastElementChild; n; n = n.previousElementSibling) {
      if (n.dataset.seq === undefined || n.dataset.epoch !== epoch) continue;
      if (Number(n.dataset.seq) < p.seq) break;
      before = n;
    }
  }
  place(li, before, mine && !fromHistory);
  regroup(li);
  regroup(li.nextElementSibling);

  if (!fromHistory && !mine && document.hidden) {
    state.unread++;
    setTitle();
  }
}

// ---- rooms and members -----------------------------------------------------

// renderRooms shows the room list. The current room's count comes from our
// own member list, which presence events keep up to date between refreshes.
function renderRooms(rooms) {
  if (Array.isArray(rooms)) state.rooms = rooms;
  const list = state.rooms.filter((r) => r && typeof r.name === "string" && r.name !== state.room);
  if (state.room) list.push({ name: state.room, members: Math.max(1, state.memberCount) });
  list.sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
  ui.rooms.replaceChildren(...list.map((r) => {
    const li = make("li");
    const b = make("button", "room");
    b.type = "button";
    b.dataset.room = r.name;
    b.append(make("span", "room-name", "#" + r.name), make("span", "count", String(r.members)));
    b.title = `${r.members} ${r.members === 1 ? "member" : "members"}`;
    if (r.name === state.room) {
      b.classList.add("current");
      b.setAttribute("aria-current", "true");
    }
    li.append(b);
    return li;
  }));
}

function setMembers(names, count) {
  state.members = Array.isArray(names) ? names.slice() : [];
  state.memberCount = typeof count === "number" ? count : state.members.length;
  renderMembers();
}

function renderMembers() {
  const sorted = state.members.slice().sort((a, b) => a.localeCompare(b));
  ui.members.replaceChildren(...sorted.map((n) => {
    const li = make("li", n === state.me ? "member self" : "member");
    const dot = make("span", "avatar small", [...n][0]?.toUpperCase() || "?");
    dot.setAttribute("aria-hidden", "true");
    dot.style.setProperty("--hue", hue(n));
    li.append(dot, make("span", "member-name", n));
    if (n === state.me) li.append(make("span", "you", "you"));
    return li;
  }));
  const more = state.memberCount - sorted.length;
  if (more > 0) ui.members.append(make("li", "member more", `and ${more} more`));
  ui.memberCount.textContent = String(state.memberCount);
  renderRooms();
}

// ---- server events ---------------------------------------------------------

// handlers maps each server event type to what it does to the page.
const handlers = {
  room_changed(p) {
    const first = !state.online;
    const reconnect = first && state.everOnline;
    state.online = true;
    state.everOnline = true;
    state.attempt = 0;
    state.refusals = 0;
    state.closeNote = "";
    state.pendingRoom = "";
    setMe(p.name || state.me);
    const moved = p.room !== state.viewRoom;
    state.room = p.room;
    if (moved) {
      clearView(p.room);
      systemLine(`You joined #${p.room} as ${state.me}.`);
      store("room", p.room);
      const url = new URL(location.href);
      url.searchParams.set("room", p.room);
      history.replaceState(null, "", url);
    } else if (reconnect) {
      state.reconnectLine = systemLine("Reconnected.", "ok");
    }
    if (state.mode === "guest") store("nick", state.me);
    setMembers(p.members, p.count);
    setStatus("online");
    send("list_rooms");
    startRefresh();
  },
  new_message(p) {
    addMessage(p, false);
  },
  history(p) {
    if (p.room && p.room !== state.viewRoom) return;
    const msgs = Array.isArray(p.messages) ? p.messages : [];
    for (const m of msgs) addMessage({ epoch: p.epoch, room: p.room, ...m }, true);
    // The event's epoch is the room's current one, even when the messages
    // kept from before an epoch change still carry the old one in their
    // payloads; resume from it next time (docs/PROTOCOL.md: "SEQ and E are
    // from the last new_message or history you had"). An empty history
    // means "nothing after seq 0" only on a resumed connection, where it
    // holds everything kept; on a join it may just be -history-on-join 0.
    const last = msgs.length ? msgs[msgs.length - 1].seq : state.resumeFrom ? 0 : undefined;
    if (typeof p.epoch === "string" && p.epoch && p.room && typeof last === "number") {
      const cur = state.cursor.get(p.room);
      if (!cur || cur.epoch !== p.epoch || last > cur.seq) state.cursor.set(p.room, { epoch: p.epoch, seq: last });
    }
  },
  recovery(p) {
    if (p.room && p.room !== state.viewRoom) return;
    const from = state.resumeFrom;
    state.resumeFrom = null; // later history events (change_room) are plain joins
    if (p.recovered !== false) return; // nothing lost: the replayed messages are already in place
    let text;
    let anchor = null;
    if (p.reset) {
      // A new epoch: what was said in the old one after our last message
      // is gone and cannot be counted, so say so without a number.
      text = `The history of #${p.room || state.room} was reset on the server; messages sent while you were away may be lost.`;
    } else {
      let n = NaN;
      if (typeof p.missed === "number") n = p.missed;
      else if (typeof p.missed_from === "number" && typeof p.missed_to === "number") n = p.missed_to - p.missed_from + 1;
      text = n > 0
        ? `${n} ${n === 1 ? "message" : "messages"} missed while you were away; the server no longer has ${n === 1 ? "it" : "them"}.`
        : "Some messages sent while you were away are no longer kept by the server.";
      // Put the note in the gap: before the first message after it.
      const epoch = from ? from.epoch : "";
      if (typeof p.missed_to === "number") {
        anchor = [...ui.messages.querySelectorAll(".msg")].find((e) =>
          e.dataset.epoch === epoch && Number(e.dataset.seq) > p.missed_to) || null;
      }
    }
    if (!anchor && state.reconnectLine && state.reconnectLine.isConnected) anchor = state.reconnectLine.nextSibling;
    place(make("li", "sys warn", text), anchor);
  },
  presence(p) {
    if (p.room && p.room !== state.room) return;
    if (p.event === "join") {
      if (!state.members.includes(p.name)) {
        state.members.push(p.name);
        state.memberCount++;
      }
      systemLine(`${p.name} joined`);
    } else if (p.event === "leave") {
      const i = state.members.indexOf(p.name);
      if (i >= 0) {
        state.members.splice(i, 1);
        state.memberCount--;
      }
      systemLine(`${p.name} left`);
    } else if (p.event === "rename") {
      state.members = state.members.map((n) => (n === p.old_name ? p.name : n));
      if (p.old_name === state.me) {
        setMe(p.name);
        if (state.mode === "guest") store("nick", p.name);
        systemLine(`You are now ${p.name}.`);
      } else {
        systemLine(`${p.old_name} is now known as ${p.name}`);
      }
    }
    renderMembers();
  },
  rooms(p) {
    renderRooms(p.rooms);
  },
  members(p) {
    if (p.room === state.room) setMembers(p.members, p.count);
  },
  error(p) {
    const text = String(p.message || p.code || "error");
    // A burst of the same error (rate_limited when sending too fast) is
    // one line with a count, not a wall of copies.
    const last = ui.messages.lastElementChild;
    if (last && last.classList.contains("error") && last.dataset.text === text) {
      const n = Number(last.dataset.repeat || "1") + 1;
      last.dataset.repeat = String(n);
      last.textContent = `${text} (×${n})`;
    } else {
      const li = systemLine(text, "error");
      li.dataset.text = text;
      li.dataset.code = String(p.code || "");
    }
    if (state.pendingRoom && (p.code === "bad_room" || p.code === "name_taken" || p.code === "already_in_room")) {
      state.pendingRoom = "";
    }
  },
};

function onFrame(data) {
  if (typeof data !== "string") return;
  for (const line of data.split("\n")) {
    if (!line.trim()) continue;
    let ev;
    try {
      ev = JSON.parse(line);
    } catch {
      console.warn("hubbub: unreadable event", line);
      continue;
    }
    const h = ev && handlers[ev.type];
    if (h) h(ev.payload || {});
    else console.debug("hubbub: ignoring event", ev && ev.type);
  }
}

// ---- the connection --------------------------------------------------------

function send(type, payload) {
  if (!state.ws || state.ws.readyState !== WebSocket.OPEN) return false;
  const ev = payload === undefined ? { type } : { type, payload };
  state.ws.send(JSON.stringify(ev));
  return true;
}

function startRefresh() {
  clearInterval(state.refreshTimer);
  state.refreshTimer = setInterval(() => {
    send("list_rooms");
    send("list_members");
  }, REFRESH_MS);
}

// loginError is a failed POST /login, with the HTTP status.
class LoginError extends Error {
  constructor(status, message) {
    super(message);
    this.status = status;
  }
}

// login trades credentials for a single-use ticket.
async function login(creds) {
  let resp;
  try {
    resp = await fetch("/login", {
      method: "POST",
      headers: { "Content-Type": "application/json" },
      body: JSON.stringify({ username: creds.username, password: creds.password }),
      cache: "no-store",
    });
  } catch {
    throw new LoginError(0, "The server cannot be reached.");
  }
  if (resp.status === 401) throw new LoginError(401, "Wrong username or password.");
  if (resp.status === 429) throw new LoginError(429, "Too many attempts. Wait a minute and try again.");
  if (!resp.ok) throw new LoginError(resp.status, `Login failed (HTTP ${resp.status}).`);
  const body = await resp.json().catch(() => ({}));
  if (typeof body.ticket !== "string" || !body.ticket) throw new LoginError(resp.status, "The server sent no ticket.");
  return body.ticket;
}

// loadAuth asks the server how people sign in: GET /auth answers
// {"mode":"guest"|"login"|"jwt","login":bool}, login saying whether POST
// /login works. No answer (server down, or an older server without /auth)
// means anyone may join with a nickname; known tells the cases apart.
async function loadAuth() {
  try {
    const resp = await fetch("/auth", { cache: "no-store" });
    if (!resp.ok) return { mode: "guest", login: false, known: resp.status === 404 };
    const body = await resp.json();
    const mode = ["guest", "login", "jwt"].includes(body.mode) ? body.mode : "guest";
    return { mode, login: body.login === true, known: true };
  } catch {
    return { mode: "guest", login: false, known: false };
  }
}

// connect opens a socket to the current room. On a reconnect it asks for
// what was missed (since/epoch) when the server has given us positions.
async function connect() {
  clearTimeout(state.retryTimer);
  clearInterval(state.countdown);
  if (state.ws || state.stopped) return;
  const gen = ++state.gen;
  setStatus(state.everOnline ? "reconnecting" : "connecting");

  const q = new URLSearchParams({ room: state.room });
  if (state.mode === "jwt") {
    q.set("ticket", state.token);
  } else if (state.creds) {
    let ticket = state.ticket;
    state.ticket = "";
    if (!ticket) {
      try {
        ticket = await login(state.creds);
      } catch (err) {
        if (gen !== state.gen) return;
        if (err.status === 401) {
          showGate("login", "Please log in again.");
          return;
        }
        retryLater();
        return;
      }
      if (gen !== state.gen || state.stopped) return;
    }
    q.set("ticket", ticket);
  } else {
    q.set("name", state.me || state.nick);
  }
  const cur = state.cursor.get(state.room);
  state.resumeFrom = null;
  state.reconnectLine = null;
  if (state.everOnline && cur && cur.epoch) { // the server wants both or neither
    q.set("since", String(cur.seq));
    q.set("epoch", cur.epoch);
    state.resumeFrom = { ...cur };
  }

  const scheme = location.protocol === "https:" ? "wss:" : "ws:";
  const ws = new WebSocket(`${scheme}//${location.host}/ws?${q}`);
  state.ws = ws;
  let opened = false;
  ws.onopen = () => { opened = true; };
  ws.onmessage = (e) => { if (ws === state.ws) onFrame(e.data); };
  ws.onclose = (e) => {
    if (ws !== state.ws) return;
    state.ws = null;
    clearInterval(state.refreshTimer);
    const wasOnline = state.online;
    state.online = false;
    const why = closeReason(e.code, e.reason);
    state.closeNote = why.note;
    if (wasOnline) systemLine(`${why.text} Reconnecting…`, "warn");
    if (state.stopped) {
      setStatus("offline");
      return;
    }
    state.attempt = Math.max(state.attempt, why.backoff);
    retryLater(!opened);
  };
}

// closeReason explains a close code: text for the message list, a short
// note for the status line, and the backoff step to start from. The
// server closes with 1008 when the page sent too much too fast (so wait
// before trying again) and 1013 when the page could not keep up with what
// it was sent; both are worth telling the user.
function closeReason(code, reason) {
  switch (code) {
    case 1008:
      return {
        text: "The server closed the connection: this page sent too many messages too fast (flooding).",
        note: "closed for flooding", backoff: 2,
      };
    case 1013:
      return {
        text: "The server dropped the connection: this page fell behind the messages sent to it (slow consumer).",
        note: "dropped: too slow", backoff: 1,
      };
    default:
      return { text: `Connection lost${reason ? " (" + reason + ")" : ""}.`, note: "", backoff: 0 };
  }
}

// retryLater schedules the next attempt with exponential backoff and
// jitter: the wait doubles up to BACKOFF_MAX_MS and is spread over its
// upper half, so a crowd dropped at once does not return at once.
function retryLater(refused) {
  if (state.stopped) return;
  const ceiling = Math.min(BACKOFF_MAX_MS, BACKOFF_MIN_MS * 2 ** state.attempt);
  const wait = ceiling / 2 + Math.random() * (ceiling / 2);
  state.attempt++;
  if (!navigator.onLine) {
    setStatus("offline", "offline — waiting for network");
    return; // the "online" listener reconnects
  }
  state.retryAt = Date.now() + wait;
  const tick = () => {
    const s = Math.max(0, Math.ceil((state.retryAt - Date.now()) / 1000));
    const verb = state.everOnline ? "reconnecting" : "connecting";
    setStatus(verb, `${verb} in ${s}s` + (state.closeNote ? " · " + state.closeNote : ""));
  };
  tick();
  clearInterval(state.countdown);
  state.countdown = setInterval(tick, 1000);
  state.retryTimer = setTimeout(async () => {
    clearInterval(state.countdown);
    if (refused && !state.creds && await refusedForGood()) return;
    connect();
  }, wait);
}

// refusedForGood looks into a refused handshake, which the browser reports
// without its HTTP status. If the server answers GET /auth it is up and
// refused us on purpose: it now wants a login, or it does not take our
// name (a guest asking for a registered name gets 403) or our token. Then
// retrying cannot help, so it shows the sign-in screen with a note and
// returns true. A server that is down keeps us retrying. A page that was
// online before gets three tries, since a full server (503) or too many
// connections from one address (429) pass.
async function refusedForGood() {
  const gen = state.gen;
  const auth = await loadAuth();
  if (gen !== state.gen || state.stopped || !auth.known) return false;
  if (auth.mode !== state.mode) {
    applyAuth(auth);
    showGate(auth.mode === "login" ? "login" : auth.mode === "jwt" ? "token" : "join",
      auth.mode === "guest" ? "This server no longer asks for a login." : "This server now asks you to log in.");
    return true;
  }
  state.canLogin = auth.login;
  if (state.everOnline && ++state.refusals < 3) return false;
  if (state.mode === "jwt") {
    showGate("token", "The server did not accept your sign-in token; it may have expired.");
  } else {
    showGate("join", `The server refused to let ${state.nick} in. ` + (state.canLogin
      ? "That name may belong to a registered user: log in to use it, or pick another name."
      : "Pick another name, or try again later."));
  }
  return true;
}

// reconnectNow skips the backoff wait (network back, tab shown again).
function reconnectNow() {
  if (state.stopped || state.ws) return;
  state.attempt = 0;
  connect();
}

// disconnect stops connecting and closes the socket.
function disconnect() {
  state.stopped = true;
  clearTimeout(state.retryTimer);
  clearInterval(state.countdown);
  clearInterval(state.refreshTimer);
  state.gen++;
  if (state.ws) {
    const ws = state.ws;
    state.ws = null;
    ws.close(1000, "bye");
  }
  state.online = false;
  setStatus("offline");
}

// ---- the sign-in screen ----------------------------------------------------

function applyAuth(auth) {
  state.mode = auth.mode;
  state.canLogin = auth.login;
}

// showGate shows the join, login or token screen over the chat.
function showGate(which, note) {
  disconnect();
  ui.gate.hidden = false;
  ui.joinForm.hidden = which !== "join";
  ui.loginForm.hidden = which !== "login";
  ui.tokenNote.hidden = which !== "token";
  ui.showLogin.hidden = !(state.canLogin && state.mode === "guest");
  ui.showJoin.hidden = state.mode !== "guest";
  ui.joinError.textContent = which === "join" ? note || "" : "";
  ui.loginError.textContent = which === "login" ? note || "" : "";
  ui.tokenError.textContent = which === "token" ? note || "" : "";
  const room = state.room || new URLSearchParams(location.search).get("room") || recall("room") || "general";
  ui.joinRoom.value = room;
  ui.loginRoom.value = room;
  if (which === "join") {
    ui.nick.value = ui.nick.value || new URLSearchParams(location.search).get("name") || recall("nick");
    (ui.nick.value ? ui.joinForm.querySelector("button[type=submit]") : ui.nick).focus();
  } else if (which === "login") {
    (ui.username.value ? ui.password : ui.username).focus();
  }
}

// enter hides the sign-in screen and connects.
function enter(room) {
  state.room = room;
  state.stopped = false;
  state.attempt = 0;
  ui.gate.hidden = true;
  ui.renamePanel.hidden = state.mode !== "guest" || !!state.creds;
  ui.input.focus();
  connect();
}

ui.joinForm.addEventListener("submit", (e) => {
  e.preventDefault();
  const nick = ui.nick.value.trim();
  const room = ui.joinRoom.value.trim();
  if (!NAME_RE.test(nick)) {
    ui.joinError.textContent = "A nickname is 1–32 letters, digits, - or _.";
    ui.nick.focus();
    return;
  }
  if (!ROOM_RE.test(room)) {
    ui.joinError.textContent = "A room name is 1–64 letters, digits, - or _.";
    ui.joinRoom.focus();
    return;
  }
  state.nick = nick;
  state.me = "";
  state.creds = null;
  store("nick", nick);
  enter(room);
});

ui.loginForm.addEventListener("submit", async (e) => {
  e.preventDefault();
  const creds = { username: ui.username.value.trim(), password: ui.password.value };
  const room = ui.loginRoom.value.trim();
  if (!ROOM_RE.test(room)) {
    ui.loginError.textContent = "A room name is 1–64 letters, digits, - or _.";
    return;
  }
  ui.loginError.textContent = "";
  const button = ui.loginForm.querySelector("button[type=submit]");
  button.disabled = true;
  try {
    state.ticket = await login(creds);
  } catch (err) {
    ui.loginError.textContent = err.message;
    return;
  } finally {
    button.disabled = false;
  }
  state.creds = creds;
  ui.password.value = "";
  state.me = "";
  enter(room);
});

ui.showLogin.addEventListener("click", () => showGate("login"));
ui.showJoin.addEventListener("click", () => showGate("join"));

// ---- composing -------------------------------------------------------------

// updateComposer shows the frame size and allows Send only for a message
// the server will take whole.
function updateComposer() {
  const text = ui.input.value.trim();
  const bytes = frameBytes(text);
  const chars = [...text].length;
  const over = bytes > MAX_FRAME || chars > MAX_CHARS;
  ui.counter.textContent = `${bytes}/${MAX_FRAME}`;
  ui.counter.classList.toggle("idle", text === "");
  ui.counter.classList.toggle("near", !over && bytes > MAX_FRAME - 64);
  ui.counter.classList.toggle("over", over);
  ui.counter.title = over
    ? (bytes > MAX_FRAME ? `Too long: ${bytes} bytes, ${MAX_FRAME} allowed` : `Too long: ${chars} characters, ${MAX_CHARS} allowed`)
    : `${bytes} of ${MAX_FRAME} bytes`;
  ui.input.setAttribute("aria-invalid", String(over));
  ui.composer.classList.toggle("over", over);
  ui.send.disabled = over || text === "" || !state.online;
}

ui.input.addEventListener("input", updateComposer);

ui.composer.addEventListener("submit", (e) => {
  e.preventDefault();
  updateComposer();
  if (ui.send.disabled) return;
  // The server echoes our message back: that echo is the confirmation.
  if (send("send_message", { message: ui.input.value.trim() })) {
    ui.input.value = "";
    updateComposer();
    toBottom();
  }
});

ui.roomForm.addEventListener("submit", (e) => {
  e.preventDefault();
  const room = ui.roomInput.value.trim().replace(/^#/, "");
  if (!ROOM_RE.test(room)) {
    ui.roomInput.setCustomValidity("1–64 letters, digits, - or _");
    ui.roomInput.reportValidity();
    return;
  }
  ui.roomInput.value = "";
  switchRoom(room);
});

ui.roomInput.addEventListener("input", () => ui.roomInput.setCustomValidity(""));

ui.rooms.addEventListener("click", (e) => {
  const b = e.target.closest("button.room");
  if (b) switchRoom(b.dataset.room);
});

function switchRoom(room) {
  openDrawer(false);
  if (room === state.room) return;
  if (send("change_room", { name: room })) state.pendingRoom = room;
  else systemLine("Not connected; try again when online.", "error");
}

ui.renameForm.addEventListener("submit", (e) => {
  e.preventDefault();
  const name = ui.renameInput.value.trim();
  if (!NAME_RE.test(name)) {
    ui.renameInput.setCustomValidity("1–32 letters, digits, - or _");
    ui.renameInput.reportValidity();
    return;
  }
  if (name !== state.me) send("change_name", { name });
  openDrawer(false);
});

ui.renameInput.addEventListener("input", () => ui.renameInput.setCustomValidity(""));

ui.menu.addEventListener("click", () => openDrawer(!ui.app.classList.contains("drawer-open")));
ui.backdrop.addEventListener("click", () => openDrawer(false));
document.addEventListener("keydown", (e) => {
  if (e.key === "Escape") openDrawer(false);
});

ui.messages.addEventListener("scroll", () => {
  if (nearBottom()) ui.jump.hidden = true;
});
ui.jump.addEventListener("click", toBottom);

window.addEventListener("online", reconnectNow);
window.addEventListener("offline", () => {
  if (!state.ws && !state.stopped) setStatus("offline", "offline — waiting for network");
});
document.addEventListener("visibilitychange", () => {
  if (document.hidden) return;
  state.unread = 0;
  setTitle();
  reconnectNow();
});

// ---- start -----------------------------------------------------------------

async function start() {
  updateComposer();
  setTitle();
  const auth = await loadAuth();
  applyAuth(auth);
  if (auth.mode === "jwt") {
    const token = new URLSearchParams(location.hash.slice(1)).get("token");
    if (token) {
      state.token = token;
      history.replaceState(null, "", location.pathname + location.search); // keep it out of the address bar
      enter(new URLSearchParams(location.search).get("room") || recall("room") || "general");
      return;
    }
    showGate("token");
    return;
  }
  showGate(auth.mode === "login" ? "login" : "join");
}

start();

// hubbub browser client: the page. Plain JavaScript, no framework and no
// build step, loaded as an ES module (home.html).
//
// The connection lives in ./hubbub.js: the WebSocket and its reconnects,
// the resume cursor, what has been shown and the outbox. This file only
// renders that module's events and turns what the user does into calls on
// it. Moderation (the actions a moderator sees, the notices everyone sees)
// and direct messages are rendered here too; what they mean on the wire
// is the module's. Everything a user typed reaches the page through
// textContent, never as HTML; the server's Content-Security-Policy
// forbids inline script besides.
import { Client, MAX_CHARS, MAX_FRAME, OUTBOX_MAX, frameBytes } from "./hubbub.js";

const NAME_RE = /^[A-Za-z0-9_-]{1,32}$/;
const ROOM_RE = /^[A-Za-z0-9_-]{1,64}$/;
const REFRESH_MS = 10_000; // room and member lists are re-read this often
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
  modForm: $("mod-form"), modTitle: $("mod-title"), modDuration: $("mod-duration"),
  modDurationLabel: $("mod-duration-label"), modReason: $("mod-reason"), modConfirm: $("mod-confirm"),
  modCancel: $("mod-cancel"),
  directPanel: $("direct-panel"), conversations: $("conversations"), directUnread: $("direct-unread"), directEmpty: $("direct-empty"),
  chat: document.querySelector("main.chat"), dm: $("dm"), dmClose: $("dm-close"), dmTitle: $("dm-title"),
  dmMessages: $("dm-messages"), dmForm: $("dm-form"), dmInput: $("dm-input"),
};

const timeFormat = new Intl.DateTimeFormat([], { hour: "2-digit", minute: "2-digit" });
const dateFormat = new Intl.DateTimeFormat([], { dateStyle: "medium", timeStyle: "medium" });

// state is what the page knows beyond the client: how people sign in and
// what is on screen. Only the functions below change it.
const state = {
  mode: "guest", // what GET /auth said: guest, login or jwt
  canLogin: false, // POST /login works here (GET /auth said "login": true)
  creds: null, // {username, password} after a login; kept in memory only, for fresh tickets
  ticket: "", // a ticket not yet used (the one the login form just got)
  token: "", // jwt mode: the token from the address fragment
  nick: "", // name asked for in guest mode
  viewRoom: "", // room whose messages are on screen
  refusals: 0, // handshakes refused in a row while the server was reachable
  reconnectLine: null, // the "Reconnected." line of the current connection, where recovery notes go
  countdown: 0,
  refreshTimer: 0,
  rooms: [], // the last room list the server sent
  members: [],
  memberCount: 0,
  unread: 0,
  modTarget: null, // {action, name}: the moderation form's, while it is open
  dmPeer: "", // whose conversation is open, or ""
  dmUnread: new Map(), // peer -> direct messages not seen yet
};

// client is the connection. It is exported so that tests driving the page
// (browser_test.go) can read it through import("/static/app.js").
export const client = new Client({
  url: `${location.protocol === "https:" ? "wss:" : "ws:"}//${location.host}/ws`,
  ticket: ticketFor,
  onRefused,
});

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

// showStatus renders the client's status, counting down to the next try.
function showStatus(s) {
  clearInterval(state.countdown);
  const ended = client.ended;
  if (ended) {
    setStatus("offline", ended.kind); // "kicked" or "banned": no countdown, no retry
    return;
  }
  if (s.waitingForNetwork) {
    setStatus("offline", "offline — waiting for network");
    return;
  }
  if (!s.retryAt) {
    setStatus(s.state);
    return;
  }
  const note = s.close ? closeReason(s.close.code, s.close.reason).note : "";
  const tick = () => {
    const sec = Math.max(0, Math.ceil((s.retryAt - Date.now()) / 1000));
    setStatus(s.state, `${s.state} in ${sec}s` + (note ? " · " + note : ""));
  };
  tick();
  state.countdown = setInterval(tick, 1000);
}

function setMe(name) {
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
//
// The list holds .msg items (messages the server numbered, in seq order),
// .sys lines, and at the end .out items: our messages still in the
// outbox, sending or not sent. A message's item and its outbox item share
// data-local, the outbox id, once the server has acknowledged it.

function nearBottom() {
  const m = ui.messages;
  return m.scrollHeight - m.scrollTop - m.clientHeight < STICKY_PX;
}

function toBottom() {
  ui.messages.scrollTop = ui.messages.scrollHeight;
  ui.jump.hidden = true;
}

// place inserts li before before, or else before the outbox items at the
// end, keeping the view pinned to the bottom if it was there.
function place(li, before, force) {
  const stick = force || nearBottom();
  ui.messages.insertBefore(li, before || ui.messages.querySelector(":scope > .out"));
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
  state.viewRoom = room;
  setTitle();
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

// bubble builds a message item: avatar, sender, time and text.
function bubble(className, from, ts, text) {
  const li = make("li", className);
  li.dataset.from = from;
  li.dataset.ts = String(ts);
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
  const b = make("div", "bubble");
  b.append(head, make("div", "body", text));
  li.append(avatar, b);
  return li;
}

// setDelivery shows where one of our messages is: sending…, sent, or not
// sent with the actions that remain. A message the server may or may not
// have taken (code "unconfirmed") says so rather than "not sent".
function setDelivery(li, status, why, code) {
  li.dataset.status = status;
  let box = li.querySelector(".delivery");
  if (!box) {
    box = make("div", "delivery");
    li.querySelector(".bubble").append(box);
  }
  box.replaceChildren();
  box.title = "";
  if (status === "sending" && code === "slow_mode") {
    box.textContent = "waiting: slow mode";
    box.title = why || "";
  } else if (status === "sending") {
    box.textContent = "sending…";
  } else if (status === "sent") {
    box.textContent = "✓ sent";
  } else {
    box.append(make("span", "why", code === "unconfirmed" ? "not confirmed" : "not sent"));
    box.title = why || "";
    const retry = make("button", "retry", "Retry");
    retry.type = "button";
    const discard = make("button", "discard", "Discard");
    discard.type = "button";
    box.append(retry, discard);
  }
}

// byLocal finds the item of an outbox entry: its .out item, or the .msg it
// became.
function byLocal(selector, id) {
  for (const li of ui.messages.querySelectorAll(selector)) if (li.dataset.local === id) return li;
  return null;
}

// tombstone turns li, a message item, into what everyone sees of a
// deleted message: "message deleted", without its sender or text.
function tombstone(li, by) {
  li.classList.add("deleted");
  li.classList.remove("cont");
  li.dataset.from = "";
  const body = make("div", "body", "message deleted");
  const b = make("div", "bubble");
  b.append(body);
  if (by) b.title = `deleted by ${by}`;
  const spacer = make("span", "avatar blank");
  spacer.setAttribute("aria-hidden", "true");
  li.replaceChildren(spacer, b);
  regroup(li.nextElementSibling);
}

// deleteButton is the moderator's delete action on a message; the page
// shows it only while our role allows it (.can-moderate).
function deleteButton() {
  const b = make("button", "msg-delete", "Delete");
  b.type = "button";
  b.title = "Delete this message for everyone";
  return b;
}

// addMessage shows one new_message payload (live or from history); the
// client hands over each message once. Items are kept in seq order. A
// tombstone shows as a deleted message, an action as "* alice waves".
function addMessage(p, fromHistory, local) {
  const hasSeq = typeof p.seq === "number";
  const epoch = typeof p.epoch === "string" ? p.epoch : "";
  const from = p.deleted === true ? "" : String(p.from ?? "");
  const when = new Date(p.time);
  const ts = Number.isNaN(when.getTime()) ? Date.now() : when.getTime();
  const mine = (!!from && from === client.me) || !!local;
  const action = p.action === true && p.deleted !== true;

  const li = bubble("msg" + (mine ? " mine" : "") + (fromHistory ? " old" : "") + (action ? " action" : ""),
    from, ts, action ? `* ${from} ${p.message}` : String(p.message ?? ""));
  if (hasSeq) {
    li.dataset.seq = String(p.seq);
    li.dataset.epoch = epoch;
    li.append(deleteButton()); // beside the bubble: a grouped message has no header
  }
  if (p.deleted === true) tombstone(li, p.by);
  if (local) {
    li.dataset.local = local;
    setDelivery(li, "sent");
    byLocal(".out", local)?.remove();
  }

  // Find the place by seq: after the last message of the same epoch with a
  // smaller seq. Live messages almost always go at the end.
  let before = null;
  if (hasSeq) {
    for (let n = ui.messages.lastElementChild; n; n = n.previousElementSibling) {
      if (n.dataset.seq === undefined || n.dataset.epoch !== epoch || !n.classList.contains("msg")) continue;
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

// messageItem finds the .msg item of seq in epoch, or null.
function messageItem(epoch, seq) {
  return [...ui.messages.querySelectorAll(".msg")].find((e) =>
    e.dataset.seq === String(seq) && e.dataset.epoch === epoch) || null;
}

// showEntry shows an outbox entry of the room on screen as an .out item.
function showEntry(entry) {
  if (entry.room !== state.viewRoom) return;
  let li = byLocal(".out", entry.id);
  if (!li) {
    li = bubble("out mine" + (entry.action ? " action" : ""), client.me, entry.at,
      entry.action ? `* ${client.me} ${entry.text}` : entry.text);
    li.dataset.local = entry.id;
    ui.messages.append(li); // after every .msg and line: the outbox is the end of the list
    toBottom();
  }
  setDelivery(li, entry.state, entry.error, entry.code);
}

// errorLine shows an error in the message list. A burst of the same error
// (rate_limited when sending too fast) is one line with a count, not a
// wall of copies.
function errorLine(text, code) {
  let last = ui.messages.lastElementChild;
  while (last && last.classList.contains("out")) last = last.previousElementSibling;
  if (last && last.classList.contains("error") && last.dataset.text === text) {
    const n = Number(last.dataset.repeat || "1") + 1;
    last.dataset.repeat = String(n);
    last.textContent = `${text} (×${n})`;
    return last;
  }
  const li = systemLine(text, "error");
  li.dataset.text = text;
  li.dataset.code = String(code || "");
  return li;
}

// entrySent marks an acknowledged entry: the .msg it became, if that is on
// screen (its echo came first), else its .out item until the echo comes.
function entrySent(entry) {
  const out = byLocal(".out", entry.id);
  let msg = byLocal(".msg", entry.id);
  if (!msg && entry.seq) {
    msg = [...ui.messages.querySelectorAll(".msg")].find((e) =>
      e.dataset.seq === String(entry.seq) && e.dataset.epoch === entry.epoch) || null;
  }
  if (msg) {
    msg.dataset.local = entry.id;
    msg.classList.add("mine");
    setDelivery(msg, "sent");
    out?.remove();
  } else if (out) {
    setDelivery(out, "sent");
  }
}

// ---- rooms and members -----------------------------------------------------

// renderRooms shows the room list. The current room's count comes from our
// own member list, which presence events keep up to date between refreshes.
function renderRooms(rooms) {
  if (Array.isArray(rooms)) state.rooms = rooms;
  const room = client.room;
  const list = state.rooms.filter((r) => r && typeof r.name === "string" && r.name !== room);
  if (room) list.push({ name: room, members: Math.max(1, state.memberCount) });
  list.sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
  ui.rooms.replaceChildren(...list.map((r) => {
    const li = make("li");
    const b = make("button", "room");
    b.type = "button";
    b.dataset.room = r.name;
    b.append(make("span", "room-name", "#" + r.name), make("span", "count", String(r.members)));
    b.title = `${r.members} ${r.members === 1 ? "member" : "members"}`;
    if (r.name === room) {
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

// loggedIn says whether we are a user rather than a guest: direct
// messages are between users only.
function loggedIn() {
  return !!state.creds || state.mode === "jwt";
}

// renderMembers lists the members. Another member's name opens a direct
// conversation (for users); a moderator also sees kick, mute and ban.
function renderMembers() {
  const me = client.me;
  const sorted = state.members.slice().sort((a, b) => a.localeCompare(b));
  ui.members.replaceChildren(...sorted.map((n) => {
    const li = make("li", n === me ? "member self" : "member");
    li.dataset.name = n;
    const dot = make("span", "avatar small", [...n][0]?.toUpperCase() || "?");
    dot.setAttribute("aria-hidden", "true");
    dot.style.setProperty("--hue", hue(n));
    if (n !== me && loggedIn()) {
      const b = make("button", "member-name dm-open", n);
      b.type = "button";
      b.title = `Direct message to ${n}`;
      li.append(dot, b);
    } else {
      li.append(dot, make("span", "member-name", n));
    }
    if (n === me) {
      li.append(make("span", "you", "you"));
    } else {
      const acts = make("span", "mod-actions");
      for (const [act, label] of [["kick", "Kick"], ["mute", "Mute"], ["ban", "Ban"]]) {
        const b = make("button", "mod-act", label);
        b.type = "button";
        b.dataset.act = act;
        b.title = `${label} ${n}`;
        acts.append(b);
      }
      li.append(acts);
    }
    return li;
  }));
  const more = state.memberCount - sorted.length;
  if (more > 0) ui.members.append(make("li", "member more", `and ${more} more`));
  ui.memberCount.textContent = String(state.memberCount);
  renderRooms();
}

function startRefresh() {
  clearInterval(state.refreshTimer);
  state.refreshTimer = setInterval(() => {
    client.request("list_rooms");
    client.request("list_members");
  }, REFRESH_MS);
}

// ---- the client's events ---------------------------------------------------

client.on("status", showStatus);

client.on("joined", (d) => {
  state.refusals = 0;
  setMe(d.name);
  ui.app.classList.toggle("can-moderate", client.canModerate);
  if (!client.canModerate) closeModForm();
  if (d.moved) {
    clearView(d.room);
    systemLine(`You joined #${d.room} as ${d.name}.`);
    store("room", d.room);
    const url = new URL(location.href);
    url.searchParams.set("room", d.room);
    history.replaceState(null, "", url);
    for (const entry of client.outbox(d.room)) showEntry(entry);
  } else if (d.reconnect) {
    state.reconnectLine = systemLine("Reconnected.", "ok");
  }
  if (state.mode === "guest") store("nick", d.name);
  setMembers(d.members, d.count);
  client.request("list_rooms");
  startRefresh();
});

client.on("message", (d) => addMessage(d.message, d.history, d.local));

client.on("deleted", (d) => {
  if (d.room !== client.room) return;
  const li = messageItem(d.epoch, d.seq);
  if (li) tombstone(li, d.by);
});

client.on("moderation", (p) => {
  const text = moderationText(p);
  if (text) systemLine(text, p.mine ? "ok" : "mod");
});

client.on("direct", (d) => {
  if (d.peer === state.dmPeer && !ui.dm.hidden) {
    addDirect(d.message);
  } else if (!d.mine) {
    state.dmUnread.set(d.peer, (state.dmUnread.get(d.peer) || 0) + 1);
  }
  renderConversations();
});

// moderationText says what a moderation notice means, for the message
// list: the actor's confirmation and what its room is told.
function moderationText(p) {
  const where = p.server ? "the server" : p.room ? "#" + p.room : "this room";
  const why = p.reason ? `: ${p.reason}` : "";
  const forHow = p.duration ? ` for ${p.duration}` : "";
  switch (p.action) {
    case "kick": return `${p.by} kicked ${p.name} from ${where}${why}`;
    case "ban": return `${p.by} banned ${p.name} from ${where}${forHow}${why}`;
    case "unban": return `${p.by} lifted the ban on ${p.name} in ${where}`;
    case "mute": return `${p.by} muted ${p.name} in ${where}${forHow}${why}`;
    case "unmute": return `${p.by} unmuted ${p.name} in ${where}`;
    case "delete": return p.mine ? `You deleted message ${p.seq}.` : "";
    case "slow_mode": return p.interval
      ? `${p.by} turned on slow mode in ${where}: one message every ${p.interval} per person`
      : `${p.by} turned off slow mode in ${where}`;
    default: return "";
  }
}

client.on("recovery", (p) => {
  if (p.recovered !== false) return; // nothing lost: the replayed messages are already in place
  let text;
  let anchor = null;
  if (p.reset) {
    // A new epoch: what was said in the old one after our last message
    // is gone and cannot be counted, so say so without a number.
    text = `The history of #${p.room || client.room} was reset on the server; messages sent while you were away may be lost.`;
  } else {
    let n = NaN;
    if (typeof p.missed === "number") n = p.missed;
    else if (typeof p.missed_from === "number" && typeof p.missed_to === "number") n = p.missed_to - p.missed_from + 1;
    text = n > 0
      ? `${n} ${n === 1 ? "message" : "messages"} missed while you were away; the server no longer has ${n === 1 ? "it" : "them"}.`
      : "Some messages sent while you were away are no longer kept by the server.";
    // Put the note in the gap: before the first message after it.
    const epoch = p.resumedFrom ? p.resumedFrom.epoch : "";
    if (typeof p.missed_to === "number") {
      anchor = [...ui.messages.querySelectorAll(".msg")].find((e) =>
        e.dataset.epoch === epoch && Number(e.dataset.seq) > p.missed_to) || null;
    }
  }
  if (!anchor && state.reconnectLine && state.reconnectLine.isConnected) anchor = state.reconnectLine.nextSibling;
  place(make("li", "sys warn", text), anchor);
});

client.on("presence", (p) => {
  if (p.room && p.room !== client.room) return;
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
    if (p.kicked) {
      systemLine(`${p.name} was ${p.banned ? "banned" : "kicked"} by ${p.by}${p.reason ? ": " + p.reason : ""}`, "mod");
    } else {
      systemLine(`${p.name} left`);
    }
  } else if (p.event === "rename") {
    state.members = state.members.map((n) => (n === p.old_name ? p.name : n));
    if (p.own) {
      setMe(p.name);
      if (state.mode === "guest") store("nick", p.name);
      systemLine(`You are now ${p.name}.`);
    } else {
      systemLine(`${p.old_name} is now known as ${p.name}`);
    }
  }
  renderMembers();
});

client.on("rooms", (p) => renderRooms(p.rooms));

client.on("members", (p) => {
  if (p.room === client.room) setMembers(p.members, p.count);
});

// A room too big for join and leave notices tells its count instead.
client.on("presence_count", (p) => {
  if (p.room !== client.room || typeof p.count !== "number") return;
  state.memberCount = p.count;
  renderMembers();
});

client.on("error", (p) => {
  let text = String(p.message || p.code || "error");
  if (p.request === "send_direct" && p.to) {
    // Said in the conversation it belongs to, when that is open.
    if (p.code === "no_such_user") text = `Not delivered to ${p.to}: ${text}`;
    if (state.dmPeer === p.to && !ui.dm.hidden) {
      directNotice(text);
      return;
    }
  }
  errorLine(text, p.code);
});

client.on("closed", (d) => {
  clearInterval(state.refreshTimer);
  if (d.ended) showEnded(d);
  else if (d.wasOnline) systemLine(`${closeReason(d.code, d.reason).text} Reconnecting…`, "warn");
});

// showEnded says why the server ended the connection for good (a kick or
// a ban), which the client does not retry; after a kick the user may
// rejoin.
function showEnded(d) {
  const reason = String(d.reason || "");
  let text;
  if (/^you /i.test(reason)) text = reason[0].toUpperCase() + reason.slice(1); // the 403's "you are banned …"
  else if (reason) text = `You were ${reason}`;
  else text = d.ended === "kicked" ? "You were kicked" : "You are banned";
  text = text.replace(/\.?$/, ".");
  const li = make("li", "sys ended error");
  li.setAttribute("role", "alert");
  li.dataset.ended = d.ended;
  li.append(make("span", "ended-text", text));
  if (d.ended === "kicked") {
    const b = make("button", "rejoin", "Rejoin");
    b.type = "button";
    li.append(" ", b);
  }
  place(li, null, true);
}

client.on("outbox", (d) => {
  if (d.change === "sent") entrySent(d.entry);
  else if (d.change === "removed") byLocal(".out", d.entry.id)?.remove();
  else showEntry(d.entry);
  // A mute or a ban is news beyond the one message it stopped.
  if ((d.change === "failed" && ["muted", "banned", "forbidden"].includes(d.entry.code)) || d.change === "waiting") {
    errorLine(d.entry.error, d.entry.code);
  }
});

// ---- direct messages -------------------------------------------------------

// renderConversations lists the direct conversations, most recent first,
// with the open one even before its first message.
function renderConversations() {
  const list = client.conversations();
  if (state.dmPeer && !list.some((c) => c.peer === state.dmPeer)) list.unshift({ peer: state.dmPeer, last: null });
  let unread = 0;
  ui.conversations.replaceChildren(...list.map(({ peer, last }) => {
    const li = make("li");
    const b = make("button", "conversation");
    b.type = "button";
    b.dataset.peer = peer;
    const n = state.dmUnread.get(peer) || 0;
    unread += n;
    const preview = last ? (last.from === peer ? "" : "you: ") + last.message : "";
    b.append(make("span", "conv-peer", peer), make("span", "conv-last", preview));
    if (n) b.append(make("span", "count", String(n)));
    if (peer === state.dmPeer && !ui.dm.hidden) {
      b.classList.add("current");
      b.setAttribute("aria-current", "true");
    }
    li.append(b);
    return li;
  }));
  ui.directUnread.textContent = unread ? String(unread) : "";
  ui.directEmpty.hidden = list.length > 0;
}

// addDirect shows one direct message in the open conversation.
function addDirect(m) {
  const when = new Date(m.time);
  const ts = Number.isNaN(when.getTime()) ? Date.now() : when.getTime();
  const li = bubble("msg dm-msg" + (m.from === client.me ? " mine" : ""), m.from, ts, m.message);
  li.dataset.id = m.id;
  const stick = ui.dmMessages.scrollHeight - ui.dmMessages.scrollTop - ui.dmMessages.clientHeight < STICKY_PX;
  ui.dmMessages.append(li);
  regroup(li);
  if (stick || m.from === client.me) ui.dmMessages.scrollTop = ui.dmMessages.scrollHeight;
}

// directNotice shows a line (an error) in the open conversation.
function directNotice(text) {
  const li = make("li", "sys error", text);
  li.setAttribute("role", "alert");
  ui.dmMessages.append(li);
  ui.dmMessages.scrollTop = ui.dmMessages.scrollHeight;
}

// openDirect shows the conversation with peer in place of the room.
function openDirect(peer) {
  openDrawer(false);
  state.dmPeer = peer;
  state.dmUnread.delete(peer);
  ui.dm.hidden = false;
  ui.chat.classList.add("dm-open");
  ui.dmTitle.textContent = "Direct · " + peer;
  ui.dmInput.placeholder = "Message " + peer;
  ui.dmMessages.replaceChildren();
  for (const m of client.conversation(peer)) addDirect(m);
  renderConversations();
  ui.dmInput.focus();
}

function closeDirect() {
  ui.dm.hidden = true;
  ui.chat.classList.remove("dm-open");
  state.dmPeer = "";
  renderConversations();
  ui.input.focus();
}

ui.conversations.addEventListener("click", (e) => {
  const b = e.target.closest("button.conversation");
  if (b) openDirect(b.dataset.peer);
});

ui.dmClose.addEventListener("click", closeDirect);

ui.dmForm.addEventListener("submit", (e) => {
  e.preventDefault();
  const text = ui.dmInput.value.trim();
  if (!text || !state.dmPeer) return;
  const r = client.sendDirect(state.dmPeer, text);
  if (r.ok) {
    ui.dmInput.value = "";
  } else {
    directNotice(r.reason === "offline" ? "Not connected: direct messages are not kept for later; send it when online."
      : r.reason === "too_long" ? `Too long: at most ${MAX_CHARS} characters (${MAX_FRAME} bytes on the wire).`
        : "Nothing to send.");
  }
});

// ---- moderation ------------------------------------------------------------

// openModForm asks for what the action on name needs: a duration for a
// ban or mute, an optional reason.
function openModForm(action, name) {
  state.modTarget = { action, name };
  const verb = { kick: "Kick", mute: "Mute", ban: "Ban" }[action];
  ui.modTitle.textContent = `${verb} ${name} ${action === "mute" ? "in" : "from"} #${client.room}`;
  ui.modConfirm.textContent = verb;
  ui.modDuration.hidden = action === "kick";
  ui.modDurationLabel.hidden = action === "kick";
  ui.modReason.value = "";
  ui.modForm.hidden = false;
  ui.modReason.focus();
}

function closeModForm() {
  state.modTarget = null;
  ui.modForm.hidden = true;
}

ui.members.addEventListener("click", (e) => {
  const act = e.target.closest("button.mod-act");
  const dm = e.target.closest("button.dm-open");
  const name = e.target.closest("li.member")?.dataset.name;
  if (!name) return;
  if (act) openModForm(act.dataset.act, name);
  else if (dm) openDirect(name);
});

ui.modForm.addEventListener("submit", (e) => {
  e.preventDefault();
  const t = state.modTarget;
  if (!t) return;
  const opts = { reason: ui.modReason.value.trim() || undefined };
  const id = t.action === "kick" ? client.kick(t.name, opts)
    : t.action === "mute" ? client.mute(t.name, ui.modDuration.value, opts)
      : client.ban(t.name, ui.modDuration.value, opts);
  if (!id) systemLine("Not connected; try again when online.", "error");
  closeModForm();
});

ui.modCancel.addEventListener("click", closeModForm);

// closeReason explains a close code: text for the message list and a short
// note for the status line. The server closes with 1008 when the page sent
// too much too fast and 1013 when the page could not keep up with what it
// was sent; both are worth telling the user (the client waits longer
// before trying again after them).
function closeReason(code, reason) {
  switch (code) {
    case 1008:
      return {
        text: "The server closed the connection: this page sent too many messages too fast (flooding).",
        note: "closed for flooding",
      };
    case 1013:
      return {
        text: "The server dropped the connection: this page fell behind the messages sent to it (slow consumer).",
        note: "dropped: too slow",
      };
    default:
      return { text: `Connection lost${reason ? " (" + reason + ")" : ""}.`, note: "" };
  }
}

// ---- signing in ------------------------------------------------------------

// LoginError is a failed POST /login, with the HTTP status.
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

// ticketFor is what the client connects with: the jwt, a ticket (the one
// the login form got, then a fresh one per connection), or "" for a guest.
// A login that no longer works brings the login form back.
async function ticketFor() {
  if (state.mode === "jwt") return state.token;
  if (!state.creds) return "";
  const t = state.ticket;
  state.ticket = "";
  if (t) return t;
  try {
    return await login(state.creds);
  } catch (err) {
    if (err.status === 401) showGate("login", "Please log in again.");
    throw err; // the client retries with backoff, unless showGate stopped it
  }
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

// onRefused looks into a refused handshake, which the browser reports
// without its HTTP status, before the client tries again. If the server
// answers GET /auth it is up and refused us on purpose: it now wants a
// login, or it does not take our name (a guest asking for a registered
// name gets 403) or our token. Then retrying cannot help, so it shows the
// sign-in screen with a note, which stops the client. A server that is
// down keeps the client retrying. A page that was online before gets three
// tries, since a full server (503) or too many connections from one
// address (429) pass. A logged-in page gets a fresh ticket each try, and a
// login that fails says so itself (ticketFor).
async function onRefused() {
  if (state.creds) return;
  const auth = await loadAuth();
  if (!client.active || !auth.known) return;
  if (auth.mode !== state.mode) {
    applyAuth(auth);
    showGate(auth.mode === "login" ? "login" : auth.mode === "jwt" ? "token" : "join",
      auth.mode === "guest" ? "This server no longer asks for a login." : "This server now asks you to log in.");
    return;
  }
  state.canLogin = auth.login;
  if (client.everOnline && ++state.refusals < 3) return;
  if (state.mode === "jwt") {
    showGate("token", "The server did not accept your sign-in token; it may have expired.");
  } else {
    showGate("join", `The server refused to let ${state.nick} in. ` + (state.canLogin
      ? "That name may belong to a registered user: log in to use it, or pick another name."
      : "Pick another name, or try again later."));
  }
}

function applyAuth(auth) {
  state.mode = auth.mode;
  state.canLogin = auth.login;
}

// showGate shows the join, login or token screen over the chat.
function showGate(which, note) {
  client.stop();
  clearInterval(state.refreshTimer);
  clearInterval(state.countdown);
  ui.gate.hidden = false;
  ui.joinForm.hidden = which !== "join";
  ui.loginForm.hidden = which !== "login";
  ui.tokenNote.hidden = which !== "token";
  ui.showLogin.hidden = !(state.canLogin && state.mode === "guest");
  ui.showJoin.hidden = state.mode !== "guest";
  ui.joinError.textContent = which === "join" ? note || "" : "";
  ui.loginError.textContent = which === "login" ? note || "" : "";
  ui.tokenError.textContent = which === "token" ? note || "" : "";
  const room = client.room || new URLSearchParams(location.search).get("room") || recall("room") || "general";
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
  ui.gate.hidden = true;
  ui.renamePanel.hidden = state.mode !== "guest" || !!state.creds;
  ui.directPanel.hidden = !loggedIn(); // direct messages are between users
  state.dmUnread.clear();
  if (!ui.dm.hidden) closeDirect();
  closeModForm();
  ui.input.focus();
  const guest = state.mode === "guest" && !state.creds;
  client.start({ room, name: guest ? state.nick : "", user: state.creds ? state.creds.username : "" });
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
  enter(room);
});

ui.showLogin.addEventListener("click", () => showGate("login"));
ui.showJoin.addEventListener("click", () => showGate("join"));

// ---- composing -------------------------------------------------------------

// updateComposer shows the frame size and allows Send only for a message
// the server will take whole. Offline, Send puts the message in the
// outbox, which sends it after the reconnect.
function updateComposer() {
  const text = ui.input.value.trim();
  const action = /^\/me\s+\S/.test(text);
  const bytes = frameBytes(action ? text.replace(/^\/me\s+/, "") : text, action);
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
  ui.send.disabled = over || text === "" || !client.active;
}

ui.input.addEventListener("input", updateComposer);

ui.composer.addEventListener("submit", (e) => {
  e.preventDefault();
  updateComposer();
  if (ui.send.disabled) return;
  // "/me waves" is an action, shown as "* alice waves".
  const typed = ui.input.value.trim();
  const action = /^\/me\s+\S/.test(typed);
  const r = client.send(action ? typed.replace(/^\/me\s+/, "") : typed, { action });
  if (r.ok) {
    ui.input.value = "";
    updateComposer();
    toBottom();
  } else if (r.reason === "full") {
    systemLine(`${OUTBOX_MAX} messages are waiting to be sent; this one can go once some of them have.`, "error");
  }
});

ui.messages.addEventListener("click", (e) => {
  const del = e.target.closest(".msg-delete");
  if (del) {
    const li = del.closest(".msg");
    if (!client.deleteMessage(Number(li.dataset.seq), { epoch: li.dataset.epoch })) {
      systemLine("Not connected; try again when online.", "error");
    }
    return;
  }
  if (e.target.closest("button.rejoin")) {
    e.target.closest("button.rejoin").remove();
    client.rejoin();
    return;
  }
  const b = e.target.closest(".out button");
  if (!b) return;
  const id = b.closest(".out").dataset.local;
  if (b.classList.contains("retry")) client.retry(id);
  else if (b.classList.contains("discard")) client.discard(id);
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
  if (room === client.room) return;
  if (!client.changeRoom(room)) systemLine("Not connected; try again when online.", "error");
}

ui.renameForm.addEventListener("submit", (e) => {
  e.preventDefault();
  const name = ui.renameInput.value.trim();
  if (!NAME_RE.test(name)) {
    ui.renameInput.setCustomValidity("1–32 letters, digits, - or _");
    ui.renameInput.reportValidity();
    return;
  }
  if (name !== client.me) client.rename(name);
  openDrawer(false);
});

ui.renameInput.addEventListener("input", () => ui.renameInput.setCustomValidity(""));

ui.menu.addEventListener("click", () => openDrawer(!ui.app.classList.contains("drawer-open")));
ui.backdrop.addEventListener("click", () => openDrawer(false));
document.addEventListener("keydown", (e) => {
  if (e.key !== "Escape") return;
  openDrawer(false);
  closeModForm();
});

ui.messages.addEventListener("scroll", () => {
  if (nearBottom()) ui.jump.hidden = true;
});
ui.jump.addEventListener("click", toBottom);

// The client cannot see the network or the tab: the page tells it.
window.addEventListener("online", () => client.setNetwork(true));
window.addEventListener("offline", () => client.setNetwork(false));
document.addEventListener("visibilitychange", () => {
  if (document.hidden) return;
  state.unread = 0;
  setTitle();
  client.reconnectNow();
});

// ---- start -----------------------------------------------------------------

async function start() {
  client.setNetwork(navigator.onLine);
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

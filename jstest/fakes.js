// Fakes for the hubbub.js tests: a clock whose timers run only when a test
// advances it, a WebSocket whose server side the test plays, and a
// storage like sessionStorage. Each is handed to Client through its
// options; nothing global is replaced.

import { Client } from "../static/hubbub.js";

// FakeClock runs timers in time order as advance moves the time forward.
export class FakeClock {
  t = 1_000_000;
  #timers = new Map(); // id -> {at, fn}
  #next = 1;

  setTimeout = (fn, ms) => {
    const id = this.#next++;
    this.#timers.set(id, { at: this.t + Math.max(0, ms || 0), fn });
    return id;
  };

  clearTimeout = (id) => {
    this.#timers.delete(id);
  };

  now = () => this.t;

  // advance moves the time forward by ms, running each timer that falls
  // due on the way at its own time.
  advance(ms) {
    const end = this.t + ms;
    for (;;) {
      let first = null;
      for (const [id, tm] of this.#timers) {
        if (tm.at <= end && (!first || tm.at < first[1].at)) first = [id, tm];
      }
      if (!first) break;
      this.#timers.delete(first[0]);
      this.t = first[1].at;
      first[1].fn();
    }
    this.t = end;
  }

  // delays lists the pending timers as delays from now, shortest first.
  delays() {
    return [...this.#timers.values()].map((tm) => tm.at - this.t).sort((a, b) => a - b);
  }
}

// fakeSocketClass returns a WebSocket class whose instances record what
// the client sends and let the test open, feed and close them.
export function fakeSocketClass() {
  return class FakeSocket {
    static CONNECTING = 0;
    static OPEN = 1;
    static CLOSING = 2;
    static CLOSED = 3;
    static all = []; // every socket made, in order

    constructor(url) {
      this.url = url;
      this.readyState = FakeSocket.CONNECTING;
      this.sent = [];
      this.closedWith = null; // {code, reason} when the client closed it
      FakeSocket.all.push(this);
    }

    send(data) {
      if (this.readyState !== FakeSocket.OPEN) throw new Error("send on a socket that is not open");
      this.sent.push(data);
    }

    close(code, reason) {
      this.closedWith = { code, reason };
      this.readyState = FakeSocket.CLOSED;
    }

    // The server's side.

    get query() {
      return new URL(this.url).searchParams;
    }

    // frames returns the events the client sent, decoded.
    frames() {
      return this.sent.map((s) => JSON.parse(s));
    }

    // messages returns the send_message events the client sent.
    messages() {
      return this.frames().filter((f) => f.type === "send_message");
    }

    open() {
      this.readyState = FakeSocket.OPEN;
      this.onopen?.({});
    }

    // receive delivers events to the client in one frame (NDJSON).
    receive(...events) {
      this.onmessage?.({ data: events.map((e) => JSON.stringify(e)).join("\n") });
    }

    // drop ends the socket from the server's side (1006: no close frame).
    drop(code = 1006, reason = "") {
      this.readyState = FakeSocket.CLOSED;
      this.onclose?.({ code, reason });
    }
  };
}

// MemoryStorage is the part of the Storage interface the client uses.
export class MemoryStorage {
  map = new Map();
  getItem(k) { return this.map.has(k) ? this.map.get(k) : null; }
  setItem(k, v) { this.map.set(k, String(v)); }
}

// settle lets pending promise callbacks run (connect awaits the ticket).
export function settle() {
  return new Promise((resolve) => setImmediate(resolve));
}

// harness builds a Client on fakes and records its events. random is
// 0.5 unless opts says otherwise, so backoff waits are exact.
export function harness(opts = {}) {
  const clock = opts.clock ?? new FakeClock();
  const WS = fakeSocketClass();
  const storage = opts.storage === undefined ? new MemoryStorage() : opts.storage;
  const client = new Client({
    url: "ws://hub.test/ws", WebSocket: WS, setTimeout: clock.setTimeout, clearTimeout: clock.clearTimeout,
    now: clock.now, random: () => 0.5, storage, fetch: null, ...opts.client,
  });
  const events = [];
  for (const type of ["status", "joined", "message", "recovery", "presence", "rooms", "members", "error", "closed", "outbox",
    "deleted", "moderation", "direct", "presence_count"]) {
    client.on(type, (detail) => events.push({ type, ...detail }));
  }
  const h = {
    clock, WS, storage, client, events,
    get sock() { return WS.all[WS.all.length - 1]; },
    of(type) { return events.filter((e) => e.type === type); },
    // shown is the text of every message event, in order.
    shown() { return h.of("message").map((e) => e.message.message); },
    // connect starts the client (if it is not started) and lets the
    // attempt reach its socket.
    async start(room = "general", name = "alice", user = "") {
      client.start({ room, name, user });
      await settle();
      return h.sock;
    },
    // join opens the current socket and says room_changed.
    join({ room = "general", name = "alice", epoch = "E1", seq = 0, members } = {}) {
      const s = h.sock;
      if (s.readyState !== WS.OPEN) s.open();
      s.receive({ type: "room_changed", payload: { room, name, members: members ?? [name], count: 1, epoch, seq } });
      return s;
    },
    // reconnect drops the socket, waits out the backoff and lets the
    // next attempt reach its socket.
    async reconnect(code = 1006) {
      h.sock.drop(code);
      clock.advance(BACKOFF_ANY);
      await settle();
      return h.sock;
    },
  };
  return h;
}

// BACKOFF_ANY is longer than any single backoff wait.
export const BACKOFF_ANY = 30_001;

// msg builds a new_message payload.
export function msg(seq, text, { from = "bob", epoch = "E1", room = "general" } = {}) {
  return { id: seq, seq, epoch, room, from, message: text, time: "2026-12-02T10:00:00.000Z" };
}

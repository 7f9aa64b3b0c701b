// Tests of static/hubbub.js's moderation and direct messages, on fakes
// (fakes.js): run with `node --test jstest/`.

import { describe, test } from "node:test";
import assert from "node:assert/strict";

import { CLOSE_BANNED, CLOSE_KICKED, DIRECT_KEEP, MAX_FRAME, canModerate, sendable } from "../static/hubbub.js";
import { BACKOFF_ANY, harness, msg, settle } from "./fakes.js";

// joinAs opens the socket and says room_changed with role.
function joinAs(h, role, { room = "general", name = "alice" } = {}) {
  const s = h.sock;
  if (s.readyState !== h.WS.OPEN) s.open();
  s.receive({ type: "room_changed", payload: { room, name, members: [name], count: 1, epoch: "E1", seq: 0, role } });
  return s;
}

// dm builds a direct_message payload.
function dm(id, from, to, text) {
  return { id, from, to, message: text, time: "2026-12-02T10:00:0" + id.length + ".000Z" };
}

describe("roles", () => {
  test("room_changed's role says whether we may moderate", async () => {
    const tests = [
      { role: "moderator", want: true },
      { role: "admin", want: true },
      { role: undefined, want: false },
      { role: "guest", want: false },
    ];
    for (const { role, want } of tests) {
      assert.equal(canModerate(role), want, `canModerate(${role})`);
      const h = harness();
      await h.start();
      joinAs(h, role);
      assert.equal(h.client.canModerate, want, `client with role ${role}`);
      assert.equal(h.of("joined").at(-1).role, role ?? "");
    }
  });
});

describe("deleted messages", () => {
  test("a live message_deleted for a shown message reaches the page; others' rooms do not", async () => {
    const h = harness();
    const s = await h.start();
    h.join();
    s.receive({ type: "new_message", payload: msg(3, "spam") });
    s.receive({ type: "message_deleted", payload: { room: "other", epoch: "E1", seq: 3, by: "mo" } },
      { type: "message_deleted", payload: { room: "general", epoch: "E1", seq: 3, by: "mo" } });
    assert.deepEqual(h.of("deleted").map(({ type, ...d }) => d), [{ room: "general", epoch: "E1", seq: 3, by: "mo" }]);
  });

  test("a replayed tombstone is shown as deleted, never as text, and moves the cursor", async () => {
    const h = harness();
    const s = await h.start();
    h.join();
    s.receive({ type: "history", payload: { room: "general", epoch: "E1", messages: [
      msg(1, "kept"), { seq: 2, epoch: "E1", room: "general", deleted: true, by: "mo" }] } });
    const shown = h.of("message").map((e) => e.message);
    assert.equal(shown.length, 2);
    assert.equal(shown[1].deleted, true);
    assert.equal(shown[1].message, undefined);
    assert.equal(shown[1].by, "mo");
    assert.deepEqual(h.client.cursor("general"), { epoch: "E1", seq: 2 });
  });

  test("a tombstone replayed for a message on screen is a deleted event, not a second message", async () => {
    const h = harness();
    const s = await h.start();
    h.join();
    s.receive({ type: "new_message", payload: msg(5, "oops") });
    s.receive({ type: "new_message", payload: { seq: 5, epoch: "E1", room: "general", deleted: true, by: "mo" } });
    assert.equal(h.of("message").length, 1);
    assert.deepEqual(h.of("deleted").map((d) => d.seq), [5]);
  });

  test("our own message deleted while it waits for its ack is handed over as its tombstone", async () => {
    const h = harness();
    const s = await h.start();
    h.join();
    h.client.send("mine");
    const id = s.messages()[0].id;
    s.receive({ type: "new_message", payload: msg(7, "mine", { from: "alice" }) }); // held until the ack
    s.receive({ type: "message_deleted", payload: { room: "general", epoch: "E1", seq: 7, by: "mo" } });
    s.receive({ type: "ack", payload: { id, seq: 7, epoch: "E1" } });
    const m = h.of("message");
    assert.equal(m.length, 1);
    assert.equal(m[0].message.deleted, true);
    assert.equal(m[0].local, id);
  });
});

describe("moderation requests", () => {
  test("each action is sent with an id and only the fields given; the confirmation is marked mine", async () => {
    const h = harness();
    const s = await h.start();
    joinAs(h, "moderator");
    const c = h.client;
    const ids = [
      c.kick("bob", { reason: "spam" }),
      c.ban("bob", "10m"),
      c.unban("bob", { room: "lobby" }),
      c.mute("bob", "5m", { reason: "calm down", server: true }),
      c.unmute("bob"),
      c.deleteMessage(3, { epoch: "E1" }),
      c.slowMode("10s"),
    ];
    const want = [
      { type: "kick", payload: { name: "bob", reason: "spam" } },
      { type: "ban", payload: { name: "bob", duration: "10m" } },
      { type: "unban", payload: { name: "bob", room: "lobby" } },
      { type: "mute", payload: { name: "bob", duration: "5m", reason: "calm down", server: true } },
      { type: "unmute", payload: { name: "bob" } },
      { type: "delete_message", payload: { seq: 3, epoch: "E1" } },
      { type: "slow_mode", payload: { interval: "10s" } },
    ];
    assert.deepEqual(s.frames().map(({ type, payload }) => ({ type, payload })), want);
    assert.deepEqual(s.frames().map((f) => f.id), ids);
    assert.equal(new Set(ids).size, ids.length);
    s.receive({ type: "moderation", payload: { action: "kick", room: "general", name: "bob", by: "alice", kicked: 1, id: ids[0] } },
      { type: "moderation", payload: { action: "slow_mode", room: "general", by: "mo", interval: "10s" } });
    assert.deepEqual(h.of("moderation").map((m) => [m.action, m.mine]), [["kick", true], ["slow_mode", false]]);
  });

  test("an error answering a moderation request names it", async () => {
    const h = harness();
    const s = await h.start();
    h.join();
    const id = h.client.kick("bob");
    s.receive({ type: "error", payload: { code: "forbidden", message: "only moderators may kick", id } });
    assert.deepEqual(h.of("error").map((e) => [e.code, e.request]), [["forbidden", "kick"]]);
  });

  test("not connected: nothing is sent and the id is empty", async () => {
    const h = harness();
    await h.start();
    assert.equal(h.client.kick("bob"), "");
    assert.deepEqual(h.sock.frames(), []);
  });
});

describe("kicks and bans", () => {
  for (const { code, kind } of [{ code: CLOSE_KICKED, kind: "kicked" }, { code: CLOSE_BANNED, kind: "banned" }]) {
    test(`close ${code} (${kind}) stops the client: no reconnect on its own, not even on reconnectNow`, async () => {
      const h = harness();
      await h.start();
      h.join();
      const reason = kind + " from general by mo: spam";
      h.sock.drop(code, reason);
      assert.deepEqual(h.of("closed").map((e) => [e.code, e.ended, e.reason]), [[code, kind, reason]]);
      assert.equal(h.client.active, false);
      assert.deepEqual(h.client.ended, { code, reason, kind });
      assert.equal(h.of("status").at(-1).state, "offline");
      assert.equal(h.of("status").at(-1).close.code, code);
      assert.deepEqual(h.clock.delays(), [], "no retry scheduled");
      h.client.reconnectNow();
      h.client.setNetwork(true);
      h.clock.advance(BACKOFF_ANY);
      await settle();
      assert.equal(h.WS.all.length, 1, "no second socket");
    });
  }

  test("rejoin after a kick resumes where the connection left off", async () => {
    const h = harness();
    const s = await h.start();
    h.join();
    s.receive({ type: "new_message", payload: msg(4, "before") });
    s.drop(CLOSE_KICKED, "kicked from general by mo");
    h.client.rejoin();
    await settle();
    assert.equal(h.WS.all.length, 2);
    assert.equal(h.sock.query.get("since"), "4");
    assert.equal(h.client.ended, null);
    h.join();
    assert.equal(h.of("joined").at(-1).reconnect, true);
  });

  test("a refused reconnect that a GET shows is a ban stops the client with the server's reason", async () => {
    const asked = [];
    const fetch = async (url) => {
      asked.push(url);
      return { status: 403, text: async () => "you are banned from general until 2026-12-02 11:00Z (by mo): spam\n" };
    };
    const h = harness({ client: { fetch, ticket: async () => "T" + asked.length } });
    await h.start();
    h.join();
    h.sock.drop(1006); // lost
    h.clock.advance(BACKOFF_ANY);
    await settle();
    h.sock.drop(1006); // the reconnect is refused before the upgrade
    await settle();
    await settle();
    assert.equal(asked.length, 1, "asked at once, before any wait");
    const u = new URL(asked[0]);
    assert.equal(u.protocol, "http:");
    assert.equal(u.pathname, "/ws");
    assert.equal(u.searchParams.get("ticket"), "T0", "a fresh ticket: the refused one is spent");
    const closed = h.of("closed").at(-1);
    assert.equal(closed.ended, "banned");
    assert.equal(closed.code, 403);
    assert.equal(closed.reason, "you are banned from general until 2026-12-02 11:00Z (by mo): spam");
    assert.equal(h.client.active, false);
    assert.equal(h.WS.all.length, 2, "no third attempt");
  });

  test("a refused handshake that is not a ban is retried as before", async () => {
    for (const resp of [{ status: 403, body: "alice is a registered name" }, { status: 400, body: "bad request" }, null]) {
      const fetch = async () => {
        if (!resp) throw new TypeError("network");
        return { status: resp.status, text: async () => resp.body };
      };
      const h = harness({ client: { fetch } });
      await h.start();
      h.sock.drop(1006);
      await settle();
      await settle();
      h.clock.advance(BACKOFF_ANY);
      await settle();
      assert.equal(h.WS.all.length, 2, `after ${resp ? resp.status : "no answer"}`);
      assert.equal(h.client.active, true);
    }
  });

  test("once the server has answered why, further refusals are not looked at until a join", async () => {
    let asked = 0;
    const fetch = async () => {
      asked++;
      return { status: 503, text: async () => "server full" };
    };
    const h = harness({ client: { fetch } });
    await h.start();
    const refuse = async () => {
      h.sock.drop(1006);
      await settle();
      await settle();
      h.clock.advance(BACKOFF_ANY);
      await settle();
    };
    await refuse();
    await refuse();
    await refuse();
    assert.equal(asked, 1);
    assert.equal(h.WS.all.length, 4);
    h.join();
    await refuse(); // lost after the join: not refused, not looked at
    await refuse();
    assert.equal(asked, 2);
  });
});

describe("slow mode and mutes", () => {
  test("slow_mode keeps the message sending and sends it again after retry_after_ms, same id", async () => {
    const h = harness();
    const s = await h.start();
    h.join();
    h.client.send("one");
    const id = s.messages()[0].id;
    s.receive({ type: "error", payload: { code: "slow_mode", message: "slow mode: wait 8s", retry_after_ms: 8000, id } });
    const waiting = h.of("outbox").at(-1);
    assert.equal(waiting.change, "waiting");
    assert.equal(waiting.entry.state, "sending");
    assert.equal(waiting.entry.code, "slow_mode");
    assert.equal(waiting.entry.retryAt, h.clock.t + 8000);
    h.clock.advance(7999);
    assert.equal(s.messages().length, 1);
    h.clock.advance(1);
    assert.deepEqual(s.messages().map((m) => m.id), [id, id]);
    assert.equal(h.client.outbox()[0].code, "");
  });

  test("muted is final: not sent, with the server's message", async () => {
    const h = harness();
    const s = await h.start();
    h.join();
    h.client.send("hello");
    const id = s.messages()[0].id;
    s.receive({ type: "error", payload: { code: "muted", message: "you are muted in general until 11:00", until: "x", id } });
    const e = h.of("outbox").at(-1);
    assert.equal(e.change, "failed");
    assert.equal(e.entry.code, "muted");
    assert.equal(e.entry.error, "you are muted in general until 11:00");
    h.clock.advance(BACKOFF_ANY);
    assert.equal(s.messages().length, 1, "not resent");
  });
});

describe("actions", () => {
  test("send with action sends action: true; the frame limit counts it", async () => {
    const h = harness();
    const s = await h.start();
    h.join();
    h.client.send("waves", { action: true });
    assert.deepEqual(s.messages()[0].payload, { message: "waves", action: true });
    let t = "é".repeat(MAX_FRAME); // two bytes each: the frame, not the characters, is the limit
    while (sendable(t) === "too_long") t = t.slice(1);
    assert.equal(sendable(t, { action: true }), "too_long", "the action flag takes frame bytes");
  });
});

describe("direct messages", () => {
  test("sendDirect sends send_direct with an id; refused when offline or empty", async () => {
    const h = harness();
    const s = await h.start("general", "", "alice");
    assert.equal(h.client.sendDirect("bob", "hi").reason, "offline");
    h.join();
    assert.equal(h.client.sendDirect("bob", " ").reason, "empty");
    assert.equal(h.client.sendDirect("", "hi").reason, "no_recipient");
    const r = h.client.sendDirect("bob", "hi bob");
    assert.equal(r.ok, true);
    assert.deepEqual(s.frames().at(-1), { type: "send_direct", id: r.id, payload: { to: "bob", message: "hi bob" } });
  });

  test("the copies on each connection are shown once, in the conversation with the other side", async () => {
    const h = harness();
    const s = await h.start("general", "", "alice");
    h.join();
    h.client.sendDirect("bob", "hi bob");
    s.receive({ type: "direct_message", payload: dm("d1", "alice", "bob", "hi bob") },
      { type: "direct_message", payload: dm("d1", "alice", "bob", "hi bob") }, // a second copy
      { type: "direct_message", payload: dm("d22", "bob", "alice", "hi alice") },
      { type: "direct_message", payload: dm("d333", "carol", "alice", "psst") });
    assert.deepEqual(h.of("direct").map((d) => [d.message.id, d.peer, d.mine]),
      [["d1", "bob", true], ["d22", "bob", false], ["d333", "carol", false]]);
    assert.deepEqual(h.client.conversation("bob").map((m) => m.message), ["hi bob", "hi alice"]);
    assert.deepEqual(h.client.conversations().map((c) => [c.peer, c.last.message]), [["carol", "psst"], ["bob", "hi alice"]]);
    // a reconnect may bring one again
    await h.reconnect();
    h.join();
    h.sock.receive({ type: "direct_message", payload: dm("d22", "bob", "alice", "hi alice") });
    assert.equal(h.of("direct").length, 3);
  });

  test("no_such_user answering a direct message names its recipient and text", async () => {
    const h = harness();
    const s = await h.start("general", "", "alice");
    h.join();
    const { id } = h.client.sendDirect("zed", "anyone?");
    s.receive({ type: "error", payload: { code: "no_such_user", message: "zed is not online", id } });
    const e = h.of("error").at(-1);
    assert.deepEqual([e.code, e.request, e.to, e.text], ["no_such_user", "send_direct", "zed", "anyone?"]);
  });

  test(`a conversation keeps the newest ${DIRECT_KEEP}`, async () => {
    const h = harness();
    const s = await h.start("general", "", "alice");
    h.join();
    for (let i = 0; i < DIRECT_KEEP + 5; i++) s.receive({ type: "direct_message", payload: dm("m" + i, "bob", "alice", "n" + i) });
    const c = h.client.conversation("bob");
    assert.equal(c.length, DIRECT_KEEP);
    assert.equal(c[0].message, "n5");
  });

  test("start begins afresh: no conversations", async () => {
    const h = harness();
    const s = await h.start("general", "", "alice");
    h.join();
    s.receive({ type: "direct_message", payload: dm("d1", "bob", "alice", "hi") });
    h.client.stop();
    await h.start("general", "", "carol");
    assert.deepEqual(h.client.conversations(), []);
  });
});

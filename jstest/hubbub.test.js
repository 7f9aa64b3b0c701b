// Tests of static/hubbub.js, the page's client module, on fakes (fakes.js):
// run with `node --test jstest/`.

import { describe, test } from "node:test";
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";

import {
  backoffDelay, closeBackoff, connectQuery, frameBytes, sendable, Client,
  BACKOFF_MIN_MS, BACKOFF_MAX_MS, DEDUPE_WINDOW_MS, ECHO_WAIT_MS, ID_LEN, MAX_FRAME, OUTBOX_MAX, STORAGE_KEY,
} from "../static/hubbub.js";
import { BACKOFF_ANY, FakeClock, MemoryStorage, harness, msg, settle } from "./fakes.js";

describe("backoff", () => {
  test("doubles from 0.5 s to 30 s, spread over the upper half of each interval", () => {
    const tests = [
      { attempt: 0, lo: 250, hi: 500 },
      { attempt: 1, lo: 500, hi: 1000 },
      { attempt: 2, lo: 1000, hi: 2000 },
      { attempt: 5, lo: 8000, hi: 16000 },
      { attempt: 6, lo: 15000, hi: 30000 }, // 32 s, capped
      { attempt: 60, lo: 15000, hi: 30000 },
    ];
    for (const { attempt, lo, hi } of tests) {
      assert.equal(backoffDelay(attempt, () => 0), lo, `attempt ${attempt}, random 0`);
      assert.equal(backoffDelay(attempt, () => 1), hi, `attempt ${attempt}, random 1`);
      const mid = backoffDelay(attempt, () => 0.5);
      assert.ok(mid > lo && mid < hi, `attempt ${attempt}: ${mid} not inside (${lo}, ${hi})`);
    }
    assert.equal(backoffDelay(0, () => 1), BACKOFF_MIN_MS);
    assert.equal(backoffDelay(99, () => 1), BACKOFF_MAX_MS);
  });

  test("a 1008 close starts two steps up, a 1013 close one", () => {
    assert.equal(closeBackoff(1008), 2);
    assert.equal(closeBackoff(1013), 1);
    for (const code of [1000, 1001, 1006, 1011]) assert.equal(closeBackoff(code), 0, `code ${code}`);
  });

  test("the client waits as the policy says after each kind of close", async () => {
    for (const { code, wait } of [
      { code: 1006, wait: 375 }, // random 0.5 of 250–500 ms
      { code: 1001, wait: 375 },
      { code: 1013, wait: 750 }, // of 0.5–1 s
      { code: 1008, wait: 1500 }, // of 1–2 s
    ]) {
      const h = harness();
      await h.start();
      h.join();
      h.sock.drop(code);
      assert.deepEqual(h.clock.delays(), [wait], `after close ${code}`);
      const status = h.of("status").at(-1);
      assert.equal(status.state, "reconnecting");
      assert.equal(status.retryAt, h.clock.t + wait);
      assert.equal(status.close.code, code);
      h.clock.advance(wait - 1);
      assert.equal(h.WS.all.length, 1, `no attempt before ${wait} ms`);
      h.clock.advance(1);
      await settle();
      assert.equal(h.WS.all.length, 2, `an attempt at ${wait} ms`);
    }
  });

  test("failed attempts wait longer each time, up to 30 s, and a join starts over", async () => {
    const h = harness();
    const waits = [];
    await h.start();
    for (let i = 0; i < 9; i++) {
      h.sock.drop(); // never opened: a refused handshake
      waits.push(h.clock.delays()[0]);
      h.clock.advance(waits.at(-1));
      await settle();
    }
    assert.deepEqual(waits, [375, 750, 1500, 3000, 6000, 12000, 22500, 22500, 22500]);
    h.join();
    h.sock.drop();
    assert.deepEqual(h.clock.delays(), [375]);
  });

  test("no attempt while the network is down; at once when it is back, or on reconnectNow", async () => {
    const h = harness();
    await h.start();
    h.join();
    h.client.setNetwork(false);
    h.sock.drop();
    assert.deepEqual(h.clock.delays(), [], "no timer while offline");
    assert.equal(h.of("status").at(-1).waitingForNetwork, true);
    h.client.setNetwork(true);
    await settle();
    assert.equal(h.WS.all.length, 2, "the network's return reconnects at once");
    h.join();

    h.sock.drop(1008);
    assert.deepEqual(h.clock.delays(), [1500]);
    h.client.reconnectNow(); // the tab is shown again
    await settle();
    assert.equal(h.WS.all.length, 3, "reconnectNow skips the wait");
    assert.deepEqual(h.clock.delays(), [], "and cancels the timer");
  });

  test("a refused handshake asks the page before the next attempt, which may stop the client", async () => {
    let asked = 0;
    const h = harness({ client: { onRefused: async () => { asked++; h.client.stop(); } } });
    await h.start();
    h.sock.drop(); // never opened
    h.clock.advance(BACKOFF_ANY);
    await settle();
    assert.equal(asked, 1);
    assert.equal(h.WS.all.length, 1, "stopped: no further attempt");
    assert.equal(h.of("status").at(-1).state, "offline");
  });
});

describe("connect query and resume cursor", () => {
  test("connectQuery", () => {
    const tests = [
      { in: { room: "general", name: "alice" }, want: "room=general&format=json&name=alice" },
      { in: { room: "ops", name: "alice", ticket: "T1" }, want: "room=ops&format=json&ticket=T1" },
      { in: { room: "r", name: "a", resume: { epoch: "E9", seq: 41 } }, want: "room=r&format=json&name=a&since=41&epoch=E9" },
      { in: { room: "r", name: "a", resume: { epoch: "", seq: 3 } }, want: "room=r&format=json&name=a" },
    ];
    for (const tt of tests) assert.equal(connectQuery(tt.in), tt.want, JSON.stringify(tt.in));
  });

  test("the first connect asks for nothing; a reconnect resumes after the newest message received", async () => {
    const h = harness();
    const first = await h.start("general", "alice");
    assert.equal(first.url, "ws://hub.test/ws?room=general&format=json&name=alice");
    h.join({ epoch: "E1", seq: 0 });
    h.sock.receive({ type: "history", payload: { room: "general", epoch: "E1", messages: [] } });
    h.sock.receive({ type: "new_message", payload: msg(1, "one") }, { type: "new_message", payload: msg(2, "two") });
    assert.deepEqual(h.client.cursor("general"), { epoch: "E1", seq: 2 });
    const again = await h.reconnect();
    assert.equal(again.query.get("since"), "2");
    assert.equal(again.query.get("epoch"), "E1");
    assert.equal(again.query.get("name"), "alice");
  });

  test("room_changed starts the cursor in a quiet room", async () => {
    const h = harness();
    await h.start("quiet");
    h.join({ room: "quiet", epoch: "EQ", seq: 12 }); // no history event: -history-on-join 0
    const again = await h.reconnect();
    assert.equal(again.query.get("since"), "12");
    assert.equal(again.query.get("epoch"), "EQ");
  });

  test("each room has its own cursor, and the resume is for the room we are in", async () => {
    const h = harness();
    await h.start("a");
    h.join({ room: "a", epoch: "EA", seq: 0 });
    h.sock.receive({ type: "new_message", payload: msg(5, "in a", { room: "a", epoch: "EA" }) });
    assert.ok(h.client.changeRoom("b"));
    assert.equal(h.client.pendingRoom, "b");
    const ask = h.sock.frames().at(-1);
    assert.equal(ask.type, "change_room");
    assert.deepEqual(ask.payload, { name: "b" });
    h.sock.receive({ type: "room_changed", payload: { room: "b", name: "alice", members: [], count: 1, epoch: "EB", seq: 7, id: ask.id } });
    assert.equal(h.client.pendingRoom, "");
    assert.deepEqual(h.client.cursor("a"), { epoch: "EA", seq: 5 });
    assert.deepEqual(h.client.cursor("b"), { epoch: "EB", seq: 7 });
    const again = await h.reconnect();
    assert.equal(again.query.get("room"), "b");
    assert.equal(again.query.get("since"), "7");
    assert.equal(again.query.get("epoch"), "EB");
  });

  test("on a resumed connection the cursor reaches room_changed's seq only after the replay", async () => {
    const h = harness();
    await h.start();
    h.join({ epoch: "E1", seq: 3 });
    const s = await h.reconnect();
    assert.equal(s.query.get("since"), "3");
    h.join({ epoch: "E1", seq: 9 });
    assert.deepEqual(h.client.cursor("general"), { epoch: "E1", seq: 3 }, "not before the history is read");
    s.receive({ type: "history", payload: { room: "general", epoch: "E1", messages: [msg(8, "eight"), msg(9, "nine")] } },
      { type: "recovery", payload: { room: "general", recovered: false, replayed: 2, missed: 4, missed_from: 4, missed_to: 7 } });
    assert.deepEqual(h.client.cursor("general"), { epoch: "E1", seq: 9 });
    const rec = h.of("recovery").at(-1);
    assert.equal(rec.missed, 4);
    assert.deepEqual(rec.resumedFrom, { epoch: "E1", seq: 3 });
  });

  test("a logged-in connect carries a fresh ticket and no name", async () => {
    let n = 0;
    const h = harness({ client: { ticket: async () => "ticket-" + ++n } });
    const s = await h.start("staff", "", "alice");
    assert.equal(s.query.get("ticket"), "ticket-1");
    assert.equal(s.query.get("name"), null);
    h.join({ room: "staff" });
    const again = await h.reconnect();
    assert.equal(again.query.get("ticket"), "ticket-2");
  });

  test("a failing ticket is retried with backoff", async () => {
    let fail = true;
    const h = harness({ client: { ticket: async () => { if (fail) throw new Error("down"); return "t"; } } });
    h.client.start({ room: "staff", user: "alice" });
    await settle();
    assert.equal(h.WS.all.length, 0);
    assert.deepEqual(h.clock.delays(), [375]);
    fail = false;
    h.clock.advance(375);
    await settle();
    assert.equal(h.sock.query.get("ticket"), "t");
  });
});

describe("dedupe", () => {
  test("a message in history and again live is shown once", async () => {
    const h = harness();
    const s = await h.start();
    h.join({ epoch: "E1", seq: 2 });
    s.receive({ type: "history", payload: { room: "general", epoch: "E1", messages: [msg(1, "one"), msg(2, "two")] } });
    s.receive({ type: "new_message", payload: msg(2, "two") }, { type: "new_message", payload: msg(3, "three") });
    s.receive({ type: "new_message", payload: msg(3, "three") });
    assert.deepEqual(h.shown(), ["one", "two", "three"]);
    assert.deepEqual(h.of("message").map((e) => e.history), [true, true, false]);
  });

  test("a recovery replay shows only what was not shown", async () => {
    const h = harness();
    await h.start();
    h.join({ epoch: "E1", seq: 0 });
    h.sock.receive({ type: "new_message", payload: msg(1, "one") }, { type: "new_message", payload: msg(2, "two") });
    const s = await h.reconnect();
    assert.equal(s.query.get("since"), "2");
    h.join({ epoch: "E1", seq: 4 });
    // A replay that overlaps what is on screen (the server sends from
    // since+1, but nothing here relies on it).
    s.receive({ type: "history", payload: { room: "general", epoch: "E1", messages: [msg(2, "two"), msg(3, "three"), msg(4, "four")] } },
      { type: "recovery", payload: { room: "general", recovered: true, replayed: 3 } });
    s.receive({ type: "new_message", payload: msg(4, "four") }, { type: "new_message", payload: msg(5, "five") });
    assert.deepEqual(h.shown(), ["one", "two", "three", "four", "five"]);
    assert.deepEqual(h.client.cursor("general"), { epoch: "E1", seq: 5 });
  });

  test("a new room starts a new dedupe set", async () => {
    const h = harness();
    const s = await h.start("a");
    h.join({ room: "a", epoch: "EA" });
    s.receive({ type: "history", payload: { room: "a", epoch: "EA", messages: [msg(1, "a1", { room: "a", epoch: "EA" })] } });
    h.client.changeRoom("b");
    h.join({ room: "b", epoch: "EB" });
    h.client.changeRoom("a");
    h.join({ room: "a", epoch: "EA", seq: 1 });
    assert.equal(h.of("joined").at(-1).moved, true);
    s.receive({ type: "history", payload: { room: "a", epoch: "EA", messages: [msg(1, "a1", { room: "a", epoch: "EA" })] } });
    assert.deepEqual(h.shown(), ["a1", "a1"], "the page cleared its view, so a1 is shown again");
  });

  test("a new epoch restarts the cursor, and its seqs are not deduped against the old epoch's", async () => {
    const h = harness();
    await h.start();
    h.join({ epoch: "E1", seq: 0 });
    for (let i = 1; i <= 10; i++) h.sock.receive({ type: "new_message", payload: msg(i, "old" + i) });
    const s = await h.reconnect();
    assert.equal(s.query.get("since"), "10");
    // The server forgot the room (a memory-only restart): epoch E2, and
    // its seqs start at 1 again.
    h.join({ epoch: "E2", seq: 3 });
    s.receive({ type: "history", payload: { room: "general", epoch: "E2", messages: [1, 2, 3].map((i) => msg(i, "new" + i, { epoch: "E2" })) } },
      { type: "recovery", payload: { room: "general", recovered: false, reset: true, replayed: 3 } });
    assert.deepEqual(h.shown().slice(10), ["new1", "new2", "new3"], "seqs 1–3 of the new epoch are not taken for the old ones");
    assert.deepEqual(h.client.cursor("general"), { epoch: "E2", seq: 3 }, "the cursor is the new epoch's, not seq 10");
    assert.equal(h.of("recovery").at(-1).reset, true);
    s.receive({ type: "new_message", payload: msg(3, "new3", { epoch: "E2" }) });
    assert.equal(h.shown().length, 13, "the new epoch is deduped in turn");
    const next = await h.reconnect();
    assert.equal(next.query.get("since"), "3");
    assert.equal(next.query.get("epoch"), "E2");
  });
});

// lastMessage is the last send_message frame on the current socket.
function lastMessage(h) {
  return h.sock.messages().at(-1);
}

describe("outbox", () => {
  test("ids are unique, of one length, and valid for the server; the counter counts the real frame", async () => {
    const h = harness();
    const other = harness();
    await h.start();
    h.join();
    await other.start();
    other.join();
    const ids = new Set();
    for (const c of [h, other]) {
      for (let i = 0; i < 20; i++) {
        const text = i % 2 ? "naïve café 😀" : "hi " + i;
        assert.ok(c.client.send(text).ok);
        const raw = c.sock.sent.at(-1);
        const f = JSON.parse(raw);
        assert.match(f.id, /^[a-z0-9]{8}-[0-9a-z]{6}$/);
        assert.equal(f.id.length, ID_LEN);
        assert.equal(Buffer.byteLength(raw), frameBytes(text), "frameBytes is the frame's size");
        ids.add(f.id);
        c.sock.receive({ type: "ack", payload: { id: f.id, room: "general", seq: i + 1, epoch: "E1" } });
        c.clock.advance(200); // the outbox's pace: five a second
      }
    }
    assert.equal(ids.size, 40);
  });

  test("sendable refuses what the server would not take whole", () => {
    const overhead = frameBytes("");
    assert.equal(sendable(""), "empty");
    assert.equal(sendable("  "), "empty");
    const fill = "é".repeat((MAX_FRAME - overhead) >> 1) + "x".repeat((MAX_FRAME - overhead) & 1);
    assert.equal(frameBytes(fill), MAX_FRAME);
    assert.equal(sendable(fill), "");
    assert.equal(sendable(fill + "x"), "too_long");
    assert.equal(sendable("x".repeat(400)), "");
    assert.equal(sendable("é".repeat(240)), "too_long"); // 240 characters, 480 bytes
    assert.equal(sendable("x".repeat(401)), "too_long");
  });

  test("a message is sending until its ack, then sent; the echo after the ack is linked to it", async () => {
    const h = harness();
    const s = await h.start();
    h.join();
    const r = h.client.send("hello");
    assert.equal(r.ok, true);
    assert.equal(r.entry.state, "sending");
    const f = lastMessage(h);
    assert.deepEqual(f.payload, { message: "hello" });
    assert.equal(f.id, r.entry.id);
    s.receive({ type: "ack", payload: { id: f.id, room: "general", seq: 1, epoch: "E1" } });
    const sent = h.of("outbox").at(-1);
    assert.equal(sent.change, "sent");
    assert.equal(sent.entry.seq, 1);
    assert.deepEqual(h.client.outbox(), []);
    s.receive({ type: "new_message", payload: msg(1, "hello", { from: "alice" }) });
    assert.deepEqual(h.of("message").map((e) => [e.message.message, e.local]), [["hello", f.id]]);
  });

  test("an echo before its ack waits for it, then is linked; others' messages do not wait", async () => {
    const h = harness();
    const s = await h.start();
    h.join();
    h.client.send("mine");
    const id = lastMessage(h).id;
    s.receive({ type: "new_message", payload: msg(1, "mine", { from: "alice" }) },
      { type: "new_message", payload: msg(2, "bob's", { from: "bob" }) });
    assert.deepEqual(h.shown(), ["bob's"], "the echo waits; bob's message does not");
    s.receive({ type: "ack", payload: { id, room: "general", seq: 1, epoch: "E1" } });
    assert.deepEqual(h.of("message").map((e) => [e.message.message, e.local]), [["bob's", ""], ["mine", id]]);
  });

  test("a held message of another tab under our name is released by a later ack, or by time", async () => {
    const h = harness();
    const s = await h.start();
    h.join();
    h.client.send("from here");
    const id = lastMessage(h).id;
    s.receive({ type: "new_message", payload: msg(1, "from the other tab", { from: "alice" }) });
    s.receive({ type: "new_message", payload: msg(2, "from here", { from: "alice" }) });
    s.receive({ type: "ack", payload: { id, room: "general", seq: 2, epoch: "E1" } });
    assert.deepEqual(h.of("message").map((e) => [e.message.message, e.local]), [["from the other tab", ""], ["from here", id]]);

    h.client.send("lost echo");
    s.receive({ type: "new_message", payload: msg(3, "the other tab again", { from: "alice" }) });
    assert.equal(h.shown().length, 2);
    h.clock.advance(ECHO_WAIT_MS);
    assert.equal(h.shown().at(-1), "the other tab again");
  });

  test("after a reconnect every unacked message is resent with its original id, once", async () => {
    const h = harness();
    const s1 = await h.start();
    h.join();
    h.client.send("one");
    h.client.send("two");
    const ids = s1.messages().map((f) => f.id);
    assert.equal(ids.length, 2);
    s1.receive({ type: "ack", payload: { id: ids[0], room: "general", seq: 1, epoch: "E1" } },
      { type: "new_message", payload: msg(1, "one", { from: "alice" }) });
    const s2 = await h.reconnect();
    assert.deepEqual(s2.messages(), [], "nothing before the join");
    h.join({ seq: 2 });
    assert.deepEqual(s2.messages().map((f) => [f.id, f.payload.message]), [[ids[1], "two"]]);
    // The server had "two" before the drop: it is in the replay, and the
    // resend is acked as a duplicate.
    s2.receive({ type: "history", payload: { room: "general", epoch: "E1", messages: [msg(2, "two", { from: "alice" })] } },
      { type: "recovery", payload: { room: "general", recovered: true, replayed: 1 } });
    s2.receive({ type: "ack", payload: { id: ids[1], room: "general", seq: 2, epoch: "E1", duplicate: true } });
    assert.deepEqual(h.of("message").map((e) => [e.message.message, e.local]), [["one", ids[0]], ["two", ids[1]]]);
    const s3 = await h.reconnect();
    h.join({ seq: 2 });
    assert.deepEqual(s3.messages(), [], "nothing left to resend");
  });

  test("a duplicate ack for a message not on screen shows it as sent once; a second ack is ignored", async () => {
    const h = harness();
    await h.start();
    h.join();
    h.client.send("before");
    const id = lastMessage(h).id;
    const s2 = await h.reconnect();
    h.join({ seq: 60 });
    s2.receive({ type: "ack", payload: { id, room: "general", seq: 7, epoch: "E1", duplicate: true } });
    s2.receive({ type: "ack", payload: { id, room: "general", seq: 7, epoch: "E1", duplicate: true } });
    const sent = h.of("outbox").filter((e) => e.change === "sent");
    assert.equal(sent.length, 1);
    assert.equal(sent[0].duplicate, true);
    const shown = h.of("message");
    assert.equal(shown.length, 1);
    assert.equal(shown[0].local, id);
    assert.equal(shown[0].message.seq, 7);
    assert.equal(shown[0].message.message, "before");
    s2.receive({ type: "history", payload: { room: "general", epoch: "E1", messages: [msg(7, "before", { from: "alice" })] } });
    assert.equal(h.of("message").length, 1, "a later replay of it is deduped");
  });

  test("an ack whose echo was lost with the socket still shows the message", async () => {
    const h = harness();
    const s = await h.start();
    h.join();
    h.client.send("acked");
    s.receive({ type: "ack", payload: { id: lastMessage(h).id, room: "general", seq: 4, epoch: "E1" } });
    assert.equal(h.of("message").length, 0);
    s.drop();
    assert.deepEqual(h.of("message").map((e) => [e.message.message, e.message.seq]), [["acked", 4]]);
  });

  test("a final error shows not sent, is not resent, and retry sends it again with its id", async () => {
    const h = harness();
    const s = await h.start();
    h.join();
    h.client.send("refused");
    const id = lastMessage(h).id;
    s.receive({ type: "error", payload: { code: "bad_payload", message: "send_message needs …", id } });
    const failed = h.of("outbox").at(-1);
    assert.equal(failed.change, "failed");
    assert.equal(failed.entry.state, "failed");
    assert.equal(failed.entry.code, "bad_payload");
    assert.equal(h.of("error").length, 0, "outbox errors are outbox events");
    const s2 = await h.reconnect();
    h.join();
    assert.deepEqual(s2.messages(), [], "a failed message waits for the user");
    assert.ok(h.client.retry(id));
    assert.equal(h.of("outbox").at(-1).change, "retrying");
    assert.deepEqual(s2.messages().map((f) => f.id), [id]);
    s2.receive({ type: "ack", payload: { id, room: "general", seq: 1, epoch: "E1" } });
    assert.equal(h.of("outbox").at(-1).change, "sent");
    assert.equal(h.client.retry(id), false, "nothing to retry");
  });

  test("discard drops a failed message", async () => {
    const h = harness();
    const s = await h.start();
    h.join();
    h.client.send("x");
    const id = lastMessage(h).id;
    assert.equal(h.client.discard(id), false, "only failed messages are discarded");
    s.receive({ type: "error", payload: { code: "empty_message", message: "empty message", id } });
    assert.ok(h.client.discard(id));
    assert.deepEqual(h.client.outbox(), []);
    assert.equal(h.of("outbox").at(-1).change, "removed");
  });

  test("not_delivered is retried with backoff and its id, then not sent", async () => {
    const h = harness();
    const s = await h.start();
    h.join();
    h.client.send("busy");
    const id = lastMessage(h).id;
    const waits = [];
    for (let i = 0; i < 4; i++) {
      s.receive({ type: "error", payload: { code: "not_delivered", message: "the server is overloaded", id } });
      assert.equal(s.messages().length, i + 1, "not at once");
      waits.push(h.clock.delays()[0]);
      h.clock.advance(waits.at(-1));
      assert.equal(s.messages().length, i + 2);
      assert.equal(lastMessage(h).id, id);
    }
    assert.deepEqual(waits, [375, 750, 1500, 3000]);
    s.receive({ type: "error", payload: { code: "not_delivered", message: "the server is overloaded", id } });
    assert.equal(h.of("outbox").at(-1).entry.state, "failed");
    assert.equal(h.of("outbox").at(-1).entry.code, "not_delivered");
  });

  test("rate_limited pauses the outbox and resends the same id, without limit", async () => {
    const h = harness();
    const s = await h.start();
    h.join();
    h.client.send("slow");
    const id = lastMessage(h).id;
    const pauses = [];
    for (let i = 0; i < 7; i++) {
      s.receive({ type: "error", payload: { code: "rate_limited", message: "slow down", id } });
      pauses.push(h.clock.delays()[0]);
      h.clock.advance(pauses.at(-1));
      assert.equal(lastMessage(h).id, id);
    }
    assert.deepEqual(pauses, [1000, 2000, 4000, 8000, 16000, 30000, 30000]);
    assert.equal(h.client.outbox()[0].state, "sending");
  });

  test("messages typed while offline wait, and go out in order after the join", async () => {
    const h = harness();
    await h.start();
    assert.equal(h.client.send("before any join").ok, true);
    h.join();
    h.client.send("online");
    const s2 = await h.reconnect();
    h.client.send("while away");
    assert.deepEqual(s2.messages(), []);
    assert.deepEqual(h.client.outbox().map((e) => [e.text, e.state]),
      [["before any join", "sending"], ["online", "sending"], ["while away", "sending"]]);
    h.join();
    assert.deepEqual(s2.messages().map((f) => f.payload.message), ["before any join", "online", "while away"]);
  });

  test("the outbox holds OUTBOX_MAX messages; the next is refused until one is settled", async () => {
    const h = harness();
    await h.start();
    for (let i = 0; i < OUTBOX_MAX; i++) assert.equal(h.client.send("m" + i).ok, true, `message ${i}`);
    assert.deepEqual(h.client.send("one too many"), { ok: false, reason: "full" });
    assert.equal(OUTBOX_MAX, 50);
    h.join();
    const first = h.sock.messages()[0];
    h.sock.receive({ type: "ack", payload: { id: first.id, room: "general", seq: 1, epoch: "E1" } });
    assert.equal(h.client.send("room again").ok, true);
  });

  test("a full outbox goes out paced: four unanswered at most, five a second after a burst of ten", async () => {
    const h = harness();
    await h.start();
    for (let i = 0; i < 30; i++) h.client.send("m" + i);
    const s = h.join();
    assert.equal(s.messages().length, 4, "the send window");
    let seq = 0;
    const ackAll = () => {
      for (const f of s.messages().slice(seq)) s.receive({ type: "ack", payload: { id: f.id, room: "general", seq: ++seq, epoch: "E1" } });
    };
    ackAll();
    ackAll();
    ackAll();
    assert.equal(s.messages().length, 10, "the burst is spent");
    h.clock.advance(1000);
    ackAll();
    assert.ok(s.messages().length <= 15, `${s.messages().length} sent after 1 s`);
    for (let i = 0; i < 10; i++) {
      h.clock.advance(1000);
      ackAll();
    }
    assert.deepEqual(s.messages().map((f) => f.payload.message), Array.from({ length: 30 }, (_, i) => "m" + i));
  });

  test("messages wait while a room change is pending, and belong to their room", async () => {
    const h = harness();
    const s = await h.start("a");
    h.join({ room: "a" });
    h.client.changeRoom("b");
    h.client.send("typed in a");
    assert.deepEqual(s.messages(), []);
    h.join({ room: "b" });
    assert.deepEqual(s.messages(), [], "a's message is not sent into b");
    assert.deepEqual(h.client.outbox("a").map((e) => e.text), ["typed in a"]);
    h.client.changeRoom("a");
    h.join({ room: "a" });
    assert.deepEqual(s.messages().map((f) => f.payload.message), ["typed in a"]);
  });

  test("a message in flight longer than the dedupe window is not resent blind", async () => {
    const h = harness();
    const s = await h.start();
    h.join();
    h.client.send("uncertain");
    const id = lastMessage(h).id;
    s.drop();
    h.client.setNetwork(false);
    h.clock.advance(DEDUPE_WINDOW_MS + 1);
    h.client.setNetwork(true);
    await settle();
    const s2 = h.join();
    assert.deepEqual(s2.messages(), []);
    const failed = h.of("outbox").at(-1);
    assert.equal(failed.change, "failed");
    assert.equal(failed.entry.code, "unconfirmed");
    assert.ok(h.client.retry(id), "the user may send it anyway");
    assert.deepEqual(s2.messages().map((f) => f.id), [id]);
  });

  test("a message never sent may wait longer than the dedupe window", async () => {
    const h = harness();
    await h.start();
    h.sock.drop();
    h.client.setNetwork(false);
    h.client.send("typed offline");
    h.clock.advance(10 * DEDUPE_WINDOW_MS);
    h.client.setNetwork(true);
    await settle();
    h.join();
    assert.deepEqual(h.sock.messages().map((f) => f.payload.message), ["typed offline"]);
  });
});

describe("reload", () => {
  test("the outbox survives a reload and is resent with its ids", async () => {
    const storage = new MemoryStorage();
    const clock = new FakeClock();
    const before = harness({ storage, clock });
    const s = await before.start();
    before.join();
    before.client.send("in flight");
    s.receive({ type: "error", payload: { code: "bad_payload", message: "no", id: lastMessage(before).id } });
    before.client.send("queued");
    const ids = before.client.outbox().map((e) => e.id);
    assert.equal(ids.length, 2);
    assert.ok(storage.getItem(STORAGE_KEY));

    const after = harness({ storage, clock }); // a new page in the same tab
    assert.deepEqual(after.client.outbox(), [], "whose outbox it is, is known at start");
    const s2 = await after.start();
    assert.deepEqual(after.client.outbox().map((e) => [e.id, e.text, e.state]),
      [[ids[0], "in flight", "failed"], [ids[1], "queued", "sending"]]);
    after.join();
    assert.deepEqual(s2.messages().map((f) => f.id), [ids[1]], "the failed one waits for a retry");
    s2.receive({ type: "ack", payload: { id: ids[1], room: "general", seq: 1, epoch: "E1", duplicate: true } });
    const third = harness({ storage, clock });
    await third.start();
    assert.deepEqual(third.client.outbox().map((e) => e.id), [ids[0]], "settled messages leave the storage");
    assert.notEqual(third.client.send("new").entry.id.slice(0, 8), ids[0].slice(0, 8), "a new page has a new prefix");
  });

  test("a message in flight at the reload is resent within the dedupe window, and not after it", async () => {
    for (const { wait, resent } of [{ wait: 1000, resent: true }, { wait: DEDUPE_WINDOW_MS + 1, resent: false }]) {
      const storage = new MemoryStorage();
      const clock = new FakeClock();
      const before = harness({ storage, clock });
      await before.start();
      before.join();
      before.client.send("maybe delivered");
      const id = lastMessage(before).id;
      clock.advance(wait);
      const after = harness({ storage, clock });
      const s = await after.start();
      after.join();
      assert.deepEqual(s.messages().map((f) => f.id), resent ? [id] : [], `after ${wait} ms`);
      if (!resent) assert.equal(after.client.outbox()[0].code, "unconfirmed");
    }
  });

  test("another user's stored outbox is neither shown nor sent", async () => {
    const storage = new MemoryStorage();
    const alice = harness({ storage });
    await alice.start("general", "alice");
    alice.client.send("alice's");
    const bob = harness({ storage });
    const s = await bob.start("general", "bob");
    bob.join({ name: "bob" });
    assert.deepEqual(bob.client.outbox(), []);
    assert.deepEqual(s.messages(), []);
    const again = harness({ storage });
    const s2 = await again.start("general", "alice");
    again.join();
    assert.deepEqual(s2.messages().map((f) => f.payload.message), ["alice's"]);
  });

  test("a rename keeps the outbox ours, but a message in doubt is not resent under the new name", async () => {
    const h = harness();
    const s = await h.start("general", "alice");
    h.join();
    h.client.send("in doubt");
    h.client.rename("alicia");
    const ask = s.frames().at(-1);
    assert.equal(ask.type, "change_name");
    s.receive({ type: "presence", payload: { room: "general", event: "rename", name: "alicia", old_name: "alice", id: ask.id } });
    assert.equal(h.client.me, "alicia");
    assert.equal(h.of("presence").at(-1).own, true);
    const s2 = await h.reconnect();
    assert.equal(s2.query.get("name"), "alicia");
    h.client.send("after the rename");
    h.join({ name: "alicia" });
    assert.deepEqual(s2.messages().map((f) => f.payload.message), ["after the rename"]);
    assert.equal(h.client.outbox().find((e) => e.text === "in doubt").code, "unconfirmed");
  });

  test("storage that throws leaves an outbox in memory", async () => {
    const storage = { getItem() { throw new Error("denied"); }, setItem() { throw new Error("denied"); } };
    const h = harness({ storage });
    await h.start();
    h.join();
    assert.equal(h.client.send("still works").ok, true);
    assert.equal(h.sock.messages().length, 1);
  });
});

describe("the module", () => {
  test("touches no DOM", () => {
    const src = readFileSync(new URL("../static/hubbub.js", import.meta.url), "utf8")
      .replace(/\/\/.*$/gm, ""); // what comments say does not count
    for (const name of ["document", "window", "navigator", "location", "localStorage"]) {
      assert.doesNotMatch(src, new RegExp("\\b" + name + "\\b"), `hubbub.js uses ${name}`);
    }
  });

  test("server errors not about a message reach the page, with the request they answer", async () => {
    const h = harness();
    const s = await h.start("a");
    h.join({ room: "a" });
    h.client.changeRoom("no such!");
    const id = s.frames().at(-1).id;
    s.receive({ type: "error", payload: { code: "bad_room", message: "bad room name", id } },
      { type: "error", payload: { code: "rate_limited", message: "slow down" } });
    assert.deepEqual(h.of("error").map((e) => [e.code, e.request]), [["bad_room", "change_room"], ["rate_limited", undefined]]);
    assert.equal(h.client.pendingRoom, "");
  });

  test("a big room's member count reaches the page", async () => {
    const h = harness();
    const s = await h.start("big");
    h.join({ room: "big" });
    s.receive({ type: "presence_count", payload: { room: "big", count: 1234 } });
    assert.deepEqual(h.of("presence_count").map((e) => [e.room, e.count]), [["big", 1234]]);
  });

  test("stop closes with 1000 and does not reconnect", async () => {
    const h = harness();
    const s = await h.start();
    h.join();
    h.client.stop();
    assert.deepEqual(s.closedWith, { code: 1000, reason: "bye" });
    h.clock.advance(BACKOFF_ANY);
    await settle();
    assert.equal(h.WS.all.length, 1);
    assert.equal(h.of("closed").length, 0, "a close the page asked for is not news");
    assert.equal(h.client.send("x").reason, "stopped");
  });

  test("start after stop begins afresh: no resume, a new view, the new user's outbox", async () => {
    const h = harness();
    const s = await h.start("general", "alice");
    h.join();
    s.receive({ type: "new_message", payload: msg(4, "seen") });
    h.client.send("alice's, unanswered");
    h.client.stop();
    const s2 = await h.start("general", "", "bob");
    assert.equal(s2.query.get("since"), null, "a fresh join, not a resume");
    h.join({ name: "bob" });
    const joined = h.of("joined").at(-1);
    assert.equal(joined.moved, true, "the page clears its view");
    assert.equal(joined.reconnect, false);
    s2.receive({ type: "history", payload: { room: "general", epoch: "E1", messages: [msg(4, "seen")] } });
    assert.equal(h.shown().filter((t) => t === "seen").length, 2, "shown again in the new view");
    assert.deepEqual(h.client.outbox(), [], "alice's outbox is not bob's");
    assert.deepEqual(s2.messages(), []);
  });

  test("Client defaults to the environment's WebSocket and timers", () => {
    const c = new Client({ url: "ws://x/ws", storage: null });
    assert.equal(c.active, false);
    assert.deepEqual(c.outbox(), []);
  });
});

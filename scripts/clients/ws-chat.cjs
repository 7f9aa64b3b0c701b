// ws-chat.cjs drives hubbub's text format with the `ws` package from npm,
// a client that is not ours: two users join a room, chat, ask /who, one
// moves away and one quits. Usage: node ws-chat.cjs ws://HOST:PORT
// Exits 0 when every step was seen, 1 (saying which step) otherwise.
"use strict";
const WebSocket = require("ws");

const base = process.argv[2];
if (!base) {
  console.error("usage: node ws-chat.cjs ws://HOST:PORT");
  process.exit(2);
}
const room = "ci-ws";
const stepTimeoutMs = 10000;

// connect opens a text-format client and records every line it receives.
function connect(name) {
  const ws = new WebSocket(`${base}/ws?format=text&room=${room}&name=${name}`);
  const c = { name, ws, lines: [], waiters: [], closed: null };
  ws.on("message", (data, isBinary) => {
    if (isBinary) fail(`${name} got a binary frame`);
    const line = data.toString("utf8");
    c.lines.push(line);
    c.waiters = c.waiters.filter((w) => !w.match(line));
  });
  ws.on("close", (code, reason) => {
    c.closed = { code, reason: reason.toString() };
    c.waiters = c.waiters.filter((w) => !w.onClose());
  });
  ws.on("error", (err) => fail(`${name}: ${err.message}`));
  return c;
}

// expect resolves with the first line (already received or still to come)
// that starts with prefix; it fails the run after stepTimeoutMs.
function expect(c, prefix) {
  return new Promise((resolve) => {
    const seen = c.lines.findIndex((l) => l.startsWith(prefix));
    if (seen >= 0) {
      resolve(c.lines.splice(0, seen + 1).pop());
      return;
    }
    const timer = setTimeout(() => fail(`${c.name} never got a line starting ${JSON.stringify(prefix)}; got ${JSON.stringify(c.lines)}`), stepTimeoutMs);
    c.waiters.push({
      match(line) {
        if (!line.startsWith(prefix)) return false;
        clearTimeout(timer);
        c.lines = [];
        resolve(line);
        return true;
      },
      onClose() { return false; },
    });
  });
}

// closed resolves with the close code once c's connection has closed.
function closed(c) {
  return new Promise((resolve) => {
    if (c.closed) return resolve(c.closed.code);
    const timer = setTimeout(() => fail(`${c.name} was never closed`), stepTimeoutMs);
    c.waiters.push({
      match() { return false; },
      onClose() { clearTimeout(timer); resolve(c.closed.code); return true; },
    });
  });
}

function fail(msg) {
  console.error(`ws client: FAIL: ${msg}`);
  process.exit(1);
}

function equal(got, want, what) {
  if (got !== want) fail(`${what}: got ${JSON.stringify(got)}; want ${JSON.stringify(want)}`);
}

async function main() {
  const alice = connect("alice");
  equal(await expect(alice, "* you are"), `* you are alice in ${room} (1 member: alice)`, "alice's greeting");
  const bob = connect("bob");
  equal(await expect(bob, "* you are"), `* you are bob in ${room} (2 members: alice, bob)`, "bob's greeting");
  equal(await expect(alice, "* bob"), `* bob joined ${room}`, "alice sees bob join");

  alice.ws.send("hello from ws\n");
  equal(await expect(bob, "["), `[${room}] alice: hello from ws`, "bob hears alice");
  equal(await expect(alice, "["), `[${room}] alice: hello from ws`, "alice's own copy");

  bob.ws.send("/who");
  equal(await expect(bob, "* members"), `* members of ${room} (2): alice, bob`, "/who");

  // Bytes that are not UTF-8, as a text frame. ws checks that every text
  // frame it receives is UTF-8 and fails the connection (1007) otherwise,
  // so the server must not echo them back raw.
  bob.ws.send(Buffer.from([0x2f, 0xa6]), { binary: false });
  equal(await expect(bob, "!"), "! unknown command /\ufffd; try /help", "unknown command echo");

  alice.ws.send("/join elsewhere");
  equal(await expect(alice, "* you are"), "* you are alice in elsewhere (1 member: alice)", "/join");
  equal(await expect(bob, "* alice"), `* alice left ${room}`, "bob sees alice leave");

  bob.ws.send("/quit");
  equal(await closed(bob), 1000, "close code after /quit");
  alice.ws.close(1000);
  equal(await closed(alice), 1000, "alice's own close");
  console.log("ws client: ok (join, chat, /who, /join, /quit)");
}

main().catch((err) => fail(err.stack || String(err)));

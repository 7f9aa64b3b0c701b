// k6-chat.js: a small k6 scenario against hubbub's JSON format, using
// k6's own WebSocket client (k6/websockets). Each iteration joins the
// room "k6", sends a few messages, waits for its own messages to come back
// (the server's confirmation), and closes. The run fails (exit 99) unless
// every check passes.
//
//   k6 run --no-usage-report -e HUBBUB_URL=ws://127.0.0.1:8080 scripts/clients/k6-chat.js
import { WebSocket } from "k6/websockets";
import { check } from "k6";

export const options = {
  vus: 10,
  iterations: 40,
  thresholds: {
    checks: ["rate==1.0"],
  },
};

const base = __ENV.HUBBUB_URL || "ws://127.0.0.1:8080";
const perIteration = 5;

export default function () {
  const name = `k6-${__VU}-${__ITER}`;
  const ws = new WebSocket(`${base}/ws?room=k6&name=${name}`);
  let greeted = false;
  let echoed = 0;
  let wellFormed = true;
  const giveUp = setTimeout(() => ws.close(), 15000);

  ws.onmessage = (e) => {
    for (const line of String(e.data).split("\n")) {
      let ev;
      try {
        ev = JSON.parse(line);
      } catch (_) {
        wellFormed = false;
        continue;
      }
      if (ev.type === "room_changed" && !greeted) {
        greeted = ev.payload.name === name && ev.payload.room === "k6";
        for (let i = 0; i < perIteration; i++) {
          ws.send(JSON.stringify({ type: "send_message", payload: { message: `${name} says ${i}` } }));
        }
      } else if (ev.type === "new_message" && ev.payload.from === name) {
        if (ev.payload.message !== `${name} says ${echoed}`) wellFormed = false;
        echoed++;
        if (echoed === perIteration) ws.close();
      } else if (ev.type === "error") {
        wellFormed = false;
      }
    }
  };
  ws.onerror = (e) => {
    check(e, { "no websocket error": () => false });
  };
  ws.onclose = () => {
    clearTimeout(giveUp);
    check(null, {
      "greeted in room k6 under own name": () => greeted,
      "every own message echoed, in order": () => echoed === perIteration,
      "every frame well-formed NDJSON, no error events": () => wellFormed,
    });
  };
}

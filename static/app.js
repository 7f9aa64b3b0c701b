// Minimal hubbub client: one room, send and show messages.
"use strict";
const log = document.getElementById("log");
const status = document.getElementById("status");
const scheme = location.protocol === "https:" ? "wss:" : "ws:";
const ws = new WebSocket(`${scheme}//${location.host}/ws${location.search}`);
function line(text) {
  const li = document.createElement("li");
  li.textContent = text;
  log.append(li);
}
ws.onopen = () => { status.textContent = "online"; };
ws.onclose = (e) => { status.textContent = `offline (${e.code})`; };
ws.onmessage = (e) => {
  for (const raw of e.data.split("\n")) {
    const ev = JSON.parse(raw);
    const p = ev.payload;
    if (ev.type === "new_message") line(`${p.from}: ${p.message}`);
    else if (ev.type === "room_changed") line(`* you are ${p.name} in ${p.room}`);
    else if (ev.type === "presence") line(`* ${p.name} ${p.event}`);
    else if (ev.type === "error") line(`! ${p.message}`);
  }
};
document.getElementById("form").onsubmit = (e) => {
  e.preventDefault();
  const input = document.getElementById("msg");
  ws.send(JSON.stringify({ type: "send_message", payload: { message: input.value } }));
  input.value = "";
};

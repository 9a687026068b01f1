// Live updates over the API's WebSocket (/api/v1/ws/updates), reconnecting with backoff.
// Pages subscribe with on(channel, fn) and unsubscribe with the function it returns.

import { auth } from "./api.js";

const listeners = new Set();
let socket = null;
let retry = 500;
let wanted = false;
let timer = null;

function setStatus(on) {
  const el = document.getElementById("live-status");
  if (!el) return;
  el.classList.toggle("on", on);
  el.textContent = on ? "live" : "offline";
  document.body.dataset.live = on ? "on" : "off";
}

export function connect() {
  wanted = true;
  if (socket || !auth.token) return;
  const url = `${location.protocol === "https:" ? "wss" : "ws"}://${location.host}/api/v1/ws/updates`;
  socket = new WebSocket(url);
  socket.addEventListener("open", () => socket.send(JSON.stringify({ type: "auth", token: auth.token })));
  socket.addEventListener("message", (ev) => {
    let msg;
    try { msg = JSON.parse(ev.data); } catch { return; }
    if (msg.type === "ready") { retry = 500; setStatus(true); return; }
    if (!msg.channel) return;
    for (const l of listeners) {
      if (l.channel === "*" || l.channel === msg.channel) {
        try { l.fn(msg.data, msg.channel); } catch (err) { console.error(err); }
      }
    }
  });
  socket.addEventListener("close", () => {
    socket = null;
    setStatus(false);
    if (wanted) {
      timer = setTimeout(connect, retry);
      retry = Math.min(retry * 2, 15000);
    }
  });
}

export function disconnect() {
  wanted = false;
  clearTimeout(timer);
  if (socket) socket.close();
  socket = null;
  setStatus(false);
}

export function on(channel, fn) {
  const entry = { channel, fn };
  listeners.add(entry);
  return () => listeners.delete(entry);
}

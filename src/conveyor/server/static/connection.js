// The one websocket: requests with ids and their replies, events, reconnect and resume,
// and the token when the server asks for one.

import { $, state, toast } from "./state.js";
import { applyEvent, loadJobs } from "./jobs.js";
import { refreshQueues, setCounts } from "./queues.js";
import { refreshWorkers } from "./workers.js";
import { refreshDetail } from "./detail.js";
import { loadThroughput } from "./throughput.js";

export function readToken() {
  const url = new URL(location.href);
  const given = url.searchParams.get("token");
  if (given) {
    sessionStorage.setItem("conveyor.token", given);
    url.searchParams.delete("token"); // out of the address bar, history and screenshots
    history.replaceState(null, "", url);
  }
  return given || sessionStorage.getItem("conveyor.token");
}

export function useToken(token) {
  state.token = token;
  sessionStorage.setItem("conveyor.token", token);
  connect();
}

// Every address the page reaches, relative to the page itself (its directory), so the
// dashboard works where it is mounted: at / on conveyor's own server, or under any path
// of an ASGI app (/jobs/ -> /jobs/api/queues and the websocket at /jobs/).
export function endpoint(path, protocol = location.protocol) {
  const url = new URL(path, document.baseURI);
  url.protocol = protocol;
  return url;
}

export async function connect() {
  setConn("connecting…", false);
  let response;
  try {
    // One plain request first: it tells a refused token (401) from a server that is
    // down, which a browser's WebSocket cannot, and brings the queue counts.
    const headers = state.token ? { Authorization: "Bearer " + state.token } : {};
    response = await fetch(endpoint("api/queues"), { headers, cache: "no-store" });
  } catch (err) {
    return retry();
  }
  if (response.status === 401) return askToken(Boolean(state.token));
  if (!response.ok) return retry();
  setCounts((await response.json()).queues);
  const url = endpoint(".", location.protocol === "https:" ? "wss:" : "ws:");
  if (state.token) url.searchParams.set("token", state.token);
  const ws = (state.ws = new WebSocket(url));
  ws.onopen = () => opened();
  ws.onmessage = (message) => received(JSON.parse(message.data, keepSeqExact));
  ws.onclose = () => closed(ws);
}

// Seqs on PostgreSQL pass 2**53, past what a JavaScript number holds exactly: read each
// as the digits the server sent (where the browser gives a reviver the source text) and
// compare them as BigInts; the server takes `since` back as a string of digits too.
function keepSeqExact(key, value, context) {
  return key === "seq" && typeof value === "number" && context?.source ? context.source : value;
}

async function opened() {
  state.retryMs = 500;
  setConn("live", true);
  const resuming = state.lastSeq !== null;
  try {
    // Subscribed before listing, so nothing falls between the list and the stream. On a
    // reconnect the server first replays every transition after lastSeq. The stored
    // throughput is read each time: events hold until it is in (see throughput.js).
    loadThroughput();
    const subscribed = call("subscribe", resuming ? { since: String(state.lastSeq) } : {});
    if (!resuming) await loadJobs();
    await subscribed;
    await refreshQueues(); // which are paused: /api/queues brought the counts only
    refreshWorkers();
    if (state.selected) refreshDetail();
  } catch (err) {
    toast(err.message);
  }
}

function closed(ws) {
  if (state.ws !== ws) return;
  state.ws = null;
  for (const { reject } of state.pending.values()) reject(new Error("connection lost"));
  state.pending.clear();
  retry();
}

function retry() {
  const wait = state.retryMs;
  state.retryMs = Math.min(wait * 2, 8000);
  setConn(`reconnecting in ${(wait / 1000).toFixed(1)}s…`, false);
  setTimeout(connect, wait);
}

function setConn(text, up) {
  const conn = $("conn");
  conn.textContent = text;
  conn.className = "conn " + (up ? "up" : "down");
}

function askToken(wrong) {
  setConn("needs a token", false);
  $("token-wrong").hidden = !wrong;
  $("token-input").value = "";
  $("token-dialog").showModal();
}

export function connected() {
  return state.ws !== null && state.ws.readyState === WebSocket.OPEN;
}

// A request over the websocket: resolves with the reply's value, rejects with its error.
export function call(op, fields = {}) {
  if (!connected()) return Promise.reject(new Error("not connected"));
  const id = state.nextId++;
  state.ws.send(JSON.stringify({ id, op, ...fields }));
  return new Promise((resolve, reject) => state.pending.set(id, { resolve, reject }));
}

function received(message) {
  if (message.type === "event") return applyEvent(message);
  const waiter = state.pending.get(message.id);
  if (!waiter) {
    if (message.type === "error") toast(message.message);
    return;
  }
  state.pending.delete(message.id);
  if (message.type === "result") waiter.resolve(message.value);
  else waiter.reject(Object.assign(new Error(message.message), { code: message.code }));
}

// Throughput: jobs completed and failed per minute over the last hour, per queue. Read
// from the store (GET api/throughput) each time the websocket opens, so a page opened
// now shows what happened before it; then kept current by the events. Drawn as bars in
// an SVG (no library), and the source of the per-minute rates of the queue cards.

import { $, state } from "./state.js";
import { renderQueues } from "./queues.js";

export const MINUTES = 60;
const PENDING_MAX = 10000; // events held while the stored counts load; past it, the oldest go
const NS = "http://www.w3.org/2000/svg";

const series = {
  start: null, // the first bucket's minute (minutes since the epoch), null until loaded
  queues: new Map(), // queue -> {completed: number[MINUTES], failed: number[MINUTES]}
  asOf: 0, // ms: what the stored counts include (events at or before it are in them)
  offsetMs: 0, // the server's clock minus this page's, as of the load
  pending: [], // events that came while the counts loaded, applied after them
  countedSeq: null, // the last transition counted: an event applied twice counts once
  frame: 0,
};

function serverNow() {
  return Date.now() + series.offsetMs;
}

// Called as the websocket opens, before it subscribes: events from then on wait in
// `pending` until the stored counts are in, then those after `as_of` are added to them.
export async function loadThroughput() {
  series.pending = [];
  try {
    const headers = state.token ? { Authorization: "Bearer " + state.token } : {};
    const url = new URL("api/throughput?minutes=" + MINUTES, document.baseURI);
    const response = await fetch(url, { headers, cache: "no-store" });
    if (!response.ok) throw new Error(`throughput: HTTP ${response.status}`);
    const data = await response.json();
    series.start = Math.floor(Date.parse(data.start) / 60000);
    series.asOf = Date.parse(data.as_of);
    series.offsetMs = series.asOf - Date.now();
    series.queues = new Map(Object.entries(data.queues));
    delete $("throughput-summary").dataset.partial;
  } catch (err) {
    // Unreadable: count from the events alone, from now on (the summary says so).
    series.start = Math.floor(Date.now() / 60000) - MINUTES + 1;
    series.asOf = Date.now();
    series.queues = new Map();
    $("throughput-summary").dataset.partial = "true";
  }
  const pending = series.pending;
  series.pending = null;
  for (const event of pending) count(event);
  renderQueues(); // the cards' rates: 0 until now, if the cards were drawn before this came
  draw();
}

// A completion or a failure for good, from an event (jobs.js hands every event here).
export function countFinished(event) {
  if (event.status !== "completed" && event.status !== "failed") return;
  if (series.pending) {
    if (series.pending.length >= PENDING_MAX) series.pending.shift();
    series.pending.push(event);
    return;
  }
  count(event);
}

function count(event) {
  const seq = BigInt(event.seq);
  if (series.countedSeq !== null && seq <= series.countedSeq) return; // applied again
  series.countedSeq = seq;
  const at = Date.parse(event.at);
  if (at <= series.asOf) return; // in the stored counts already
  slide(Math.floor(at / 60000));
  const index = Math.floor(at / 60000) - series.start;
  if (index < 0) return; // older than the hour shown
  let queue = series.queues.get(event.queue);
  if (!queue) {
    queue = { completed: new Array(MINUTES).fill(0), failed: new Array(MINUTES).fill(0) };
    series.queues.set(event.queue, queue);
  }
  queue[event.status][index] += 1;
  draw();
}

// Move the window on so that `minute` is its last bucket (new minutes start at zero).
function slide(minute) {
  const by = minute - (series.start + MINUTES - 1);
  if (by <= 0) return;
  series.start += by;
  for (const queue of series.queues.values()) {
    for (const key of ["completed", "failed"]) {
      const kept = by >= MINUTES ? [] : queue[key].slice(by);
      queue[key] = kept.concat(new Array(MINUTES - kept.length).fill(0));
    }
  }
}

// Completions in the last 60 seconds, about: this minute's, and the share of the
// previous minute's that falls within them (a sliding window over minute buckets).
export function perMinute(queue) {
  if (series.start === null) return 0;
  slide(Math.floor(serverNow() / 60000));
  const counts = series.queues.get(queue);
  if (!counts) return 0;
  const into = (serverNow() % 60000) / 60000;
  const now = counts.completed[MINUTES - 1];
  const before = counts.completed[MINUTES - 2];
  return Math.round(now + before * (1 - into));
}

function totals(names) {
  const completed = new Array(MINUTES).fill(0);
  const failed = new Array(MINUTES).fill(0);
  for (const name of names) {
    const counts = series.queues.get(name);
    if (!counts) continue;
    for (let i = 0; i < MINUTES; i++) {
      completed[i] += counts.completed[i];
      failed[i] += counts.failed[i];
    }
  }
  return { completed, failed };
}

export function draw() {
  if (!series.frame) series.frame = requestAnimationFrame(render);
}

// The bars of the queue the filter shows, or of every queue: completed (green) with
// failed (red) on top, one per minute, scaled to the busiest minute.
function render() {
  series.frame = 0;
  if (series.start === null) return;
  slide(Math.floor(serverNow() / 60000));
  const queue = state.filter.queue;
  const names = queue ? [queue] : [...series.queues.keys()];
  const { completed, failed } = totals(names);
  const top = Math.max(1, ...completed.map((n, i) => n + failed[i]));
  const width = 240 / MINUTES;
  const bars = [];
  for (let i = 0; i < MINUTES; i++) {
    const ok = (completed[i] / top) * 46;
    const bad = (failed[i] / top) * 46;
    if (ok) bars.push(bar(i * width, 47 - ok, width, ok, "ok"));
    if (bad) bars.push(bar(i * width, 47 - ok - bad, width, bad, "bad"));
  }
  const base = document.createElementNS(NS, "line");
  for (const [key, value] of [["x1", 0], ["x2", 240], ["y1", 47.5], ["y2", 47.5]]) base.setAttribute(key, value);
  base.setAttribute("class", "base");
  $("throughput-chart").replaceChildren(base, ...bars);
  const sum = (values) => values.reduce((a, b) => a + b, 0);
  const where = queue ? `queue ${queue}` : "all queues";
  const busiest = Math.max(...completed);
  const partial = $("throughput-summary").dataset.partial ? " (since the page opened: the stored counts could not be read)" : "";
  $("throughput-summary").textContent =
    `Last ${MINUTES} minutes, ${where}: ${sum(completed)} completed, ${sum(failed)} failed;` +
    ` busiest minute ${busiest} completed; this minute ${completed[MINUTES - 1]} completed,` +
    ` ${failed[MINUTES - 1]} failed${partial}.`;
}

function bar(x, y, width, height, kind) {
  const rect = document.createElementNS(NS, "rect");
  rect.setAttribute("x", x.toFixed(2));
  rect.setAttribute("y", y.toFixed(2));
  rect.setAttribute("width", (width * 0.8).toFixed(2));
  rect.setAttribute("height", height.toFixed(2));
  rect.setAttribute("class", kind);
  return rect;
}

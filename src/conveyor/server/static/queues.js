// The queue cards: counts per status (refreshed at most once a second while events flow),
// completions in the last minute (counted from events, in per-second buckets), and a
// button that pauses or resumes the queue for every process.

import { $, COUNTS_EVERY_MS, RATE_WINDOW_MS, STATUSES, badge, state, toast } from "./state.js";
import { call } from "./connection.js";
import { loadJobs } from "./jobs.js";

export async function refreshQueues() {
  const counts = {};
  state.paused = {};
  for (const queue of (await call("queues")).queues) {
    counts[queue.name] = queue.counts;
    if (queue.paused) state.paused[queue.name] = queue;
  }
  setCounts(counts);
}

async function togglePause(name) {
  const paused = Boolean(state.paused[name]);
  try {
    await call(paused ? "resume" : "pause", paused ? { queue: name } : { queue: name, by: "dashboard" });
    await refreshQueues();
  } catch (err) {
    toast(err.message);
  }
}

export function scheduleCounts() {
  if (state.countsTimer) return;
  state.countsTimer = setTimeout(async () => {
    try {
      await refreshQueues();
    } catch (err) {
      /* disconnected: the reconnect brings fresh counts */
    } finally {
      state.countsTimer = 0;
    }
  }, COUNTS_EVERY_MS);
}

export function countCompletion(queue, at) {
  // Per-second buckets over the last minute: bounded at 60 per queue, whatever the rate.
  const second = Math.floor(at / 1000);
  const buckets = state.completions.get(queue) || [];
  const bucket = buckets.find((b) => b.second === second);
  if (bucket) bucket.count += 1;
  else state.completions.set(queue, prune([...buckets, { second, count: 1 }]));
}

function prune(buckets) {
  const since = Math.floor((Date.now() - RATE_WINDOW_MS) / 1000);
  return buckets.filter((b) => b.second > since);
}

function perMinute(queue) {
  const buckets = prune(state.completions.get(queue) || []);
  state.completions.set(queue, buckets);
  return buckets.reduce((sum, b) => sum + b.count, 0);
}

export function setCounts(queues) {
  state.queues = queues;
  renderQueues();
}

export function renderQueues() {
  const names = Object.keys(state.queues).sort();
  const cards = names.map((name) => {
    const card = document.createElement("div");
    card.className = "queue" + (state.filter.queue === name ? " selected" : "");
    card.dataset.queue = name;
    card.title = "show only this queue";
    const head = document.createElement("div");
    head.className = "queue-head";
    const title = document.createElement("span");
    title.className = "queue-name";
    title.textContent = name;
    const rate = document.createElement("span");
    rate.className = "muted rate";
    rate.textContent = `${perMinute(name)}/min`;
    const paused = state.paused[name];
    const toggle = document.createElement("button");
    toggle.className = "queue-pause";
    toggle.textContent = paused ? "resume" : "pause";
    toggle.setAttribute("aria-label", `${paused ? "resume" : "pause"} queue ${name}`);
    toggle.title = paused
      ? `paused${paused.paused_by ? " by " + paused.paused_by : ""}: start its jobs again`
      : "no process starts its jobs until resumed (running jobs finish)";
    toggle.addEventListener("click", (event) => {
      event.stopPropagation(); // not a click on the card, which filters
      togglePause(name);
    });
    head.append(title, rate, toggle);
    if (paused) {
      card.classList.add("paused");
      const mark = badge("paused");
      mark.classList.add("paused-mark");
      mark.textContent = "paused";
      title.after(mark);
    }
    const counts = document.createElement("div");
    counts.className = "counts";
    for (const status of STATUSES) {
      const n = state.queues[name][status] || 0;
      if (!n && status !== "queued" && status !== "running") continue;
      const count = badge(status);
      count.dataset.status = status;
      count.textContent = `${status} ${n}`;
      counts.append(count);
    }
    card.append(head, counts);
    card.addEventListener("click", () => setFilter("queue", state.filter.queue === name ? "" : name));
    return card;
  });
  if (cards.length) $("queues").replaceChildren(...cards);
  const total = names.reduce((sum, name) => sum + perMinute(name), 0);
  $("rate").textContent = names.length ? `${total} completed/min` : "";
  const select = $("filter-queue");
  for (const name of names) {
    if (![...select.options].some((o) => o.value === name)) select.add(new Option(name, name));
  }
}

export function setFilter(key, value) {
  state.filter[key] = value;
  $("filter-" + key).value = value;
  for (const id of ["bulk-cancel", "bulk-rerun"]) $(id).disabled = Boolean(state.filter.tag || state.filter.meta);
  renderQueues();
  loadJobs().catch((err) => toast(err.message));
}

// The queue cards: counts per status (refreshed at most once a second while events flow),
// completions in the last minute (throughput.js: stored, then counted from events), a
// button that shows only the queue's jobs and one that pauses or resumes the queue for
// every process.

import { $, COUNTS_EVERY_MS, STATUSES, badge, state, toast } from "./state.js";
import { call } from "./connection.js";
import { loadJobs } from "./jobs.js";
import { renderBulk } from "./bulk.js";
import { draw, perMinute } from "./throughput.js";

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
    const title = document.createElement("button");
    title.className = "queue-name plain";
    title.textContent = name;
    title.setAttribute("aria-pressed", String(state.filter.queue === name));
    title.setAttribute("aria-label", `show only the jobs of queue ${name}`);
    const rate = document.createElement("span");
    rate.className = "muted rate";
    rate.textContent = `${perMinute(name)}/min`;
    rate.title = "completed in the last minute";
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
    // The whole card filters on a click; the name is its button for the keyboard.
    card.addEventListener("click", () => setFilter("queue", state.filter.queue === name ? "" : name));
    return card;
  });
  if (cards.length) $("queues").replaceChildren(...cards);
  const total = names.reduce((sum, name) => sum + perMinute(name), 0);
  $("rate").textContent = names.length ? `${total} completed/min` : "";
  draw(); // the chart's window slides on as minutes pass
  const select = $("filter-queue");
  for (const name of names) {
    if (![...select.options].some((o) => o.value === name)) select.add(new Option(name, name));
  }
}

// Filters changed (queue, status, id, created_by, tag, meta): the table is listed again,
// and the bulk operations take what it now shows (or are off: bulk.js).
export function setFilter(key, value) {
  setFilters({ [key]: value });
}

export function setFilters(changes) {
  const changed = Object.entries(changes).filter(([key, value]) => state.filter[key] !== value);
  for (const [key, value] of Object.entries(changes)) {
    state.filter[key] = value;
    $("filter-" + key).value = value;
  }
  renderBulk();
  renderQueues();
  if (changed.length) loadJobs().catch((err) => toast(err.message));
}

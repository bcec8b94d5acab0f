// What every part of the page shares: the limits, the one state object, small helpers.

export const MAX_ROWS = 200; // jobs kept in the table (more once older pages are shown)
export const LIST_LIMIT = 100; // jobs per page: when the page opens, a filter changes, or older ones are asked for
export const RATE_WINDOW_MS = 60000; // throughput: completions in the last minute
export const COUNTS_EVERY_MS = 1000; // queue counts refresh at most this often while events flow
export const RECORDS_PER_TICK = 20; // jobs first seen in an event: records fetched per 500 ms
export const STATUSES = ["scheduled", "queued", "running", "cancelling", "completed", "failed", "cancelled"];
export const TERMINAL = new Set(["completed", "failed", "cancelled"]);

export const state = {
  token: null,
  ws: null,
  nextId: 1,
  pending: new Map(), // request id -> {resolve, reject}
  lastSeq: null, // highest seq seen: where a reconnect resumes
  retryMs: 500,
  jobs: new Map(), // job id -> the job as last known (a record, updated by events)
  rows: new Map(), // job id -> its <tr>
  dirty: new Set(), // job ids whose row must be redrawn
  reorder: false,
  maxRows: MAX_ROWS, // the newest this many rows stay; each older page shown adds its size
  cursor: null, // the oldest job shown, while older ones may exist: where the next page starts
  frame: 0,
  loading: null, // events that arrived while a list was loading, re-applied after it
  queues: {}, // queue -> {status: count}
  paused: {}, // queue -> its state, for the paused ones (the `queues` op)
  completions: new Map(), // queue -> [{second, count}] within RATE_WINDOW_MS
  countsTimer: 0,
  filter: { queue: "", status: "", tag: "", meta: "" }, // meta: "key=value" as typed
  selected: null,
  detailTimer: 0,
  needRecord: new Set(), // jobs known only from events: their attempts, created_at, ...
  unsure: new Set(), // jobs seen in events while a tag or meta filter is set: shown once their record matches
};

export const $ = (id) => document.getElementById(id);

export function badge(status) {
  const span = document.createElement("span");
  span.className = "badge " + status;
  span.textContent = status;
  return span;
}

export function cancellable(job) {
  return !TERMINAL.has(job.status) && job.status !== "cancelling";
}

// The tag and meta filters as the list_jobs op takes them (events carry neither, so a
// job first seen in an event is shown only once its record matches).
export function labelFilter() {
  const { tag, meta } = state.filter;
  const fields = {};
  if (tag) fields.tags = [tag];
  if (meta) {
    const at = meta.indexOf("=");
    if (at < 1) throw new Error("a meta filter is key=value, e.g. tenant=acme");
    fields.meta = { [meta.slice(0, at)]: meta.slice(at + 1) };
  }
  return fields;
}

export function matchesLabels(record) {
  const { tags, meta } = labelFilter();
  const has = record.tags || [];
  const own = record.meta || {};
  return (tags || []).every((t) => has.includes(t)) && Object.entries(meta || {}).every(([k, v]) => own[k] === v);
}

export function toast(text) {
  const item = document.createElement("div");
  item.className = "toast";
  item.textContent = text;
  $("toasts").append(item);
  setTimeout(() => item.remove(), 6000);
}

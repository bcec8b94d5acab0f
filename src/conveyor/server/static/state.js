// What every part of the page shares: the limits, the one state object, small helpers.

export const MAX_ROWS = 200; // jobs kept in the table (more once older pages are shown)
export const LIST_LIMIT = 100; // jobs per page: when the page opens, a filter changes, or older ones are asked for
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
  countsTimer: 0,
  // "" is no filter; meta is "key=value" as typed. Each is tested in matchesFilter (jobs.js).
  filter: { queue: "", status: "", id: "", created_by: "", tag: "", meta: "" },
  selected: null,
  detailTimer: 0,
  needRecord: new Set(), // jobs known only from events: their attempts, created_at, ...
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

// The meta filter as typed ("key=value"): the pair it asks for, or null when it names no key.
function metaPair(text) {
  const at = text.indexOf("=");
  return at < 1 ? null : [text.slice(0, at), text.slice(at + 1)];
}

// The tag and meta filters as the list_jobs op takes them; a meta filter that names no key
// throws (the caller shows why). Events carry neither: see matchesFilter (jobs.js).
export function labelFilter() {
  const { tag, meta } = state.filter;
  const fields = {};
  if (tag) fields.tags = [tag];
  if (meta) {
    const pair = metaPair(meta);
    if (!pair) throw new Error("a meta filter is key=value, e.g. tenant=acme");
    fields.meta = { [pair[0]]: pair[1] };
  }
  return fields;
}

// Whether a job's record has the filters' tag and meta pair (a meta filter that names no
// key matches none; it never throws, as it runs for records that arrive at any time).
export function matchesLabels(record) {
  const { tag, meta } = state.filter;
  if (tag && !(record.tags || []).includes(tag)) return false;
  if (!meta) return true;
  const pair = metaPair(meta);
  const own = record.meta || {};
  return pair !== null && Object.hasOwn(own, pair[0]) && own[pair[0]] === pair[1];
}

export function toast(text) {
  const item = document.createElement("div");
  item.className = "toast";
  item.textContent = text;
  $("toasts").append(item);
  setTimeout(() => item.remove(), 6000);
}

"use strict";
// The conveyor dashboard. One websocket carries every request and every event; the page
// keeps a small state object and redraws only the rows that changed, once per frame.
// No framework and no build step: this file is served as it is.

const MAX_ROWS = 200; // jobs kept in the table; the oldest leave first
const LIST_LIMIT = 100; // jobs loaded when the page opens or a filter changes
const RATE_WINDOW_MS = 60000; // throughput: completions in the last minute
const COUNTS_EVERY_MS = 1000; // queue counts refresh at most this often while events flow
const STATUSES = ["scheduled", "queued", "running", "cancelling", "completed", "failed", "cancelled"];
const TERMINAL = new Set(["completed", "failed", "cancelled"]);
const RECORDS_PER_TICK = 20; // jobs first seen in an event: records fetched per 500 ms

const $ = (id) => document.getElementById(id);

const state = {
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
  frame: 0,
  loading: null, // events that arrived while a list was loading, re-applied after it
  queues: {}, // queue -> {status: count}
  completions: new Map(), // queue -> [{second, count}] within RATE_WINDOW_MS
  countsTimer: 0,
  filter: { queue: "", status: "" },
  selected: null,
  detailTimer: 0,
  needRecord: new Set(), // jobs known only from events: their attempts, created_at, ...
};

// -- connection ----------------------------------------------------------------------

function readToken() {
  const url = new URL(location.href);
  const given = url.searchParams.get("token");
  if (given) {
    sessionStorage.setItem("conveyor.token", given);
    url.searchParams.delete("token"); // out of the address bar, history and screenshots
    history.replaceState(null, "", url);
  }
  return given || sessionStorage.getItem("conveyor.token");
}

function authHeaders() {
  return state.token ? { Authorization: "Bearer " + state.token } : {};
}

async function connect() {
  setConn("connecting…", false);
  let response;
  try {
    // One plain request first: it tells a refused token (401) from a server that is
    // down, which a browser's WebSocket cannot, and brings the queue counts.
    response = await fetch("/api/queues", { headers: authHeaders(), cache: "no-store" });
  } catch (err) {
    return retry();
  }
  if (response.status === 401) return askToken(Boolean(state.token));
  if (!response.ok) return retry();
  setCounts((await response.json()).queues);
  const url = new URL("/", location.href);
  url.protocol = location.protocol === "https:" ? "wss:" : "ws:";
  if (state.token) url.searchParams.set("token", state.token);
  const ws = (state.ws = new WebSocket(url));
  ws.onopen = () => opened();
  ws.onmessage = (message) => received(JSON.parse(message.data));
  ws.onclose = () => closed(ws);
}

async function opened() {
  state.retryMs = 500;
  setConn("live", true);
  const resuming = state.lastSeq !== null;
  try {
    // Subscribed before listing, so nothing falls between the list and the stream. On a
    // reconnect the server first replays every transition after lastSeq.
    const subscribed = call("subscribe", resuming ? { since: state.lastSeq } : {});
    if (!resuming) await loadJobs();
    await subscribed;
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

function call(op, fields = {}) {
  const ws = state.ws;
  if (!ws || ws.readyState !== WebSocket.OPEN) return Promise.reject(new Error("not connected"));
  const id = state.nextId++;
  ws.send(JSON.stringify({ id, op, ...fields }));
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
  else waiter.reject(new Error(message.message));
}

// -- jobs ----------------------------------------------------------------------------

function matchesFilter(queue, status) {
  const f = state.filter;
  return (!f.queue || f.queue === queue) && (!f.status || f.status === status);
}

function applyEvent(event) {
  // Transitions arrive in seq order; a progress report repeats its job's latest seq.
  if (state.lastSeq === null || event.seq > state.lastSeq) state.lastSeq = event.seq;
  if (state.loading) state.loading.push(event);
  if (event.status === "completed") countCompletion(event.queue, Date.parse(event.at));
  scheduleCounts();
  let job = state.jobs.get(event.job_id);
  if (!job) {
    if (!matchesFilter(event.queue, event.status)) return;
    job = { id: event.job_id, queue: event.queue, created_at: event.at, attempts: null };
    state.jobs.set(job.id, job);
    state.needRecord.add(job.id);
  }
  const before = job.status;
  if (before !== event.status && job.attempts !== null) {
    // The store counts an attempt at each start, and a rerun starts again from zero.
    if (event.status === "running") job.attempts += 1;
    else if (event.status === "queued" && TERMINAL.has(before)) job.attempts = 0;
  }
  job.status = event.status;
  job.eventAt = Date.parse(event.at);
  job.progress = event.progress || {};
  job.message = event.message;
  if (event.status === "queued" || event.status === "running") job.error = null;
  markDirty(job.id);
  if (state.selected === job.id) scheduleDetail();
}

function mergeJob(record) {
  const job = state.jobs.get(record.id);
  if (job) {
    // A record read before the latest event we applied must not undo that event.
    const stale = job.eventAt && Date.parse(record.updated_at) < job.eventAt;
    const { status, progress, message, attempts, error, ...rest } = record;
    Object.assign(job, stale ? rest : record);
  } else if (matchesFilter(record.queue, record.status)) state.jobs.set(record.id, { ...record });
  markDirty(record.id);
}

function fetchRecords() {
  // Events carry no attempts or creation time: fetch the records of new jobs, a bounded
  // number per tick, so a burst of jobs never becomes a burst of requests.
  for (const id of [...state.needRecord].slice(0, RECORDS_PER_TICK)) {
    state.needRecord.delete(id);
    if (!state.jobs.has(id)) continue;
    call("job_status", { job_id: id })
      .then((record) => state.jobs.has(id) && mergeJob(record))
      .catch(() => {}); // gone (purged) or disconnected: the row keeps what events said
  }
}

async function loadJobs() {
  const fields = { limit: LIST_LIMIT };
  if (state.filter.queue) fields.queue = state.filter.queue;
  if (state.filter.status) fields.status = state.filter.status;
  state.loading = [];
  try {
    const { jobs } = await call("list_jobs", fields);
    const during = state.loading;
    state.loading = null;
    state.jobs.clear();
    state.rows.clear();
    $("jobs").replaceChildren();
    for (const job of jobs) state.jobs.set(job.id, { ...job });
    for (const job of jobs) markDirty(job.id);
    // Events that crossed the list on the wire: applied again, in order, they end on
    // each job's latest state whichever came first.
    for (const event of during) applyEvent(event);
    state.reorder = true;
  } finally {
    state.loading = null;
  }
}

function markDirty(id) {
  state.dirty.add(id);
  if (!state.frame) state.frame = requestAnimationFrame(flush);
}

function flush() {
  state.frame = 0;
  for (const id of state.dirty) {
    const job = state.jobs.get(id);
    if (job) renderRow(job);
  }
  state.dirty.clear();
  if (state.reorder) reorderRows();
}

function reorderRows() {
  state.reorder = false;
  const ids = [...state.rows.keys()].sort().reverse(); // ULIDs: newest first
  for (const id of ids.slice(MAX_ROWS)) {
    state.rows.delete(id);
    state.jobs.delete(id);
    state.needRecord.delete(id);
  }
  $("jobs").replaceChildren(...ids.slice(0, MAX_ROWS).map((id) => state.rows.get(id)));
  $("empty").hidden = state.rows.size > 0;
  $("shown").textContent = state.rows.size ? `${state.rows.size} shown` : "";
}

function percent(job) {
  if (job.status === "completed") return 100;
  const p = job.progress || {};
  return p.total ? Math.max(0, Math.min(100, Math.round((100 * p.current) / p.total))) : 0;
}

function renderRow(job) {
  let tr = state.rows.get(job.id);
  if (!tr) {
    tr = document.createElement("tr");
    tr.dataset.jobId = job.id;
    tr.innerHTML =
      "<td class='id'></td><td></td><td><span class='badge'></span></td>" +
      "<td><div class='progress'><div class='track'><span class='fill'></span></div>" +
      "<span class='pct'></span></div></td><td class='message'></td><td></td><td></td>" +
      "<td><button data-action='cancel'>Cancel</button> <button data-action='rerun'>Rerun</button></td>";
    tr.addEventListener("click", (e) => {
      const action = e.target.dataset.action;
      if (action) {
        e.stopPropagation();
        act(action, job.id);
      } else openDetail(job.id);
    });
    state.rows.set(job.id, tr);
    state.reorder = true;
  }
  const cells = tr.children;
  const p = job.progress || {};
  const pct = percent(job);
  cells[0].textContent = job.id;
  cells[1].textContent = job.queue;
  const badge = cells[2].firstChild;
  badge.textContent = job.status;
  badge.className = "badge " + job.status;
  const fill = cells[3].querySelector(".fill");
  fill.style.width = pct + "%";
  fill.className = "fill " + job.status;
  cells[3].querySelector(".pct").textContent = p.total || job.status === "completed" ? pct + "%" : "";
  cells[4].textContent = p.message || job.error || job.message || "";
  cells[4].title = cells[4].textContent;
  cells[5].textContent = job.attempts === null ? "" : `${job.attempts}/${job.max_attempts ?? "?"}`;
  cells[6].textContent = new Date(job.created_at).toLocaleTimeString();
  const [cancel, rerun] = cells[7].querySelectorAll("button");
  cancel.hidden = TERMINAL.has(job.status) || job.status === "cancelling";
  rerun.hidden = !TERMINAL.has(job.status);
  tr.classList.toggle("selected", state.selected === job.id);
}

async function act(action, id) {
  try {
    const fields = action === "rerun" ? { job_id: id, by: "dashboard" } : { job_id: id };
    mergeJob(await call(action, fields));
    if (state.selected === id) scheduleDetail();
  } catch (err) {
    toast(`${action} ${id}: ${err.message}`);
  }
}

// -- queues --------------------------------------------------------------------------

function scheduleCounts() {
  if (state.countsTimer) return;
  state.countsTimer = setTimeout(async () => {
    try {
      setCounts((await call("queue_counts")).queues);
    } catch (err) {
      /* disconnected: the reconnect brings fresh counts */
    } finally {
      state.countsTimer = 0;
    }
  }, COUNTS_EVERY_MS);
}

function countCompletion(queue, at) {
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

function setCounts(queues) {
  state.queues = queues;
  renderQueues();
}

function renderQueues() {
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
    head.append(title, rate);
    const counts = document.createElement("div");
    counts.className = "counts";
    for (const status of STATUSES) {
      const n = state.queues[name][status] || 0;
      if (!n && status !== "queued" && status !== "running") continue;
      const badge = document.createElement("span");
      badge.className = "badge " + status;
      badge.dataset.status = status;
      badge.textContent = `${status} ${n}`;
      counts.append(badge);
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

function setFilter(key, value) {
  state.filter[key] = value;
  $("filter-" + key).value = value;
  renderQueues();
  loadJobs().catch((err) => toast(err.message));
}

// -- job view ------------------------------------------------------------------------

function openDetail(id) {
  state.selected = id;
  $("detail").hidden = false;
  for (const [rowId, tr] of state.rows) tr.classList.toggle("selected", rowId === id);
  refreshDetail();
}

function closeDetail() {
  state.selected = null;
  $("detail").hidden = true;
  for (const tr of state.rows.values()) tr.classList.remove("selected");
}

function scheduleDetail() {
  if (state.detailTimer) return;
  state.detailTimer = setTimeout(() => {
    state.detailTimer = 0;
    refreshDetail();
  }, 250);
}

function show(text) {
  return text === null || text === undefined ? "" : typeof text === "string" ? text : JSON.stringify(text, null, 2);
}

async function refreshDetail() {
  const id = state.selected;
  if (!id) return;
  let job, history;
  try {
    [job, { history }] = await Promise.all([call("job_status", { job_id: id }), call("history", { job_id: id })]);
  } catch (err) {
    return toast(`job ${id}: ${err.message}`);
  }
  if (state.selected !== id) return;
  mergeJob(job);
  $("detail-title").textContent = job.id;
  const p = job.progress || {};
  const rows = [
    ["queue", job.queue],
    ["status", job.status],
    ["progress", p.total ? `${p.current}/${p.total} (${percent(job)}%)` : p.current ? String(p.current) : ""],
    ["attempts", `${job.attempts}/${job.max_attempts}`],
    ["priority", String(job.priority)],
    ["created by", job.created_by],
    ["created", job.created_at],
    ["scheduled for", job.scheduled_at],
    ["started", job.started_at],
    ["finished", job.finished_at],
    ["timeout", job.timeout ? `${job.timeout}s` : null],
  ];
  $("detail-fields").replaceChildren(
    ...rows
      .filter(([, value]) => value !== null && value !== undefined && value !== "")
      .flatMap(([name, value]) => {
        const dt = document.createElement("dt");
        dt.textContent = name;
        const dd = document.createElement("dd");
        if (name === "status") {
          const badge = document.createElement("span");
          badge.className = "badge " + value;
          badge.textContent = value;
          dd.append(badge);
        } else dd.textContent = name.endsWith("ed") && value.includes("T") ? new Date(value).toLocaleString() : value;
        return [dt, dd];
      }),
  );
  $("detail-payload").textContent = show(job.payload);
  for (const [key, value] of [["result", job.result], ["error", job.error], ["traceback", job.traceback]]) {
    $(`detail-${key}`).textContent = show(value);
    $(`detail-${key}-block`).hidden = value === null || value === undefined;
  }
  $("detail-cancel").hidden = TERMINAL.has(job.status) || job.status === "cancelling";
  $("detail-rerun").hidden = !TERMINAL.has(job.status);
  $("detail-history").replaceChildren(
    ...history.map((entry) => {
      const li = document.createElement("li");
      const badge = document.createElement("span");
      badge.className = "badge " + entry.status;
      badge.textContent = entry.status;
      const time = document.createElement("time");
      time.dateTime = entry.at;
      time.textContent = new Date(entry.at).toLocaleString();
      li.append(badge, time);
      if (entry.message) {
        const note = document.createElement("span");
        note.className = "note";
        note.textContent = entry.message;
        li.append(note);
      }
      return li;
    }),
  );
}

// -- the rest ------------------------------------------------------------------------

function toast(text) {
  const item = document.createElement("div");
  item.className = "toast";
  item.textContent = text;
  $("toasts").append(item);
  setTimeout(() => item.remove(), 6000);
}

function start() {
  state.token = readToken();
  $("filter-queue").addEventListener("change", (e) => setFilter("queue", e.target.value));
  $("filter-status").addEventListener("change", (e) => setFilter("status", e.target.value));
  $("detail-close").addEventListener("click", closeDetail);
  $("detail-cancel").addEventListener("click", () => act("cancel", state.selected));
  $("detail-rerun").addEventListener("click", () => act("rerun", state.selected));
  document.addEventListener("keydown", (e) => e.key === "Escape" && closeDetail());
  $("token-form").addEventListener("submit", () => {
    state.token = $("token-input").value.trim();
    sessionStorage.setItem("conveyor.token", state.token);
    connect();
  });
  setInterval(fetchRecords, 500);
  setInterval(renderQueues, 5000); // the per-minute rates decay even when nothing happens
  connect();
}

start();

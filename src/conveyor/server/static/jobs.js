// The jobs table: records from list_jobs, kept current by events, redrawn once a frame
// and only where something changed.

import {
  $,
  LIST_LIMIT,
  MAX_ROWS,
  RECORDS_PER_TICK,
  TERMINAL,
  cancellable,
  labelFilter,
  matchesLabels,
  state,
  toast,
} from "./state.js";
import { call } from "./connection.js";
import { countCompletion, scheduleCounts } from "./queues.js";
import { openDetail, scheduleDetail } from "./detail.js";

function matchesFilter(queue, status) {
  const f = state.filter;
  return (!f.queue || f.queue === queue) && (!f.status || f.status === status);
}

export function applyEvent(event) {
  // Transitions arrive in seq order; a progress report repeats its job's latest seq.
  if (state.lastSeq === null || BigInt(event.seq) > BigInt(state.lastSeq)) state.lastSeq = event.seq;
  if (state.loading) state.loading.push(event);
  if (event.status === "completed") countCompletion(event.queue, Date.parse(event.at));
  scheduleCounts();
  let job = state.jobs.get(event.job_id);
  if (!job) {
    if (!matchesFilter(event.queue, event.status)) return;
    if (state.filter.tag || state.filter.meta) {
      state.unsure.add(event.job_id); // its tags and meta are on its record only
      return;
    }
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

export function mergeJob(record) {
  const job = state.jobs.get(record.id);
  if (job) {
    // A record read before the latest event we applied must not undo that event.
    const stale = job.eventAt && Date.parse(record.updated_at) < job.eventAt;
    const { status, progress, message, attempts, error, ...rest } = record;
    Object.assign(job, stale ? rest : record);
  } else if (matchesFilter(record.queue, record.status) && matchesLabels(record)) {
    state.jobs.set(record.id, { ...record });
  } else return;
  markDirty(record.id);
}

export function fetchRecords() {
  // Events carry no attempts or creation time: fetch the records of new jobs, a bounded
  // number per tick, so a burst of jobs never becomes a burst of requests.
  for (const id of [...state.needRecord].slice(0, RECORDS_PER_TICK)) {
    state.needRecord.delete(id);
    if (!state.jobs.has(id)) continue;
    call("job_status", { job_id: id })
      .then((record) => state.jobs.has(id) && mergeJob(record))
      .catch(() => {}); // gone (purged) or disconnected: the row keeps what events said
  }
  // Jobs seen in events while a tag or meta filter is set: their records say whether
  // they match (bounded per tick alike).
  for (const id of [...state.unsure].slice(0, RECORDS_PER_TICK)) {
    state.unsure.delete(id);
    if (state.jobs.has(id)) continue;
    call("job_status", { job_id: id })
      .then(mergeJob)
      .catch(() => {});
  }
}

function listFields(cursor) {
  const fields = { limit: LIST_LIMIT, ...labelFilter() };
  if (state.filter.queue) fields.queue = state.filter.queue;
  if (state.filter.status) fields.status = state.filter.status;
  if (cursor) fields.cursor = cursor;
  return fields;
}

// The newest page of jobs matching the filter, replacing the table.
export async function loadJobs() {
  const fields = listFields(null); // a meta filter without "=" throws here, shown as a toast
  state.loading = [];
  state.unsure.clear();
  try {
    const { jobs, cursor } = await call("list_jobs", fields);
    const during = state.loading;
    state.loading = null;
    state.jobs.clear();
    state.rows.clear();
    $("jobs").replaceChildren();
    state.maxRows = MAX_ROWS;
    state.cursor = cursor;
    for (const job of jobs) state.jobs.set(job.id, { ...job });
    for (const job of jobs) markDirty(job.id);
    // Events that crossed the list on the wire: applied again, in order, they end on
    // each job's latest state whichever came first.
    for (const event of during) applyEvent(event);
    state.reorder = true;
    redraw();
  } finally {
    state.loading = null;
  }
}

// The next page, older than every job shown, added below them.
export async function loadOlder() {
  const filter = JSON.stringify(state.filter);
  const { jobs, cursor } = await call("list_jobs", listFields(state.cursor));
  if (filter !== JSON.stringify(state.filter)) return; // the filter changed meanwhile
  state.maxRows += jobs.length;
  state.cursor = cursor;
  for (const job of jobs) {
    if (!state.jobs.has(job.id)) state.jobs.set(job.id, { ...job });
    markDirty(job.id);
  }
  state.reorder = true;
  redraw();
}

function markDirty(id) {
  state.dirty.add(id);
  redraw();
}

function redraw() {
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
  const kept = ids.slice(0, state.maxRows);
  for (const id of ids.slice(state.maxRows)) {
    state.rows.delete(id);
    state.jobs.delete(id);
    state.needRecord.delete(id);
  }
  // Rows that left at the bottom are older jobs again: the next page starts after the
  // oldest row kept, so showing older ones leaves no gap.
  if (kept.length < ids.length) state.cursor = kept[kept.length - 1];
  $("jobs").replaceChildren(...kept.map((id) => state.rows.get(id)));
  $("empty").hidden = state.rows.size > 0;
  $("shown").textContent = state.rows.size ? `${state.rows.size} shown` : "";
  $("older").hidden = state.cursor === null;
}

export function percent(job) {
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
      "<td class='id'></td><td></td><td class='tags'></td><td><span class='badge'></span></td>" +
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
  cells[2].textContent = (job.tags || []).join(", ");
  const badge = cells[3].firstChild;
  badge.textContent = job.status;
  badge.className = "badge " + job.status;
  const fill = cells[4].querySelector(".fill");
  fill.style.width = pct + "%";
  fill.className = "fill " + job.status;
  cells[4].querySelector(".pct").textContent = p.total || job.status === "completed" ? pct + "%" : "";
  cells[5].textContent = p.message || job.error || job.message || "";
  cells[5].title = cells[5].textContent;
  cells[6].textContent = job.attempts === null ? "" : `${job.attempts}/${job.max_attempts ?? "?"}`;
  cells[7].textContent = new Date(job.created_at).toLocaleTimeString();
  const [cancel, rerun] = cells[8].querySelectorAll("button");
  cancel.hidden = !cancellable(job);
  rerun.hidden = !TERMINAL.has(job.status);
  tr.classList.toggle("selected", state.selected === job.id);
}

// Cancel or rerun (the row's buttons and the job view's): the reply is the job's record.
export async function act(action, id) {
  try {
    const fields = action === "rerun" ? { job_id: id, by: "dashboard" } : { job_id: id };
    mergeJob(await call(action, fields));
    if (state.selected === id) scheduleDetail();
  } catch (err) {
    toast(`${action} ${id}: ${err.message}`);
  }
}

// The jobs table: records from list_jobs, kept current by events, redrawn once a frame
// and only where something changed. Each row is focusable: the arrow keys move between
// rows, Enter opens the job's view.

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
import { scheduleCounts } from "./queues.js";
import { openDetail, scheduleDetail } from "./detail.js";
import { countFinished } from "./throughput.js";

const CANDIDATES_MAX = 1000; // jobs whose record must say if they match; past it, new ones are not shown
const candidates = new Set(); // jobs seen in events whose creator, tags or meta the filters need

// Whether a job (a record, or what an event says of one) is one the filters show; undefined
// when that turns on what only its record says (its creator, tags and meta: events carry
// none of them), so the record is read first (candidates). Every filter is tested here
// and sent by listFields; bulk.js sends those the bulk operations take.
export function matchesFilter(job) {
  const f = state.filter;
  if (f.queue && f.queue !== job.queue) return false;
  if (f.status && f.status !== job.status) return false;
  if (f.id && f.id !== job.id) return false;
  if (!f.created_by && !f.tag && !f.meta) return true;
  if (!("created_by" in job)) return undefined; // what an event says: no record yet
  return (!f.created_by || job.created_by === f.created_by) && matchesLabels(job);
}

export function applyEvent(event) {
  // Transitions arrive in seq order; a progress report repeats its job's latest seq.
  if (state.lastSeq === null || BigInt(event.seq) > BigInt(state.lastSeq)) state.lastSeq = event.seq;
  if (state.loading) state.loading.push(event);
  countFinished(event);
  scheduleCounts();
  let job = state.jobs.get(event.job_id);
  if (!job) {
    const match = matchesFilter({ id: event.job_id, queue: event.queue, status: event.status });
    if (match === undefined && candidates.size < CANDIDATES_MAX) candidates.add(event.job_id);
    if (!match) return;
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
  } else if (matchesFilter(record)) state.jobs.set(record.id, { ...record });
  else return;
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
  for (const id of [...candidates].slice(0, RECORDS_PER_TICK)) {
    candidates.delete(id);
    call("job_status", { job_id: id })
      .then((record) => state.jobs.has(id) || mergeJob(record)) // shown if it matches
      .catch(() => {});
  }
}

// The list_jobs fields of the filters; a meta filter that names no key throws here.
function listFields(cursor) {
  const fields = { limit: LIST_LIMIT, ...labelFilter() };
  if (state.filter.queue) fields.queue = state.filter.queue;
  if (state.filter.status) fields.status = state.filter.status;
  if (state.filter.created_by) fields.created_by = state.filter.created_by;
  if (cursor) fields.cursor = cursor;
  return fields;
}

// A page of the jobs the filters match: with an id, that job alone if it matches.
async function listPage(fields) {
  const id = state.filter.id;
  if (!id) return call("list_jobs", fields);
  try {
    const job = await call("job_status", { job_id: id });
    return { jobs: matchesFilter(job) ? [job] : [], cursor: null };
  } catch (err) {
    if (err.code !== "unknown_job" && err.code !== "invalid") throw err;
    if (err.code === "invalid") toast(`job id: ${err.message}`);
    return { jobs: [], cursor: null };
  }
}

// The newest page of jobs matching the filter, replacing the table.
export async function loadJobs() {
  const fields = listFields(null); // a refused filter throws before the table changes
  state.loading = [];
  candidates.clear();
  try {
    const { jobs, cursor } = await listPage(fields);
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
  const { jobs, cursor } = await listPage(listFields(state.cursor));
  if (filter !== JSON.stringify(state.filter)) return; // the filters changed meanwhile
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
    tr = newRow(job.id);
    state.rows.set(job.id, tr);
    state.reorder = true;
  }
  const cells = tr.children;
  const p = job.progress || {};
  const pct = percent(job);
  const known = Boolean(p.total) || job.status === "completed";
  cells[0].textContent = job.id;
  cells[0].title = job.id;
  cells[1].textContent = job.queue;
  cells[2].textContent = (job.tags || []).join(", ");
  const badge = cells[3].firstChild;
  badge.textContent = job.status;
  badge.className = "badge " + job.status;
  const track = cells[4].querySelector(".track");
  if (known) {
    track.setAttribute("aria-valuenow", String(pct));
    track.setAttribute("aria-valuetext", p.total ? `${pct}% (${p.current} of ${p.total})` : `${pct}%`);
  } else {
    track.removeAttribute("aria-valuenow"); // indeterminate: nothing reported
    track.setAttribute("aria-valuetext", "no progress reported");
  }
  const fill = cells[4].querySelector(".fill");
  fill.style.width = pct + "%";
  fill.className = "fill " + job.status;
  cells[4].querySelector(".pct").textContent = known ? pct + "%" : "";
  // A failed job shows its error (the event's message is the error's text); the cell
  // cuts it to one line, its title and the job view hold it whole.
  const failed = job.status === "failed";
  cells[5].textContent = failed ? job.error || job.message || "" : p.message || job.message || "";
  cells[5].title = cells[5].textContent;
  cells[5].classList.toggle("error", failed);
  cells[6].textContent = job.attempts === null ? "" : `${job.attempts}/${job.max_attempts ?? "?"}`;
  cells[7].textContent = new Date(job.created_at).toLocaleTimeString();
  const [cancel, rerun] = cells[8].querySelectorAll("button");
  cancel.hidden = !cancellable(job);
  rerun.hidden = !TERMINAL.has(job.status);
  tr.classList.toggle("selected", state.selected === job.id);
  if (state.selected === job.id) tr.setAttribute("aria-current", "true");
  else tr.removeAttribute("aria-current");
}

function newRow(id) {
  const tr = document.createElement("tr");
  tr.dataset.jobId = id;
  tr.tabIndex = 0;
  tr.innerHTML =
    "<td class='id'></td><td></td><td class='tags'></td><td><span class='badge'></span></td>" +
    "<td><div class='progress'><div class='track' role='progressbar' aria-valuemin='0'" +
    " aria-valuemax='100'><span class='fill'></span></div><span class='pct' aria-hidden='true'>" +
    "</span></div></td><td class='message'></td><td></td><td></td>" +
    "<td class='row-actions'><button data-action='cancel'>Cancel</button>" +
    " <button data-action='rerun'>Rerun</button></td>";
  tr.querySelector(".track").setAttribute("aria-label", `progress of job ${id}`);
  for (const button of tr.querySelectorAll("button")) {
    button.setAttribute("aria-label", `${button.textContent.toLowerCase()} job ${id}`);
  }
  tr.addEventListener("click", (e) => {
    const action = e.target.dataset.action;
    if (action) {
      e.stopPropagation();
      act(action, id);
    } else openDetail(id);
  });
  tr.addEventListener("keydown", (e) => {
    if (e.target !== tr) return; // a key on one of its buttons is the button's
    const next = { ArrowDown: tr.nextElementSibling, ArrowUp: tr.previousElementSibling }[e.key];
    if (e.key === "Enter") {
      e.preventDefault();
      openDetail(id);
    } else if (next) {
      e.preventDefault();
      next.focus();
    }
  });
  return tr;
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

// The job view: every field of one job's record, its payload, result, error and traceback,
// and its history timeline; refreshed (at most four times a second) while events arrive.

import { $, badge, cancellable, state, TERMINAL, toast } from "./state.js";
import { call, connected } from "./connection.js";
import { mergeJob, percent } from "./jobs.js";
import { setFilter } from "./queues.js";

export function openDetail(id) {
  showDetail(id);
  refreshDetail();
}

function showDetail(id) {
  state.selected = id;
  $("detail").hidden = false;
  for (const [rowId, tr] of state.rows) tr.classList.toggle("selected", rowId === id);
  history.replaceState(null, "", "#job=" + encodeURIComponent(id)); // a link to this view
}

export function closeDetail() {
  state.selected = null;
  $("detail").hidden = true;
  for (const tr of state.rows.values()) tr.classList.remove("selected");
  history.replaceState(null, "", location.pathname + location.search);
}

// The address names a job (#job=ID, from a shared link): show it, filled in once connected.
export function detailFromAddress() {
  const id = new URLSearchParams(location.hash.slice(1)).get("job");
  if (id && id !== state.selected) {
    showDetail(id);
    if (connected()) refreshDetail();
  } else if (!id && state.selected) closeDetail();
}

export function scheduleDetail() {
  if (state.detailTimer) return;
  state.detailTimer = setTimeout(() => {
    state.detailTimer = 0;
    refreshDetail();
  }, 250);
}

function show(value) {
  if (value === null || value === undefined) return "";
  return typeof value === "string" ? value : JSON.stringify(value, null, 2);
}

function fields(job) {
  const p = job.progress || {};
  return [
    ["queue", job.queue],
    ["status", job.status],
    ["progress", p.total ? `${p.current}/${p.total} (${percent(job)}%)` : p.current ? String(p.current) : ""],
    ["attempts", `${job.attempts}/${job.max_attempts}`],
    ["priority", String(job.priority)],
    ["created by", job.created_by],
    ["tags", (job.tags || []).join(", ")],
    ["created", job.created_at],
    ["scheduled for", job.scheduled_at],
    ["started", job.started_at],
    ["finished", job.finished_at],
    ["timeout", job.timeout ? `${job.timeout}s` : null],
  ].filter(([, value]) => value !== null && value !== undefined && value !== "");
}

function field([name, value]) {
  const dt = document.createElement("dt");
  dt.textContent = name;
  const dd = document.createElement("dd");
  if (name === "status") dd.append(badge(value));
  else dd.textContent = name.endsWith("ed") && value.includes("T") ? new Date(value).toLocaleString() : value;
  return [dt, dd];
}

// One meta pair, as text (whatever it holds); a click on it lists the jobs that have it.
function metaPair(key, value) {
  const dt = document.createElement("dt");
  dt.textContent = key;
  const dd = document.createElement("dd");
  const link = document.createElement("button");
  link.className = "plain pair";
  link.title = "list the jobs with this meta";
  link.textContent = value === "" ? "(empty)" : value;
  link.addEventListener("click", () => setFilter("meta", `${key}=${value}`));
  dd.append(link);
  return [dt, dd];
}

function historyEntry(entry) {
  const li = document.createElement("li");
  const time = document.createElement("time");
  time.dateTime = entry.at;
  time.textContent = new Date(entry.at).toLocaleString();
  li.append(badge(entry.status), time);
  if (entry.message) {
    const note = document.createElement("span");
    note.className = "note";
    note.textContent = entry.message;
    li.append(note);
  }
  return li;
}

export async function refreshDetail() {
  const id = state.selected;
  if (!id) return;
  let job, history;
  try {
    [job, { history }] = await Promise.all([call("job_status", { job_id: id }), call("history", { job_id: id })]);
  } catch (err) {
    if (err.code === "unknown_job" && state.selected === id) closeDetail(); // purged, or a bad link
    return toast(`job ${id}: ${err.message}`);
  }
  if (state.selected !== id) return;
  mergeJob(job);
  $("detail-title").textContent = job.id;
  $("detail-fields").replaceChildren(...fields(job).flatMap(field));
  const meta = Object.entries(job.meta || {});
  $("detail-meta").replaceChildren(...meta.flatMap(([key, value]) => metaPair(key, value)));
  $("detail-meta-block").hidden = meta.length === 0;
  $("detail-payload").textContent = show(job.payload);
  for (const [key, value] of [["result", job.result], ["error", job.error], ["traceback", job.traceback]]) {
    $(`detail-${key}`).textContent = show(value);
    $(`detail-${key}-block`).hidden = value === null || value === undefined;
  }
  $("detail-cancel").hidden = !cancellable(job);
  $("detail-rerun").hidden = !TERMINAL.has(job.status);
  $("detail-history").replaceChildren(...history.map(historyEntry));
}

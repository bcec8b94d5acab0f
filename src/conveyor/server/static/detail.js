// The job view: every field of one job's record, its payload, result, error and traceback,
// and its history timeline; refreshed (at most four times a second) while events arrive.

import { $, badge, cancellable, state, TERMINAL, toast } from "./state.js";
import { call, connected } from "./connection.js";
import { mergeJob, percent } from "./jobs.js";
import { setFilter } from "./queues.js";

const BIG = 4000; // characters of a payload, result or traceback shown before "Show all"
const expanded = new Set(); // "key" of the values shown whole, for the job shown
let opener = null; // what had the focus when the view opened: it gets it back on close

export function openDetail(id) {
  opener = document.activeElement;
  showDetail(id);
  $("detail-title").focus(); // a screen reader says which job; Tab goes on to its buttons
  refreshDetail();
}

function showDetail(id) {
  if (state.selected !== id) expanded.clear();
  state.selected = id;
  $("detail").hidden = false;
  markSelected(id);
  history.replaceState(null, "", "#job=" + encodeURIComponent(id)); // a link to this view
}

function markSelected(id) {
  for (const [rowId, tr] of state.rows) {
    tr.classList.toggle("selected", rowId === id);
    if (rowId === id) tr.setAttribute("aria-current", "true");
    else tr.removeAttribute("aria-current");
  }
}

export function closeDetail() {
  if ($("detail").hidden) return;
  const row = state.rows.get(state.selected);
  const hadFocus = $("detail").contains(document.activeElement) || document.activeElement === document.body;
  state.selected = null;
  $("detail").hidden = true;
  markSelected(null);
  history.replaceState(null, "", location.pathname + location.search);
  // Focus goes back where the view was opened from: the job's row if it is shown.
  const back = row && row.isConnected ? row : opener && opener.isConnected ? opener : null;
  if (hadFocus && back) back.focus();
  opener = null;
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
  const values = [["payload", job.payload], ["result", job.result], ["error", job.error], ["traceback", job.traceback]];
  for (const [key, value] of values) {
    showValue(job.id, key, value);
    $(`detail-${key}-block`).hidden = key !== "payload" && (value === null || value === undefined);
  }
  $("detail-cancel").hidden = !cancellable(job);
  $("detail-rerun").hidden = !TERMINAL.has(job.status);
  $("detail-history").replaceChildren(...history.map(historyEntry));
}

// A value, cut past BIG characters with the controls to show it whole or save it whole
// (the record brings it whole: a result is at most Limits.result_bytes).
function showValue(id, key, value) {
  const text = show(value);
  const big = text.length > BIG;
  const whole = !big || expanded.has(key);
  $(`detail-${key}`).textContent = whole ? text : text.slice(0, BIG) + "\n…";
  let more = $(`detail-${key}-more`);
  if (!big) return more?.remove();
  if (!more) {
    more = document.createElement("div");
    more.id = `detail-${key}-more`;
    more.className = "more-value";
    more.innerHTML = "<span class='muted'></span> <button data-do='toggle'></button> <button data-do='save'>Download</button>";
    more.addEventListener("click", (e) => moreClicked(e.target.dataset.do, key));
    $(`detail-${key}`).after(more);
  }
  more.querySelector("span").textContent = whole
    ? `${text.length.toLocaleString()} characters`
    : `first ${BIG.toLocaleString()} of ${text.length.toLocaleString()} characters`;
  const toggle = more.querySelector("[data-do=toggle]");
  toggle.textContent = whole ? "Show less" : "Show all";
  toggle.setAttribute("aria-label", `${whole ? "show less of" : "show all of"} the ${key}`);
  toggle.setAttribute("aria-expanded", String(whole));
  more.querySelector("[data-do=save]").setAttribute("aria-label", `download the whole ${key}`);
  more.dataset.jobId = id;
}

function moreClicked(what, key) {
  const more = $(`detail-${key}-more`);
  if (what === "toggle") {
    if (expanded.has(key)) expanded.delete(key);
    else expanded.add(key);
    refreshDetail();
  } else if (what === "save") save(more.dataset.jobId, key);
}

async function save(id, key) {
  let job;
  try {
    job = await call("job_status", { job_id: id });
  } catch (err) {
    return toast(`job ${id}: ${err.message}`);
  }
  const json = key === "payload" || key === "result"; // JSON values; the others are text
  const blob = new Blob([json ? JSON.stringify(job[key], null, 2) : show(job[key])], {
    type: json ? "application/json" : "text/plain",
  });
  const link = document.createElement("a");
  link.href = URL.createObjectURL(blob);
  link.download = `${id}-${key}.${json ? "json" : "txt"}`;
  document.body.append(link);
  link.click();
  link.remove();
  setTimeout(() => URL.revokeObjectURL(link.href), 10000);
}

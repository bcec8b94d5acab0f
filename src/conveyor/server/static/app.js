// The conveyor dashboard. One websocket carries every request and every event; the page
// keeps one state object (state.js) and redraws only the rows that changed, once per frame.
// No framework and no build step: these modules are served as they are.
//   connection.js  the websocket: requests, events, reconnect and resume, the token
//   jobs.js        the jobs table, kept current by events
//   queues.js      the queue cards: counts and completions per minute
//   detail.js      one job's view: fields, payload, result, error, history
//   bulk.js        cancel or rerun every job the filters match
//   workers.js     the workers panel: every runtime running workers, its heartbeat age

import { $, state, toast } from "./state.js";
import { connect, readToken, useToken } from "./connection.js";
import { act, fetchRecords, loadOlder } from "./jobs.js";
import { renderQueues, setFilter } from "./queues.js";
import { closeDetail, detailFromAddress } from "./detail.js";
import { bulk } from "./bulk.js";
import { WORKERS_EVERY_MS, refreshWorkers } from "./workers.js";

state.token = readToken();
$("filter-queue").addEventListener("change", (e) => setFilter("queue", e.target.value));
$("filter-status").addEventListener("change", (e) => setFilter("status", e.target.value));
// Typed filters apply on Enter or on leaving the field (not on each key: each is a list).
for (const key of ["tag", "meta"]) {
  $("filter-" + key).addEventListener("change", (e) => setFilter(key, e.target.value.trim()));
}
$("filter-labels").addEventListener("submit", (e) => e.preventDefault());
$("older").addEventListener("click", () => loadOlder().catch((err) => toast(err.message)));
$("detail-close").addEventListener("click", closeDetail);
$("detail-cancel").addEventListener("click", () => act("cancel", state.selected));
$("detail-rerun").addEventListener("click", () => act("rerun", state.selected));
$("bulk-cancel").addEventListener("click", () => bulk("cancel_matching"));
$("bulk-rerun").addEventListener("click", () => bulk("rerun_matching"));
window.addEventListener("hashchange", detailFromAddress);
document.addEventListener("keydown", (e) => e.key === "Escape" && closeDetail());
$("token-form").addEventListener("submit", () => useToken($("token-input").value.trim()));
setInterval(fetchRecords, 500);
setInterval(renderQueues, 5000); // the per-minute rates decay even when nothing happens
setInterval(refreshWorkers, WORKERS_EVERY_MS);
detailFromAddress();
connect();

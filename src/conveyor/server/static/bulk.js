// Bulk operations: cancel or rerun every job the filters match (the table's filters, all
// of them), after the user confirms how many that is: the server counts them with the
// very fields the operation is then sent (count_matching), and does it a batch per
// transaction. With a job id in the filters, that one job is the set.
//
// The bulk operations match by queue, status and creator (count_matching, cancel_matching
// and rerun_matching take no tags or meta): with a tag or meta filter set they would take
// jobs the table leaves out, so their buttons are off, saying why, unless a job id makes
// the set that one job (its record is checked against every filter).

import { $, TERMINAL, cancellable, state, toast } from "./state.js";
import { call } from "./connection.js";
import { act, loadJobs, matchesFilter } from "./jobs.js";

const CANCELLABLE = new Set(["scheduled", "queued", "running"]);
const BUTTONS = ["bulk-cancel", "bulk-rerun"];

function blocked() {
  const { tag, meta, id } = state.filter;
  return Boolean((tag || meta) && !id);
}

// The buttons follow the filters (called whenever they change): off while the operations
// cannot match what the table shows, the note that says why their description.
export function renderBulk() {
  const off = blocked();
  $("bulk-note").hidden = !off;
  for (const key of BUTTONS) {
    const button = $(key);
    button.disabled = off;
    if (off) button.setAttribute("aria-describedby", "bulk-note");
    else button.removeAttribute("aria-describedby");
  }
}

export async function bulk(op) {
  const { queue, status, created_by: createdBy, id } = state.filter;
  if (blocked()) {
    toast($("bulk-note").textContent); // the buttons are off meanwhile; this guards any other caller
    return;
  }
  const cancelling = op === "cancel_matching";
  const verb = cancelling ? "Cancel" : "Rerun";
  const allowed = cancelling ? CANCELLABLE : TERMINAL;
  if (status && !allowed.has(status)) {
    toast(`${status} jobs cannot be ${cancelling ? "cancelled" : "rerun"}`);
    return;
  }
  if (id) return one(cancelling, id);
  const statuses = status ? [status] : cancelling ? [...CANCELLABLE] : ["failed"];
  const match = { statuses, ...(queue ? { queue } : {}), ...(createdBy ? { created_by: createdBy } : {}) };
  const where = (queue ? `queue ${queue}` : "every queue") + (createdBy ? `, created by ${createdBy}` : "");
  try {
    const { count } = await call("count_matching", match);
    if (!count) {
      toast(`no ${statuses.join("/")} jobs of ${where} to ${verb.toLowerCase()}`);
      return;
    }
    if (!confirm(`${verb} ${count} ${statuses.join("/")} ${count === 1 ? "job" : "jobs"} of ${where}?`)) return;
    const result = await call(op, cancelling ? match : { ...match, by: "dashboard" });
    toast(cancelling ? `cancelled ${result.cancelled} jobs` : `rerun ${result.rerun} jobs`);
    await loadJobs();
  } catch (err) {
    toast(err.message);
  }
}

// The filters name one job: it is the set, if it matches the other filters and the
// operation applies to it.
async function one(cancelling, id) {
  const job = state.jobs.get(id);
  if (!job || !matchesFilter(job) || !(cancelling ? cancellable(job) : TERMINAL.has(job.status))) {
    toast(`no job ${id} to ${cancelling ? "cancel" : "rerun"} matches the filters`);
    return;
  }
  if (!confirm(`${cancelling ? "Cancel" : "Rerun"} 1 job: ${id} (${job.status})?`)) return;
  await act(cancelling ? "cancel" : "rerun", id);
}

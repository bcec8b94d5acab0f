// Bulk operations: cancel or rerun every job the queue and status filters match, after
// the user confirms how many that may be (the server does it a batch per transaction).

import { TERMINAL, state, toast } from "./state.js";
import { call } from "./connection.js";
import { loadJobs } from "./jobs.js";

const CANCELLABLE = new Set(["scheduled", "queued", "running"]);

export async function bulk(op) {
  const { queue, status } = state.filter;
  if (state.filter.tag || state.filter.meta) {
    // The bulk ops match by queue and status: they would take jobs the list leaves out.
    toast("bulk operations match by queue and status only: clear the tag and meta filters first");
    return;
  }
  const cancelling = op === "cancel_matching";
  const allowed = cancelling ? CANCELLABLE : TERMINAL;
  if (status && !allowed.has(status)) {
    toast(`${status} jobs cannot be ${cancelling ? "cancelled" : "rerun"}`);
    return;
  }
  const statuses = status ? [status] : cancelling ? [...CANCELLABLE] : ["failed"];
  const counts = queue ? { [queue]: state.queues[queue] || {} } : state.queues;
  let about = 0;
  for (const perStatus of Object.values(counts)) {
    for (const s of statuses) about += (perStatus && perStatus[s]) || 0;
  }
  const where = queue ? `queue ${queue}` : "every queue";
  const verb = cancelling ? "Cancel" : "Rerun";
  if (!confirm(`${verb} about ${about} ${statuses.join("/")} jobs of ${where}?`)) return;
  const fields = { statuses, ...(queue ? { queue } : {}), ...(cancelling ? {} : { by: "dashboard" }) };
  try {
    const result = await call(op, fields);
    toast(cancelling ? `cancelled ${result.cancelled} jobs` : `rerun ${result.rerun} jobs`);
    await loadJobs();
  } catch (err) {
    toast(err.message);
  }
}



// The workers panel: every runtime running workers on the store, with its queues and the
// age of its last heartbeat, read every few seconds (heartbeats send no events). A lost
// one (silent past its lease, or its process gone) is marked; others rescue its jobs.

import { $, badge } from "./state.js";
import { call, connected } from "./connection.js";

export const WORKERS_EVERY_MS = 2000;

export async function refreshWorkers() {
  if (!connected()) return;
  let workers;
  try {
    ({ workers } = await call("workers"));
  } catch (err) {
    return; // disconnected: the next tick after the reconnect brings them
  }
  if (workers.length) {
    $("workers").replaceChildren(...workers.map(row));
    return;
  }
  const none = document.createElement("td");
  none.colSpan = 7;
  none.className = "muted";
  none.textContent = "No workers registered.";
  const tr = document.createElement("tr");
  tr.append(none);
  $("workers").replaceChildren(tr);
}

function row(worker) {
  const tr = document.createElement("tr");
  tr.dataset.worker = worker.id;
  const state = badge(worker.lost ? "lost" : "alive");
  const queues = Object.entries(worker.queues)
    .map(([name, n]) => `${name} (${n})`)
    .join(", ");
  const cells = [worker.id, state, worker.host, String(worker.pid), queues];
  cells.push(`${worker.heartbeat_age.toFixed(1)}s ago`, worker.version);
  for (const value of cells) {
    const td = document.createElement("td");
    if (typeof value === "string") td.textContent = value;
    else td.append(value);
    tr.append(td);
  }
  return tr;
}

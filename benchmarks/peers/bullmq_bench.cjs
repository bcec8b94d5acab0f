// BullMQ (Node 20) on Redis (127.0.0.1:6379, which keeps nothing on disk here: not
// durable), for throughput.py. Run with NODE_PATH at benchmarks/.peers/bullmq/node_modules
// (setup.sh bullmq installs it from the npm registry).
//
//   node bullmq_bench.cjs --scenario e2e|process|latency|sleep10|progress10 --jobs N
//                         [--concurrency C]
//
// One Queue and one Worker (concurrency C, default 100) in this process, under a fresh
// prefix per run, obliterated and its keys deleted at the end. Completed jobs are kept
// (BullMQ's default, as conveyor keeps them), in Redis's memory. A job counts as done
// when the worker's "completed" event says its completion was written to Redis.
//   e2e         50 concurrent producers each await one add() at a time while the worker
//               runs, until every job has completed; latency is add -> handler start
//   process     N jobs added first (addBulk, 1,000 a call), then the worker starts; timed
//               from the worker's creation until every job has completed
//   latency     one job at a time on the idle worker (at most 1,000): add -> start
//   sleep10     as e2e, each handler awaiting a 10 ms timer
//   progress10  as e2e, each handler awaiting job.updateProgress() ten times
"use strict";
const { Queue, Worker } = require("bullmq");

const args = process.argv.slice(2);
const option = (name, fallback) => {
  const at = args.indexOf(name);
  return at === -1 ? fallback : args[at + 1];
};
const scenario = option("--scenario", "e2e");
const concurrency = Number(option("--concurrency", 100));
const PRODUCERS = 50;
const jobs = Math.floor(Number(option("--jobs", 20000)) / PRODUCERS) * PRODUCERS;
const connection = { host: "127.0.0.1", port: 6379, maxRetriesPerRequest: null };
const prefix = `conveyor-bench-${process.pid}-${Date.now()}`;
const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

function percentile(values, q) {
  const ordered = [...values].sort((a, b) => a - b);
  return ordered[Math.min(ordered.length - 1, Math.floor(q * ordered.length))];
}

async function main() {
  const queue = new Queue("bench", { connection, prefix });
  await queue.waitUntilReady();
  const latencies = [];
  let done = 0;
  let allDone;
  const finished = new Promise((resolve) => {
    allDone = resolve;
  });
  let onCompleted = () => {};
  const processor = async (job) => {
    latencies.push(performance.now() - job.data.t);
    if (scenario === "sleep10") await sleep(10);
    if (scenario === "progress10") {
      for (let step = 1; step <= 10; step++) await job.updateProgress(step * 10);
    }
  };
  const startWorker = () => {
    const worker = new Worker("bench", processor, { connection, prefix, concurrency });
    worker.on("completed", (job) => {
      onCompleted(job);
      done += 1;
      if (done === jobs) allDone();
    });
    worker.on("error", (error) => console.error(error));
    return worker;
  };

  let worker;
  let elapsed;
  let count = jobs;
  if (scenario === "process") {
    for (let i = 0; i < jobs; i += 1000) {
      const n = Math.min(1000, jobs - i);
      await queue.addBulk(Array.from({ length: n }, () => ({ name: "noop", data: { t: 0 } })));
    }
    const started = performance.now();
    worker = startWorker();
    await finished;
    elapsed = (performance.now() - started) / 1000;
  } else if (scenario === "latency") {
    worker = startWorker();
    await worker.waitUntilReady();
    await sleep(200); // the worker is waiting for jobs: idle
    count = Math.min(jobs, 1000);
    for (let i = 0; i < count; i++) {
      const completed = new Promise((resolve) => {
        onCompleted = resolve;
      });
      await queue.add("noop", { t: performance.now() });
      await completed;
    }
  } else if (["e2e", "sleep10", "progress10"].includes(scenario)) {
    worker = startWorker();
    await worker.waitUntilReady();
    const started = performance.now();
    const producer = async () => {
      for (let i = 0; i < jobs / PRODUCERS; i++) {
        await queue.add("noop", { t: performance.now() });
      }
    };
    await Promise.all(Array.from({ length: PRODUCERS }, producer));
    await finished;
    elapsed = (performance.now() - started) / 1000;
  } else {
    throw new Error(`unknown scenario ${scenario}`);
  }

  await worker.close();
  await queue.obliterate({ force: true });
  const client = await queue.client;
  for (let cursor = "0"; ; ) {
    const [next, keys] = await client.scan(cursor, "MATCH", `${prefix}:*`, "COUNT", 1000);
    if (keys.length) await client.del(...keys);
    cursor = next;
    if (cursor === "0") break;
  }
  await queue.close();
  const version = require("bullmq/package.json").version;
  const figures = { label: `BullMQ ${version} (Redis, no fsync)` };
  if (elapsed !== undefined) figures.jobs_per_s = count / elapsed;
  if (scenario !== "process") {
    figures.p50_ms = percentile(latencies, 0.5);
    figures.p99_ms = percentile(latencies, 0.99);
  }
  figures.peak_rss_mb = process.resourceUsage().maxRSS / 1024;
  console.log(JSON.stringify(figures));
}

main().catch((error) => {
  console.error(error);
  process.exit(1);
});

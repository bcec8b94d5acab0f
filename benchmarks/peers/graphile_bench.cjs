// graphile-worker (Node) on PostgreSQL: N pre-enqueued no-op jobs processed, for
// benchmarks/fleet.py. Run with NODE_PATH at benchmarks/.peers/graphile/node_modules
// (setup.sh graphile installs it from the npm registry).
//
//   node graphile_bench.cjs --jobs N [--batching]
//
// A fresh database each run; the jobs are added in batches of 1,000 (addJobs) before the
// worker starts. The rate is N over the time from the first job's start until the jobs
// table is empty (graphile-worker deletes a job once it completes). --batching is the
// configuration its performance page documents: concurrency 24, pool 25, a local queue of
// 500, completions and failures written at once in batches (delay 0). Without it, its
// defaults. graphile-worker keeps no record of completed jobs and no history.
"use strict";
const { run, makeWorkerUtils, Logger } = require("graphile-worker");
const pg = require("pg");

const args = process.argv.slice(2);
const jobs = Number(args[args.indexOf("--jobs") + 1] || 20000);
const batching = args.includes("--batching");
const server = process.env.CONVEYOR_BENCH_POSTGRES_SERVER || "postgresql://postgres@127.0.0.1:5432";
const quiet = new Logger(() => () => {});

async function main() {
  const admin = new pg.Client({ connectionString: `${server}/postgres` });
  await admin.connect();
  await admin.query("DROP DATABASE IF EXISTS conveyor_bench_graphile");
  await admin.query("CREATE DATABASE conveyor_bench_graphile");
  await admin.end();
  const connectionString = `${server}/conveyor_bench_graphile`;
  const utils = await makeWorkerUtils({ connectionString, logger: quiet });
  await utils.migrate();
  for (let i = 0; i < jobs; i += 1000) {
    const n = Math.min(1000, jobs - i);
    await utils.addJobs(Array.from({ length: n }, () => ({ identifier: "noop", payload: {} })));
  }
  let first;
  const options = {
    connectionString,
    noHandleSignals: true,
    logger: quiet,
    taskList: {
      noop: async () => {
        if (first === undefined) first = performance.now();
      },
    },
  };
  if (batching) {
    Object.assign(options, {
      concurrency: 24,
      maxPoolSize: 25,
      preset: { worker: { localQueue: { size: 500 }, completeJobBatchDelay: 0, failJobBatchDelay: 0 } },
    });
  }
  const runner = await run(options);
  const check = new pg.Client({ connectionString });
  await check.connect();
  for (;;) {
    const { rows } = await check.query("SELECT count(*)::int AS n FROM graphile_worker.jobs");
    if (rows[0].n === 0) break;
    await new Promise((resolve) => setTimeout(resolve, 5));
  }
  const elapsed = (performance.now() - first) / 1000;
  await check.end();
  await runner.stop();
  await utils.release();
  const version = require("graphile-worker/package.json").version;
  console.log(
    JSON.stringify({
      label: `graphile-worker ${version} (${batching ? "batching config" : "defaults"})`,
      jobs_per_s: jobs / elapsed,
      peak_rss_mb: process.resourceUsage().maxRSS / 1024,
    }),
  );
}

main().catch((error) => {
  console.error(error);
  process.exit(1);
});

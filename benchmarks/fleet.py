"""A fleet on PostgreSQL: K worker processes share one queue and process N pre-enqueued
no-op jobs (``throughput.py --store postgres --processes K`` runs this).

A producer process of its own enqueues the N jobs first; then K worker processes start
and take them. The rate is N over the time from the first job's start to the last one's
finish, as the jobs' own records say (so process start-up does not count). Meanwhile the
parent samples ``pg_stat_activity`` every 20 ms: of the conveyor connections running a
statement, the share waiting for a lock (``wait_event_type = 'Lock'``), which is what a
single serialisation point in the write path shows up as. Then, on an idle worker in
another process than the producer: enqueue -> handler start, and a cancel -> the handler
stopped (the handler records when its cancellation reached it).

    python benchmarks/fleet.py --processes 1,2,4 [--jobs N] [--runs R] [--peers graphile]

``--peers graphile`` adds graphile-worker (Node 20; installed from the npm registry into
benchmarks/.peers/graphile on first use) processing the same N pre-enqueued jobs in the
same run, with its defaults and with the batching configuration its performance page
documents (see peers/graphile_bench.cjs). What differs: graphile-worker deletes a job
once done and keeps no history; conveyor keeps every job, its three history rows
(queued, running, completed) and the lease token that fences each write.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import anyio

HERE = Path(__file__).parent
PG_URL = os.environ.get("CONVEYOR_BENCH_POSTGRES", "postgresql://postgres@127.0.0.1:5432/test")
WORKER_COUNT = 100  # jobs at once per worker process
SAMPLE_EVERY = 0.02  # seconds between pg_stat_activity samples


async def _produce(url: str, jobs: int) -> None:
    from conveyor import Queue, Runtime

    class Noop(Queue):
        name = "noop"

    async with Runtime(url, queues=[Noop()], workers=False) as rt:
        for start in range(0, jobs, 1000):
            await rt.enqueue_many("noop", [{}] * min(1000, jobs - start))


def _note_stop(path: str) -> None:
    with open(path, "a") as out:
        out.write(f"{time.time()}\n")


async def _work(url: str) -> None:
    from conveyor import Queue, Runtime

    class Noop(Queue):
        name = "noop"
        worker_count = WORKER_COUNT

        async def handle_item(self, item: dict[str, Any]) -> float | None:
            # A latency probe's job says when it was enqueued: how long until it started
            # (one machine, so one clock), or, held, when its cancellation reached it.
            started = time.time()
            if "held" in item:
                try:
                    await anyio.sleep_forever()
                finally:
                    _note_stop(item["held"])  # sync: an await here would be cancelled
            return started - item["t"] if "t" in item else None

    async with Runtime(url, queues=[Noop()], shutdown_grace=0) as rt:
        await rt.run_until_signalled()


LATENCY_JOBS = int(
    os.environ.get("FLEET_LATENCY_JOBS", "300")
)  # probes of each kind, one at a time


async def _latency() -> dict[str, float]:
    """Idle enqueue -> start, and cancel -> the handler stopped, with the producer and the
    worker in different processes (so only notifications carry the news)."""
    import asyncpg

    from conveyor import JobStatus, Queue, Runtime

    class Noop(Queue):
        name = "noop"

    schema = f"fleet_{os.getpid()}_{time.monotonic_ns()}"
    url = f"{PG_URL}?schema={schema}"
    stopped = anyio.Path(f"/tmp/conveyor-bench-{schema}.txt")
    worker = await anyio.open_process([sys.executable, __file__, "--work", url], stdout=None)
    starts: list[float] = []
    cancels: list[float] = []
    try:
        async with Runtime(url, queues=[Noop()], workers=False, poll_interval=30) as rt:
            with anyio.fail_after(600):
                for _ in range(LATENCY_JOBS):
                    job = await rt.enqueue("noop", {"t": time.time()})
                    starts.append(float((await rt.wait(job.id)).result))
                for n in range(LATENCY_JOBS):
                    job = await rt.enqueue("noop", {"held": str(stopped)})
                    async with rt.events(job_id=job.id) as events:
                        async for event in events:
                            if event.status is JobStatus.RUNNING:
                                break
                    asked = time.time()
                    await rt.request_job_cancel("noop", job.id)
                    await rt.wait(job.id)
                    lines = (await stopped.read_text()).split() if await stopped.exists() else []
                    assert len(lines) == n + 1, "the handler did not record its stop"
                    cancels.append(float(lines[-1]) - asked)
    finally:
        worker.terminate()
        with anyio.fail_after(60):
            await worker.wait()
        await stopped.unlink(missing_ok=True)
        conn = await asyncpg.connect(PG_URL)
        await conn.execute(f"DROP SCHEMA IF EXISTS {schema} CASCADE")
        await conn.close()
    starts.sort()
    cancels.sort()
    return {
        "start_p50_ms": 1000 * starts[len(starts) // 2],
        "start_p99_ms": 1000 * starts[int(len(starts) * 0.99)],
        "cancel_p50_ms": 1000 * cancels[len(cancels) // 2],
        "cancel_p99_ms": 1000 * cancels[int(len(cancels) * 0.99)],
    }


async def _raw_commit() -> dict[str, float]:
    """The floor under enqueue -> start: one durable INSERT (asyncpg, no conveyor) and
    its commit on the same server, one at a time, paced like the probes above."""
    import asyncpg

    conn = await asyncpg.connect(PG_URL)
    table = f"fleet_raw_{os.getpid()}"
    commits: list[float] = []
    try:
        await conn.execute(f"CREATE TABLE {table} (id bigserial PRIMARY KEY, payload json)")
        with anyio.fail_after(120):
            for _ in range(LATENCY_JOBS):
                started = time.perf_counter()
                await conn.execute(f"INSERT INTO {table} (payload) VALUES ('{{}}')")
                commits.append(time.perf_counter() - started)
    finally:
        await conn.execute(f"DROP TABLE IF EXISTS {table}")
        await conn.close()
    commits.sort()
    return {"raw_commit_p50_ms": 1000 * commits[len(commits) // 2]}


def latency_line(runs: int) -> None:
    results = [anyio.run(_latency) | anyio.run(_raw_commit) for _ in range(runs)]
    median = {k: statistics.median(r[k] for r in results) for k in results[0]}
    print(
        "  across processes, idle: enqueue -> start p50 {start_p50_ms:.2f} ms, p99"
        " {start_p99_ms:.2f} ms; cancel -> handler stopped p50 {cancel_p50_ms:.2f} ms,"
        " p99 {cancel_p99_ms:.2f} ms\n"
        "  the floor under enqueue -> start: a bare durable INSERT's commit (asyncpg, no"
        " conveyor), p50 {raw_commit_p50_ms:.2f} ms".format(**median)
    )


async def _measure(processes: int, jobs: int) -> dict[str, float]:
    import asyncpg

    schema = f"fleet_{os.getpid()}_{time.monotonic_ns()}"
    url = f"{PG_URL}?schema={schema}"
    me = [sys.executable, __file__]
    await anyio.run_process([*me, "--produce", url, "--jobs", str(jobs)], stdout=None)
    conn = await asyncpg.connect(PG_URL)
    workers = [
        await anyio.open_process([*me, "--work", url], stdout=None) for _ in range(processes)
    ]
    waiting = active = 0
    try:
        with anyio.fail_after(600):
            done = 0
            while done < jobs:
                row = await conn.fetchrow(
                    "SELECT count(*) FILTER (WHERE wait_event_type = 'Lock') AS waiting,"
                    " count(*) AS active FROM pg_stat_activity"
                    " WHERE application_name = 'conveyor' AND state = 'active'"
                )
                assert row is not None
                waiting += row["waiting"]
                active += row["active"]
                done = await conn.fetchval(
                    f"SELECT count(*) FROM {schema}.jobs WHERE status = 'completed'"
                )
                await anyio.sleep(SAMPLE_EVERY)
        first, last = await conn.fetchrow(
            f"SELECT min(started_at), max(finished_at) FROM {schema}.jobs"
        )
    finally:
        for w in workers:
            w.terminate()
        with anyio.fail_after(60):
            for w in workers:
                await w.wait()
        await conn.execute(f"DROP SCHEMA IF EXISTS {schema} CASCADE")
        await conn.close()
    return {
        "jobs_per_s": jobs / (float(last) - float(first)),
        "lock_wait_pct": 100 * waiting / active if active else 0.0,
    }


def _graphile(jobs: int, batching: bool) -> dict[str, Any]:
    folder = HERE / ".peers" / "graphile"
    if not (folder / "node_modules" / "graphile-worker").exists():
        subprocess.run(["bash", str(HERE / "peers" / "setup.sh"), "graphile"], check=True)
    result = subprocess.run(
        ["node", str(HERE / "peers" / "graphile_bench.cjs"), "--jobs", str(jobs)]
        + (["--batching"] if batching else []),
        env={**os.environ, "NODE_PATH": str(folder / "node_modules")},
        capture_output=True,
        text=True,
        timeout=900,
        check=True,
    )
    return dict(json.loads(result.stdout.strip().splitlines()[-1]))


def peer_table(peers: list[str], jobs: int, runs: int) -> None:
    for peer in peers:
        if peer != "graphile":
            raise SystemExit(f"unknown fleet peer {peer!r} (known: graphile)")
        for batching in (False, True):
            results = [_graphile(jobs, batching) for _ in range(runs)]
            rate = statistics.median(r["jobs_per_s"] for r in results)
            spread = ", ".join(f"{r['jobs_per_s']:,.0f}" for r in results)
            print(f"  {results[0]['label']:<42} {rate:>9,.0f} jobs/s  (runs: {spread})")


def fleet_table(counts: list[int], jobs: int, runs: int) -> dict[int, dict[str, float]]:
    """The median of ``runs`` runs for each process count, printed as it goes."""
    print(f"conveyor on PostgreSQL ({PG_URL}), {jobs} pre-enqueued jobs, median of {runs} runs")
    print(f"machine: {os.cpu_count()} cores; {WORKER_COUNT} jobs at once per process")
    table: dict[int, dict[str, float]] = {}
    for k in counts:
        results = [anyio.run(_measure, k, jobs) for _ in range(runs)]
        rate = statistics.median(r["jobs_per_s"] for r in results)
        waits = statistics.median(r["lock_wait_pct"] for r in results)
        table[k] = {"jobs_per_s": rate, "lock_wait_pct": waits}
        spread = ", ".join(f"{r['jobs_per_s']:,.0f}" for r in results)
        print(
            f"  {k} worker process{'es' if k > 1 else '':<2} {rate:>9,.0f} jobs/s"
            f"  lock waits {waits:4.1f} % of active samples  (runs: {spread})"
        )
    return table


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument("--processes", default="1,2,4")
    parser.add_argument("--jobs", type=int, default=20_000)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--peers", default="", help="comma-separated: graphile")
    parser.add_argument("--produce", help=argparse.SUPPRESS)
    parser.add_argument("--work", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.produce:
        anyio.run(_produce, args.produce, args.jobs)
    elif args.work:
        anyio.run(_work, args.work)
    else:
        fleet_table([int(k) for k in args.processes.split(",")], args.jobs, args.runs)
        latency_line(args.runs)
        peer_table([p for p in args.peers.split(",") if p], args.jobs, args.runs)


if __name__ == "__main__":
    main()

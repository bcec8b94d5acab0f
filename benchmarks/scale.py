"""Does conveyor's cost stay flat as the store grows? The same work on a store that
retains N finished jobs, for each N given.

    python benchmarks/scale.py [--sizes 10000,1000000] [--jobs 20000] [--runs 3]
                               [--store sqlite|postgres] [--no-e2e]

For each N, a template store holding N completed jobs (each with its three history rows:
queued, running, completed) is built once, through the store's own write path
(``jobs_insert``, ``jobs_claim``, ``jobs_finish``, 10,000 jobs per transaction, finished a
day before the build so that no "last hour" read counts them), and kept: for SQLite a
file under benchmarks/.cache/ (git-ignored), for PostgreSQL a schema of its own in
$CONVEYOR_BENCH_POSTGRES (default postgresql://postgres@127.0.0.1:5432/test). Each run
copies the template (a file copy, on disk before the run; for PostgreSQL the rows, into
a fresh schema the store has made, then VACUUM ANALYZE and a CHECKPOINT) and measures,
in a fresh child process, after 2,000 jobs put through the copy unmeasured (its first
writes pay for its making):

  store    --jobs fresh jobs through the store alone: inserted 1,000 per transaction
           (as enqueue_many's chunks), then claimed MAX_CLAIM (500, the scheduler's
           largest claim) per transaction, then finished 500 per transaction (a busy
           finisher's group commit): the insert, claim and finish rates and CPU per job
           (every thread of the process: SQLite's work, or asyncpg's side of it), each
           job with its history row; then the operator's reads of the grown store, each
           timed as the median of 5: the first page of list_jobs (all, one status, one
           queue, a tag no job has: that filter walks the rest, by design), the counts
           by queue and status (queue_counts: the dashboard, metrics gauges,
           Runtime.drain), a count of every job (count_matching), throughput (the last
           60 minutes), and a retention pass with Runtime's default periods (what every
           runtime does at start and every 10 minutes; here it finds nothing to delete)
  e2e      a Runtime on the store (opening it timed apart), --jobs no-op jobs enqueued
           in chunks of 1,000 while 200 workers run, until every completion is
           committed: jobs/s, as throughput.py's e2e

Each kind runs on every size back to back, smallest or largest first in turn, and the
medians of --runs are printed with the largest size's ratio to the smallest, then the
median of each run's own ratio, on which the bar is: the largest store claims and
finishes less than 1.3x slower than the smallest, with a peak RSS (each child's maximum
resident set) within 15 % of it. The first run of a size builds its template: for a
million jobs, a few minutes (SQLite, about 700 MB) to ten (PostgreSQL, shared here).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import anyio

HERE = Path(__file__).parent
CACHE = HERE / ".cache"
PG_URL = os.environ.get("CONVEYOR_BENCH_POSTGRES", "postgresql://postgres@127.0.0.1:5432/test")
QUEUE = "noop"
BUILD_BATCH = 10_000  # jobs per transaction while a template is built
INSERT_BATCH = 1_000  # enqueue_many's chunk in throughput.py
FINISH_BATCH = 500  # a busy finisher's group commit
READ_REPEATS = 5
BAR = 1.3  # largest store's rates at most this many times slower than the smallest's
RSS_SLACK = 1.15  # "flat": the largest store's peak RSS within 15 % of the smallest's
E2E_WORKERS = 200
WARM_UP = 2_000  # jobs through each run's copy before it is measured
DAY = 86_400.0
RETENTION = {"completed": 7 * DAY, "cancelled": 7 * DAY, "failed": 30 * DAY}  # Runtime's


def _peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _cpu() -> float:
    """Seconds of CPU this process has used, every thread (SQLite's included)."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


class _Phase:
    """Times a phase of ``jobs`` jobs: its rate (wall clock) and its CPU per job, which a
    busy machine's noise disturbs less than the rate (time waiting for the CPU or an
    fsync is not in it)."""

    def __init__(self, figures: dict[str, Any], name: str, jobs: int) -> None:
        self.figures, self.name, self.jobs = figures, name, jobs

    def __enter__(self) -> None:
        self.began, self.cpu = time.perf_counter(), _cpu()

    def __exit__(self, *exc: object) -> None:
        self.figures[f"{self.name}_per_s"] = self.jobs / (time.perf_counter() - self.began)
        self.figures[f"{self.name}_cpu_us"] = (_cpu() - self.cpu) / self.jobs * 1e6


def _schema_version() -> int:
    from conveyor.store.postgres._schema import MIGRATIONS as POSTGRES
    from conveyor.store.sqlite._schema import MIGRATIONS as SQLITE

    return max(len(SQLITE), len(POSTGRES))


# -- templates -----------------------------------------------------------------------------


async def _build(location: str, size: int) -> None:
    """``size`` completed jobs through the store's write path, finished a day ago."""
    from conveyor import JobStatus
    from conveyor._ids import IdGenerator
    from conveyor._models import NO_PROGRESS
    from conveyor.store import ClaimParams, Finish, NewJob, store_at

    store = store_at(location)
    await store.open("scale-build")
    ids = IdGenerator()
    then = time.time() - 86_400.0
    try:
        for start in range(0, size, BUILD_BATCH):
            n = min(BUILD_BATCH, size - start)
            at = then + start / size * 3600  # spread over an hour, a day ago
            await store.writes.jobs_insert(
                [
                    NewJob(
                        id=ids.new(),
                        queue=QUEUE,
                        status=JobStatus.QUEUED,
                        payload=b'{"n": %d}' % (start + i),
                        created_at=at,
                    )
                    for i in range(n)
                ]
            )
            claim = ClaimParams(
                queue=QUEUE, limit=n, owner="build", token="t", now=at, lease_expires_at=at + 30
            )
            claimed, _ = await store.writes.jobs_claim(claim)
            await store.writes.jobs_finish(
                [
                    Finish(
                        job_id=job.id,
                        token="t",
                        status=JobStatus.COMPLETED,
                        result=b"null",
                        progress=NO_PROGRESS,
                    )
                    for job in claimed
                ],
                at + 0.01,
            )
    finally:
        await store.close()


def _template(store: str, size: int) -> str:
    """The template for ``size``: built now unless already cached (a path or a schema)."""
    version = _schema_version()
    if store == "sqlite":
        CACHE.mkdir(exist_ok=True)
        path = CACHE / f"scale-{size}-v{version}.db"
        if not path.exists():
            print(f"building the template for N = {size:,} at {path} ...", flush=True)
            began = time.perf_counter()
            partial = path.with_suffix(".part")
            for stale in CACHE.glob(f"{partial.name}*"):
                stale.unlink()
            _child(["--child", "build", "--db", str(partial), "--size", str(size)])
            partial.rename(path)
            print(f"  built in {time.perf_counter() - began:.0f} s", flush=True)
        return str(path)
    schema = f"scale_template_{size}_v{version}"
    if not anyio.run(_pg_schema_complete, schema):
        print(f"building the template for N = {size:,} in schema {schema} ...", flush=True)
        began = time.perf_counter()
        anyio.run(_pg_drop, schema)
        _child(["--child", "build", "--db", f"{PG_URL}?schema={schema}", "--size", str(size)])
        anyio.run(_pg_mark_complete, schema)
        print(f"  built in {time.perf_counter() - began:.0f} s", flush=True)
    return schema


async def _pg_connect() -> Any:
    import asyncpg

    return await asyncpg.connect(PG_URL)


async def _pg_schema_complete(schema: str) -> bool:
    conn = await _pg_connect()
    try:
        found = await conn.fetchval(
            "SELECT obj_description(to_regnamespace($1), 'pg_namespace')", schema
        )
        return bool(found == "conveyor scale template, complete")
    finally:
        await conn.close()


async def _pg_mark_complete(schema: str) -> None:
    conn = await _pg_connect()
    try:
        await conn.execute(f"VACUUM ANALYZE {schema}.jobs")
        await conn.execute(f"VACUUM ANALYZE {schema}.job_history")
        await conn.execute(f"COMMENT ON SCHEMA {schema} IS 'conveyor scale template, complete'")
    finally:
        await conn.close()


async def _pg_drop(schema: str) -> None:
    conn = await _pg_connect()
    try:
        await conn.execute(f"DROP SCHEMA IF EXISTS {schema} CASCADE")
    finally:
        await conn.close()


async def _pg_copy(template: str, location: str) -> None:
    """The template's rows into the fresh schema of ``location``, made by the store."""
    from conveyor.store import store_at
    from conveyor.store.postgres import split_schema

    store = store_at(location)
    await store.open("scale-copy")
    await store.close()
    _, schema = split_schema(location)
    conn = await _pg_connect()
    try:
        for table in ("jobs", "job_history"):
            # Its indexes (but the primary key's) made again once the rows are in: a
            # third of the time of inserting into them.
            indexes = await conn.fetch(
                "SELECT indexname, indexdef FROM pg_indexes i WHERE schemaname = $1"
                " AND tablename = $2 AND NOT EXISTS (SELECT 1 FROM pg_constraint c"
                " WHERE c.conname = i.indexname AND c.connamespace = $1::regnamespace)",
                schema,
                table,
            )
            for name, _ in indexes:
                await conn.execute(f"DROP INDEX {schema}.{name}")
            await conn.execute(f"INSERT INTO {schema}.{table} SELECT * FROM {template}.{table}")
            for _, definition in indexes:
                await conn.execute(definition)
            await conn.execute(f"VACUUM ANALYZE {schema}.{table}")
        # The copy's writes on disk before the run, as with SQLite's (see _copy): else the
        # checkpoint they bring on writes them during it, the more the larger the store.
        await conn.execute("CHECKPOINT")
    finally:
        await conn.close()


# -- what a run measures ---------------------------------------------------------------


async def _timed_read(read: Callable[[], Awaitable[object]]) -> float:
    times = []
    for _ in range(READ_REPEATS):
        began = time.perf_counter()
        await read()
        times.append(time.perf_counter() - began)
    return statistics.median(times) * 1000


async def _claim_all(store: Any, jobs: int, limit: int) -> list[Any]:
    from conveyor.store import ClaimParams

    claimed: list[Any] = []
    while len(claimed) < jobs:
        now = time.time()
        claim = ClaimParams(
            queue=QUEUE, limit=limit, owner="scale", token="t", now=now, lease_expires_at=now + 30
        )
        batch, _ = await store.writes.jobs_claim(claim)
        if not batch:
            raise SystemExit(f"claimed {len(claimed)} of {jobs} jobs only")
        claimed += batch
    return claimed


async def _cycle(store: Any, jobs: int, figures: dict[str, Any]) -> None:
    """``jobs`` fresh jobs inserted, claimed and finished, each phase timed into
    ``figures``."""
    from conveyor import JobStatus
    from conveyor._ids import IdGenerator
    from conveyor._models import NO_PROGRESS
    from conveyor.engine._pool import MAX_CLAIM
    from conveyor.store import Finish, NewJob

    ids = IdGenerator()
    with _Phase(figures, "insert", jobs):
        for start in range(0, jobs, INSERT_BATCH):
            now = time.time()
            await store.writes.jobs_insert(
                [
                    NewJob(
                        id=ids.new(),
                        queue=QUEUE,
                        status=JobStatus.QUEUED,
                        payload=b"{}",
                        created_at=now,
                    )
                    for _ in range(min(INSERT_BATCH, jobs - start))
                ]
            )

    with _Phase(figures, "claim", jobs):
        claimed = await _claim_all(store, jobs, MAX_CLAIM)

    with _Phase(figures, "finish", jobs):
        for start in range(0, jobs, FINISH_BATCH):
            finishes = [
                Finish(job_id=job.id, token="t", status=JobStatus.COMPLETED, progress=NO_PROGRESS)
                for job in claimed[start : start + FINISH_BATCH]
            ]
            await store.writes.jobs_finish(finishes, time.time())


async def _store_run(location: str, jobs: int) -> dict[str, Any]:
    from conveyor import JobStatus
    from conveyor.engine._retention import apply_retention
    from conveyor.store import JobMatch, ListParams, store_at

    store = store_at(location)
    began = time.perf_counter()
    await store.open("scale")
    figures: dict[str, Any] = {"open_ms": (time.perf_counter() - began) * 1000}
    try:
        await _cycle(store, WARM_UP, {})  # the first writes on a copy pay for its making
        await _cycle(store, jobs, figures)

        reads = store.reads
        every = frozenset(JobStatus)
        retention = {JobStatus(status): keep for status, keep in RETENTION.items()}
        figures |= {
            "list_ms": await _timed_read(lambda: reads.jobs_list(ListParams())),
            "list_status_ms": await _timed_read(
                lambda: reads.jobs_list(ListParams(status=JobStatus.COMPLETED))
            ),
            "list_queue_ms": await _timed_read(lambda: reads.jobs_list(ListParams(queue=QUEUE))),
            "list_rare_tag_ms": await _timed_read(
                lambda: reads.jobs_list(ListParams(tags=["no-job-has-it"]))
            ),
            "queue_counts_ms": await _timed_read(reads.queue_counts),
            "count_all_ms": await _timed_read(lambda: reads.jobs_count(JobMatch(statuses=every))),
            "throughput_ms": await _timed_read(
                lambda: reads.jobs_finished_per_minute(time.time() - 3600)
            ),
            # What a runtime's retention does at start and every 10 minutes with the
            # default periods: here it finds nothing to delete.
            "retention_pass_ms": await _timed_read(
                lambda: apply_retention(store, retention, time.time())
            ),
        }
    finally:
        await store.close()
    return figures


async def _e2e_run(location: str, jobs: int) -> dict[str, Any]:
    from conveyor import Event, JobStatus, Queue, Runtime

    class Noop(Queue[object]):
        name = QUEUE
        worker_count = E2E_WORKERS

        async def handle_item(self, item: object) -> None:
            pass

    began = time.perf_counter()
    async with Runtime(location, queues=[Noop()]) as rt:
        opened = time.perf_counter() - began
        done = 0
        finished = anyio.Event()

        async def count(stream: Any) -> None:
            nonlocal done
            event: Event
            async for event in stream:
                if event.status is JobStatus.COMPLETED:
                    done += 1
                    if done == jobs:
                        finished.set()
                        return

        figures = {"runtime_open_ms": opened * 1000}
        warm_up = 0
        completions = rt.events(statuses=[JobStatus.COMPLETED], max_buffer=WARM_UP * 2)
        async with completions:
            await rt.enqueue_many(QUEUE, [{}] * WARM_UP)
            async for _ in completions:
                warm_up += 1
                if warm_up == WARM_UP:
                    break
        with _Phase(figures, "e2e", jobs):
            async with anyio.create_task_group() as tg:
                tg.start_soon(count, rt.events(max_buffer=jobs * 4))
                for start in range(0, jobs, 1000):
                    await rt.enqueue_many(QUEUE, [{}] * min(1000, jobs - start))
                await finished.wait()
    return figures


# -- the parent ------------------------------------------------------------------------


def _child(args: list[str]) -> dict[str, Any]:
    result = subprocess.run(
        [sys.executable, __file__, *args], capture_output=True, text=True, timeout=7200
    )
    if result.returncode != 0:
        raise SystemExit(f"{' '.join(args)} failed:\n{result.stderr}")
    lines = result.stdout.strip().splitlines()
    return dict(json.loads(lines[-1])) if lines else {}


def _copy(template: str, location: str) -> None:
    """A copy of the template, on disk before the run: the kernel's writeback of a
    fresh copy's dirty pages would otherwise stall the run's fsyncs, the more so the
    larger the store (measured: a third off the 1M store's durable insert rate)."""
    shutil.copyfile(template, location)
    with open(location, "rb+") as copy:
        os.fsync(copy.fileno())
    os.sync()


def _run(store: str, template: str, kind: str, jobs: int) -> dict[str, Any]:
    """One measurement on a fresh copy of ``template``, in a fresh child process."""
    with tempfile.TemporaryDirectory(dir=CACHE if store == "sqlite" else None) as tmp:
        if store == "sqlite":
            location = f"{tmp}/scale.db"
            _copy(template, location)
        else:
            schema = f"bench_scale_{os.getpid()}_{time.monotonic_ns()}"
            location = f"{PG_URL}?schema={schema}"
            anyio.run(_pg_copy, template, location)
        try:
            figures = _child(["--child", kind, "--db", location, "--jobs", str(jobs)])
        finally:
            if store == "postgres":
                anyio.run(_pg_drop, schema)
    rss = figures.pop("peak_rss_mb")
    return figures | {f"{kind}_rss_mb": rss}


RATES = ("insert_per_s", "claim_per_s", "finish_per_s", "e2e_per_s")
BAR_RATES = ("claim_per_s", "finish_per_s")


def _fmt(key: str, value: float) -> str:
    if key.endswith("_per_s"):
        return f"{value:>10,.0f}/s"
    if key.endswith("_mb"):
        return f"{value:>8.0f} MB"
    if key.endswith("_cpu_us"):
        return f"{value:>9.1f} us"
    return f"{value:>9.2f} ms"


def _table(sizes: list[int], runs: dict[int, list[dict[str, Any]]]) -> None:
    """The medians by N, each with its ratio largest/smallest, and the bar's verdict."""
    medians = {
        size: {key: statistics.median(r[key] for r in rs) for key in rs[0]}
        for size, rs in runs.items()
    }
    smallest, largest = sizes[0], sizes[-1]
    keys = list(medians[smallest])
    print(f"\n  {'N =':<18}" + "".join(f"{size:>14,}" for size in sizes) + "   largest/smallest")
    for key in keys:
        low, high = medians[smallest][key], medians[largest][key]
        if key.endswith("_per_s"):
            ratio = f"{low / high:.2f}x slower" if high else "-"
        else:
            ratio = f"x{high / low:.2f}" if low else "-"
        if key in RATES:
            ratio += (
                "   (runs: "
                + "; ".join(
                    ", ".join(f"{r:,.0f}" for r in sorted(r[key] for r in runs[size]))
                    for size in (smallest, largest)
                )
                + ")"
            )
        values = "".join(f"{_fmt(key, medians[size][key]):>14}" for size in sizes)
        print(f"  {key:<18}{values}   {ratio}")

    # The bar on the median of each run's own ratio: the sizes of a run were measured
    # back to back, so the machine's drift between runs (other work on a shared machine)
    # cancels out of it, where it does not out of a ratio of medians.
    print(f"\n  each run's {largest:,}/{smallest:,}, median (and every run's):")
    paired: dict[str, float] = {}
    for key in (k for k in RATES if k in medians[smallest]):
        pairs = zip(runs[smallest], runs[largest], strict=True)
        ratios = [low[key] / high[key] for low, high in pairs]
        paired[key] = statistics.median(ratios)
        shown = ", ".join(f"{r:.2f}" for r in sorted(ratios))
        print(f"  {key:<18}{paired[key]:>13.2f}x slower   ({shown})")
    verdicts = [(f"{k[:-6]} {paired[k]:.2f}x slower", paired[k] < BAR) for k in BAR_RATES]
    for key in (k for k in keys if k.endswith("_rss_mb")):
        grown = medians[largest][key] / medians[smallest][key]
        verdicts.append((f"{key[:-7]} peak RSS x{grown:.2f}", grown < RSS_SLACK))
    met = all(ok for _, ok in verdicts)
    print(
        f"\nbar at N = {largest:,} (claim and finish < {BAR}x slower, peak RSS within"
        f" {RSS_SLACK - 1:.0%}): {'met' if met else 'NOT met'}: "
        + "; ".join(f"{text} {'ok' if ok else 'NOT ok'}" for text, ok in verdicts)
    )


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument("--sizes", default="10000,1000000", help="finished jobs retained, N")
    parser.add_argument("--jobs", type=int, default=20_000, help="fresh jobs per run")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--store", choices=("sqlite", "postgres"), default="sqlite")
    parser.add_argument("--no-e2e", action="store_true", help="the store runs only")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parser.add_argument("--db", help=argparse.SUPPRESS)
    parser.add_argument("--size", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()

    if args.child:
        if args.child == "build":
            anyio.run(_build, args.db, args.size)
            return
        run = _store_run if args.child == "store" else _e2e_run
        measured = anyio.run(run, args.db, args.jobs)
        print(json.dumps(measured | {"peak_rss_mb": _peak_rss_mb()}))
        return

    sizes = sorted(int(s) for s in args.sizes.split(","))
    where = "SQLite (synchronous=FULL)" if args.store == "sqlite" else f"PostgreSQL ({PG_URL})"
    print(
        f"conveyor on {where}: {args.jobs:,} fresh jobs on stores retaining N finished jobs,"
        f" median of {args.runs} runs"
    )
    print(f"machine: {os.cpu_count()} cores, Python {sys.version.split()[0]}")
    templates = {size: _template(args.store, size) for size in sizes}
    kinds = ["store"] if args.no_e2e else ["store", "e2e"]
    runs: dict[int, list[dict[str, Any]]] = {size: [] for size in sizes}
    for i in range(args.runs):
        figures: dict[int, dict[str, Any]] = {size: {} for size in sizes}
        for kind in kinds:
            # Each kind on every N back to back, smallest or largest first in turn: the
            # sizes of a run share the machine's state, whatever else it is doing.
            for size in sizes if i % 2 == 0 else sizes[::-1]:
                figures[size] |= _run(args.store, templates[size], kind, args.jobs)
        for size in sizes:
            runs[size].append(figures[size])
            shown = "  ".join(f"{k} {figures[size][k]:,.0f}" for k in RATES if k in figures[size])
            print(f"  run {i + 1}, N = {size:,}: {shown}", flush=True)

    _table(sizes, runs)


if __name__ == "__main__":
    main()

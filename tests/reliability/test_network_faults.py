"""PostgreSQL over a faulty network: worker processes in a network namespace of the
test's own reach the server through a wire namespace that drops packets (netns.py) and a
forwarder that delays them. Delay and loss, a short blackhole, one longer than the lease
with a worker killed during it, and connections the far end gave up on while the worker
was idle: nothing is lost, no job runs again without a reason it can name, and work
resumes within seconds of the heal."""

from __future__ import annotations

import os
import signal
import time
from collections import Counter
from collections.abc import Callable, Iterator

import anyio
import pytest

from conveyor import JobStatus, Runtime

from ..conftest import wait_until
from .conftest import Child, scaled
from .netns import HOST, Network, missing
from .worker import Soak

pytestmark = [pytest.mark.anyio, pytest.mark.timeout(scaled(300, 1800))]

# Reasons a job may run again, as its history says them.
EXPLAINED = ("worker lost", "the answer to its claim was lost")


@pytest.fixture
def network() -> Iterator[Network]:
    reason = missing()
    if reason is not None:
        if os.environ.get("CONVEYOR_REQUIRE_NETNS"):
            pytest.fail(f"the network-fault tests must run here, but {reason}")
        pytest.skip(reason)
    with Network() as net:
        yield net


class Wire:
    """Workers inside the worker namespace, on the test's schema, through forwarders."""

    def __init__(self, network: Network, pg_url: str, children: Callable[..., Child]) -> None:
        self.network = network
        self.pg_url = pg_url
        self.children = children
        self.urls: dict[int, str] = {}
        self.forwarders: dict[int, Child] = {}

    async def url(self, delay_ms: int) -> str:
        """The database as the workers reach it: through a forwarder adding ``delay_ms``
        each way, and the wire namespace."""
        if delay_ms not in self.urls:
            fwd = self.children("forwarder.py", HOST, "0", "5432", str(delay_ms))
            with anyio.fail_after(10):
                await wait_until(lambda: "listening" in fwd.output(), 0.02)
            port = fwd.output().split("listening ", 1)[1].split()[0]
            self.urls[delay_ms] = self.pg_url.replace("127.0.0.1:5432", f"{HOST}:{port}")
            self.forwarders[delay_ms] = fwd
        return self.urls[delay_ms]

    def worker(self, url: str, *args: str) -> Child:
        return self.children("worker.py", url, *args, wrap=self.network.command)


@pytest.fixture
def wire(network: Network, pg_url: str, children: Callable[..., Child]) -> Wire:
    return Wire(network, pg_url, children)


async def all_done(observer: Runtime, total: int) -> None:
    async def done() -> bool:
        counts = (await observer.queue_counts())["soak"]
        return counts[JobStatus.COMPLETED] + counts[JobStatus.FAILED] == total

    await wait_until(done, 0.1)


async def completions(observer: Runtime) -> int:
    return (await observer.queue_counts())["soak"][JobStatus.COMPLETED]


async def check_histories(observer: Runtime, ids: list[str]) -> tuple[int, int]:
    """Every job completed once, each extra run explained; (extra runs, failed)."""
    extra = failed = 0
    for job_id in ids:
        history = await observer.history(job_id)
        runs = sum(h.status is JobStatus.RUNNING for h in history)
        reasons = sum(any(r in (h.message or "") for r in EXPLAINED) for h in history)
        ended = [h.status for h in history if h.status.is_terminal]
        assert len(ended) == 1, history
        failed += ended[0] is JobStatus.FAILED
        assert runs <= 1 + reasons, history  # no run again without a reason
        extra += runs - 1
    return extra, failed


async def resumed_after(observer: Runtime, since: int) -> float:
    """Seconds until a job completes beyond ``since`` completions (from now)."""
    start = time.monotonic()

    async def moved() -> bool:
        return await completions(observer) > since

    await wait_until(moved, 0.02)
    return time.monotonic() - start


async def test_delay_and_loss(
    pg_url: str, network: Network, wire: Wire, figure: Callable[..., None]
) -> None:
    url = await wire.url(20)
    network.lose(2)
    jobs_count = scaled(400, 4000)
    async with Runtime(pg_url, queues=[Soak()], workers=False) as observer:
        start = time.monotonic()
        for _ in range(2):
            wire.worker(url)
        jobs = await observer.enqueue_many("soak", [{"steps": 2} for _ in range(jobs_count)])
        with anyio.fail_after(scaled(200, 1500)):
            await all_done(observer, jobs_count)
        elapsed = time.monotonic() - start
        extra, failed = await check_histories(observer, [j.id for j in jobs])
    assert failed == 0
    figure(
        jobs=jobs_count,
        delay_ms=20,
        loss_pct=2,
        extra_runs=extra,
        jobs_per_s=round(jobs_count / elapsed),
    )


async def test_blackholes_short_and_longer_than_the_lease(
    pg_url: str,
    network: Network,
    wire: Wire,
    figure: Callable[..., None],
) -> None:
    url = await wire.url(0)
    lease = scaled(6.0, 30.0)
    short, long = 10.0, scaled(12.0, 40.0)
    jobs_count = scaled(3000, 20_000)
    async with Runtime(pg_url, queues=[Soak()], workers=False) as observer:
        workers = [wire.worker(url, "--lease-ttl", str(lease)) for _ in range(2)]
        jobs = await observer.enqueue_many(
            "soak", [{"steps": 2, "every": 0.005} for _ in range(jobs_count)]
        )
        ids = [j.id for j in jobs]
        resumes: list[float] = []
        with anyio.fail_after(scaled(250, 1500)):
            for seconds, kill in ((short, False), (long, True)):
                target = await completions(observer) + jobs_count // 5

                async def busy(target: int = target) -> bool:
                    return await completions(observer) >= target

                await wait_until(busy, 0.05)
                network.blackhole()
                await anyio.sleep(seconds / 2)  # the partition's length is the scenario
                if kill:  # a worker dies while nobody can hear of it
                    workers[0].kill()
                await anyio.sleep(seconds / 2)
                before = await completions(observer)
                network.heal()
                resumes.append(await resumed_after(observer, before))
            await all_done(observer, jobs_count)
        extra, failed = await check_histories(observer, ids)
    assert failed == 0
    assert max(resumes) < scaled(5.0, 5.0)  # seconds from the heal to work going on
    figure(
        jobs=jobs_count,
        lease_s=lease,
        blackholes_s=f"{short:g},{long:g}",
        killed_in_the_long_one=1,
        resumed_after_s=",".join(f"{r:.1f}" for r in resumes),
        extra_runs=extra,
    )


async def test_connections_the_far_end_gave_up_on_while_idle(
    pg_url: str,
    network: Network,
    wire: Wire,
    figure: Callable[..., None],
) -> None:
    url = await wire.url(0)
    async with Runtime(pg_url, queues=[Soak()], workers=False) as observer:
        worker = wire.worker(url)
        with anyio.fail_after(30):
            await wait_until(lambda: "ready" in worker.output(), 0.05)
        network.blackhole()
        # The far end gives up on the idle worker's connections (its listener included)
        # and forgets them, while no packet can tell the worker so.
        forwarder = wire.forwarders[0]
        forwarder.proc.send_signal(signal.SIGUSR1)
        with anyio.fail_after(10):
            await wait_until(lambda: "gave up" in forwarder.output(), 0.02)
        await anyio.sleep(1)  # the partition outlives the connections: the scenario
        network.heal()
        healed = time.monotonic()
        latencies = []
        for _ in range(5):
            job = await observer.enqueue("soak", {})
            with anyio.fail_after(30):
                async with observer.events(job_id=job.id) as stream:
                    async for event in stream:
                        if event.status is JobStatus.COMPLETED:
                            break
            latencies.append(time.monotonic() - healed)
            healed = time.monotonic()
    assert latencies[0] < 2.0  # the first job after the heal starts within a second or two
    assert max(latencies[1:]) < 1.0  # and the ones after it at once
    figure(
        first_job_after_heal_s=round(latencies[0], 2),
        next_jobs_s=",".join(f"{x:.2f}" for x in latencies[1:]),
    )
    assert Counter(worker.output().split()).get("Traceback", 0) == 0

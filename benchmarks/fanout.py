"""Event fan-out: latency from report_progress() to receipt, and events/s delivered, with
1, 100 and 1,000 websocket clients held by a second process on loopback — next to a bare
`websockets` broadcast to the same number of clients, in the same run.

    python benchmarks/fanout.py [--clients 1,100,1000] [--events 50] [--runs 3]

Latency: after an uncounted warm-up event (see WARM_UP), the sender stamps each event
with time.time_ns() (conveyor: in the progress message, from inside a job handler; bare:
in the same field of the same message), and each client subtracts it on receipt: both
processes share this machine's clock. The bare server broadcasts what conveyor's clients
get, field for field (a queue.job.changed event, JSON encoded once per event), so the
clients parse the same bytes on both sides (a 46-byte {"t", "phase"} against a 268-byte
event cost the clients about a tenth more CPU, which the ratio counted against conveyor).
Events are sent every 100 ms, so each measures one event reaching every client, not a
queue building up. Then a burst: as many events as fast as possible; events/s is burst
deliveries at all clients divided by the time from the first burst event sent to the
last one received.
Figures are medians over runs; the conveyor/bare ratio is per run, then the median.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import anyio
import anyio.abc

INTERVAL = 0.1
BURST = 200
# Before the paced events, one uncounted event and this long a pause, on both sides: a
# job's first report waits for its "running" transition to go out and rides in that event
# (so that no report overtakes it), which is job start, not fan-out; the pause also lets
# the clients read the job's transitions before the first timed event.
WARM_UP = 0.5


def _percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] if ordered else float("nan")


# -- the client process ------------------------------------------------------------------


async def _clients(url: str, count: int, mode: str, expect: int) -> dict[str, Any]:
    from websockets.asyncio.client import connect

    latencies: list[float] = []
    received = 0
    size = 0
    burst_first = burst_last = 0
    connections = []
    limiter = anyio.Semaphore(50)

    async def open_one() -> None:
        async with limiter:
            ws = await connect(url, max_size=None, compression=None, open_timeout=60)
            if mode == "conveyor":
                await ws.send(json.dumps({"id": 1, "op": "subscribe", "queue": "fan"}))
                while json.loads(await ws.recv())["type"] != "result":
                    pass
            connections.append(ws)

    async with anyio.create_task_group() as tg:
        for _ in range(count):
            tg.start_soon(open_one)
    print("ready", flush=True)

    async def read(ws: Any) -> None:
        nonlocal received, burst_first, burst_last, size
        got = 0
        async for message in ws:
            now = time.time_ns()
            data = json.loads(message)
            text = (data.get("progress") or {}).get("message") or ""
            if not text.startswith("t="):
                continue  # conveyor's transitions of the job
            stamp, phase = text[2:].split(":")
            size = len(message)
            received += 1
            got += 1
            if phase == "paced":
                latencies.append((now - int(stamp)) / 1e6)
            else:
                burst_first = min(burst_first or int(stamp), int(stamp))
                burst_last = max(burst_last, now)
            if got >= expect:
                return

    with anyio.move_on_after(120):
        async with anyio.create_task_group() as tg:
            for ws in connections:
                tg.start_soon(read, ws)
    for ws in connections:
        await ws.close()
    return {
        "latencies": latencies,
        "received": received,
        "burst": received - len(latencies),
        "first": burst_first,
        "last": burst_last,
        "bytes": size,
    }


# -- the server side ---------------------------------------------------------------------


async def _run_conveyor(count: int, events: int) -> dict[str, Any]:
    from conveyor import Queue, Runtime

    class Fan(Queue):
        name = "fan"

        async def handle_item(self, item: dict[str, Any]) -> None:
            self.report_progress(0, 2, "warm-up")
            await anyio.sleep(WARM_UP)
            for _ in range(item["events"]):
                self.report_progress(1, 2, f"t={time.time_ns()}:paced")
                await anyio.sleep(INTERVAL)
            for _ in range(BURST):
                self.report_progress(1, 2, f"t={time.time_ns()}:burst")
                await anyio.lowlevel.checkpoint()

    with tempfile.TemporaryDirectory() as tmp:
        async with Runtime(Path(tmp) / "fan.db", queues=[Fan()], serve=("127.0.0.1", 0)) as rt:
            # The server buffers up to 1,000 events per client, like the bare broadcast
            # which never drops: burst reports coalesce only past that.
            return await _drive(rt.server_url, count, "conveyor", events, rt, None)


async def _run_bare(count: int, events: int) -> dict[str, Any]:
    from websockets.asyncio.server import broadcast, serve

    clients: set[Any] = set()

    async def handler(ws: Any) -> None:
        clients.add(ws)
        try:
            await ws.wait_closed()
        finally:
            clients.discard(ws)

    async def send(phase: str) -> None:
        broadcast(clients, _event(phase if phase == "warm-up" else f"t={time.time_ns()}:{phase}"))

    async with serve(handler, "127.0.0.1", 0, compression=None) as server:
        port = server.sockets[0].getsockname()[1]
        return await _drive(f"ws://127.0.0.1:{port}", count, "bare", events, None, send)


def _event(message: str) -> str:
    """The bare side's message: a progress event as conveyor's server sends it (compact
    JSON, the subscription id appended), the stamp in its progress message."""
    at = datetime.now(UTC).isoformat(timespec="microseconds").replace("+00:00", "Z")
    event = {
        "type": "event",
        "event": "queue.job.changed",
        "seq": 2,
        "job_id": "068ZK4C2VQ8T6ZR3W1BDMNHX5E",
        "queue": "fan",
        "status": "running",
        "progress": {"current": 1, "total": 2, "message": message},
        "at": at,
        "message": None,
        "subscription": "s1",
    }
    return json.dumps(event, separators=(",", ":"))


async def _drive(
    url: str, count: int, mode: str, events: int, rt: Any, send: Any
) -> dict[str, Any]:
    expect = events + BURST
    proc = await anyio.open_process(
        [
            sys.executable,
            __file__,
            "--child",
            mode,
            "--url",
            url,
            "--clients",
            str(count),
            "--expect",
            str(expect),
        ],
    )
    assert proc.stdout is not None
    buffered = b""
    while b"ready" not in buffered:
        chunk = await proc.stdout.receive()
        buffered += chunk
    if rt is not None:
        job = await rt.enqueue("fan", {"events": events})
        await rt.wait(job.id, timeout=600)
    else:
        await send("warm-up")
        await anyio.sleep(WARM_UP)
        for _ in range(events):
            await send("paced")
            await anyio.sleep(INTERVAL)
        for _ in range(BURST):
            await send("burst")
            await anyio.lowlevel.checkpoint()
    output = b""
    async for chunk in proc.stdout:
        output += chunk
    await proc.wait()
    result = json.loads(output.decode().strip().splitlines()[-1])
    paced = result["latencies"]
    span = (result["last"] - result["first"]) / 1e9 or float("nan")
    return {
        "p50_ms": _percentile(paced, 0.5),
        "p99_ms": _percentile(paced, 0.99),
        "delivered": result["received"],
        "expected": count * expect,
        "events_per_s": result["burst"] / span,
        "bytes": result["bytes"],
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument("--clients", default="1,100,1000")
    parser.add_argument("--events", type=int, default=50)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parser.add_argument("--url", help=argparse.SUPPRESS)
    parser.add_argument("--expect", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        result = anyio.run(_clients, args.url, int(args.clients), args.child, args.expect)
        print(json.dumps(result), flush=True)
        return

    print(f"event fan-out, {args.events} paced events + {BURST} burst, median of {args.runs} runs")
    for count in (int(c) for c in args.clients.split(",")):
        ours, bare, ratios, rates = [], [], [], []
        for _ in range(args.runs):
            c = anyio.run(_run_conveyor, count, args.events)
            b = anyio.run(_run_bare, count, args.events)
            ours.append(c)
            bare.append(b)
            ratios.append(c["p99_ms"] / b["p99_ms"])
            rates.append(c["events_per_s"] / b["events_per_s"])
        for label, runs in (("conveyor", ours), ("bare websockets", bare)):
            med = {k: statistics.median(r[k] for r in runs) for k in runs[0]}
            print(
                f"  {count:>5} clients  {label:<16} p50 {med['p50_ms']:7.2f} ms"
                f"  p99 {med['p99_ms']:7.2f} ms  {med['events_per_s']:>9,.0f} events/s"
                f"  delivered {med['delivered']:,.0f}/{med['expected']:,.0f}"
                f"  {med['bytes']:.0f} B/event"
            )
        print(
            f"  {count:>5} clients  conveyor/bare p99 = {statistics.median(ratios):.2f}x"
            f"  events/s = {statistics.median(rates):.0%}"
        )


if __name__ == "__main__":
    main()

"""Property-based tests of every public entry point: whatever a user passes is accepted
or refused with a ConveyorError, the runtime keeps serving, and every stored row reads
back (list_jobs, history, the HTTP API, the CLI).

Hypothesis drives each entry point from a worker thread (``anyio.from_thread``), so one
real runtime, on a real SQLite file or PostgreSQL schema, serves all the examples.
"""

from __future__ import annotations

import json
import math
import pathlib
import subprocess
import sys
import urllib.parse
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import anyio
import anyio.from_thread
import anyio.to_thread
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from websockets.asyncio.client import connect

from conveyor import ConveyorError, JobStatus, Limits, Queue, Runtime, ValidationError
from conveyor._wire import OPS
from conveyor.client import Client

from ..server.test_server import http_get

pytestmark = [pytest.mark.anyio, pytest.mark.timeout(240)]

SETTINGS = settings(max_examples=150, deadline=None, suppress_health_check=list(HealthCheck))

# JSON-ish values, with the edges users reach: huge ints, non-finite floats, NUL, deep lists.
scalars = (
    st.none()
    | st.booleans()
    | st.integers()
    | st.integers(min_value=2**62, max_value=2**70)
    | st.floats()
    | st.text(max_size=20)
    | st.sampled_from(["", "\x00", "a\x00b", "é", "💥"])
)
json_values = st.recursive(
    scalars,
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4)
    ),
    max_leaves=12,
)


class Deep(list[Any]):
    """A list nested ``n`` deep, with a short repr (hypothesis prints falsifying
    examples, and printing this one the ordinary way would overflow the stack)."""

    def __init__(self, n: int) -> None:
        value: Any = []
        for _ in range(n - 1):
            value = [value]
        super().__init__([value])
        self.n = n

    def __repr__(self) -> str:
        return f"Deep({self.n})"


def deep(n: int) -> Any:
    return Deep(n)


class Unprintable(Exception):
    def __str__(self) -> str:
        raise RuntimeError("no text for you")


# Anything at all, as users pass it: JSON values, and the objects they should not.
anything = (
    json_values
    | st.sampled_from(
        [
            object(),
            pathlib.Path("/tmp/x"),
            b"bytes",
            "\ud800",
            math.nan,
            math.inf,
            -math.inf,
            10**30,
            2**63,
            timedelta(days=-1),
            timedelta(days=10**6),
            datetime(2026, 1, 1),  # naive
            datetime(9999, 12, 31, tzinfo=UTC),
            datetime(1, 1, 1, tzinfo=UTC),
            deep(3000),
            "x" * 5000,
            ["a"] * 10,
            Unprintable(),
        ]
    )
    | st.floats(min_value=-1e13, max_value=1e13)
)


class Echo(Queue):
    name = "echo"
    worker_count = 4

    async def handle_item(self, item: Any) -> Any:
        return "ok"


class Scripted(Queue):
    """Does what its payload's script says, with the values a test generated (kept in
    SCRIPTS by key, since some are not JSON)."""

    name = "scripted"
    worker_count = 4

    async def handle_item(self, item: Any) -> Any:
        kind, args = SCRIPTS[item]
        if kind == "progress":
            self.report_progress(*args[:3])
        elif kind == "progress_kw":
            self.report_progress(**args)
        elif kind == "fail":
            self.fail_job(args)
        elif kind == "raise":
            raise args
        return args if kind == "return" else None


SCRIPTS: dict[str, tuple[str, Any]] = {}

LIMITS = Limits(payload_bytes=64 * 1024, result_bytes=16 * 1024, created_by_bytes=64)


@pytest.fixture
async def served(location: str) -> AsyncIterator[Runtime]:
    async with Runtime(
        location,
        queues=[Echo(), Scripted()],
        serve=("127.0.0.1", 0),
        limits=LIMITS,
        shutdown_grace=0,
    ) as rt:
        yield rt


RAN: list[str] = []  # one entry per example run, so a test can tell hypothesis ran


def on_loop(fn: Callable[..., Any], *args: Any) -> Any:
    RAN.append(fn.__qualname__)
    return anyio.from_thread.run(fn, *args)


def ran(qualname_part: str) -> int:
    return sum(qualname_part in name for name in RAN)


async def assert_readable(rt: Runtime, location: str) -> None:
    """Every stored job reads back whole: lists page to the end, each job and its history
    load, the HTTP API answers, and so does ``conveyor jobs ls`` on the database."""
    cursor = None
    seen = 0
    while True:
        page = await rt.list_jobs(limit=1000, cursor=cursor)
        for job in page:
            assert (await rt.job(job.id)).id == job.id
            assert await rt.history(job.id)
        seen += len(page)
        if len(page) < 1000:
            break
        cursor = page[-1].id
    status, body = await http_get(rt, "/api/jobs?limit=1000")
    assert status == 200
    assert len(body["jobs"]) == min(seen, 1000) or body["cursor"] is not None
    listed = await anyio.to_thread.run_sync(
        lambda: subprocess.run(
            [sys.executable, "-m", "conveyor", "jobs", "ls", "--db", location, "--json"],
            capture_output=True,
            text=True,
            timeout=60,
        )
    )
    assert listed.returncode == 0, listed.stderr
    assert len(json.loads(listed.stdout)) == min(seen, 50)  # its default page


async def still_serves(rt: Runtime) -> None:
    with anyio.fail_after(30):
        await rt.resume("echo")  # a fuzzed pause is no failure: its resume must work too
        job = await rt.enqueue("echo", {"alive": True})
        assert (await rt.wait(job.id)).status is JobStatus.COMPLETED


ENQUEUE_OPTIONS = ("created_by", "priority", "delay", "at", "max_attempts", "timeout", "unique_key")

# Meta and tags as users pass them: well-formed (labels, any text), near the rules (a
# 65-character key, a space, over the size limits), and anything at all.
labels = st.from_regex(r"[A-Za-z0-9_.:/-]{1,64}", fullmatch=True)
near_labels = labels | st.text(max_size=66) | st.sampled_from(["", "a" * 65, "a b", "é", "a=b"])
meta_values = (
    anything
    | st.dictionaries(near_labels, anything | st.text(max_size=40), max_size=4)
    | st.dictionaries(labels, st.text(max_size=2500), max_size=3)
)
tag_values = (
    anything
    | st.lists(near_labels, max_size=5)
    | st.lists(labels, max_size=40)
    | st.frozensets(labels, max_size=3)
    | st.tuples(labels, labels)
)
OPTION_VALUES = dict.fromkeys(ENQUEUE_OPTIONS, anything) | {
    "meta": meta_values,
    "tags": tag_values,
}


async def test_enqueue_accepts_or_refuses_anything(served: Runtime, location: str) -> None:
    rt = served
    options = st.fixed_dictionaries({}, optional=OPTION_VALUES)

    async def one(payload: Any, opts: dict[str, Any], many: bool) -> None:
        with anyio.fail_after(20):
            try:
                if many:
                    opts.pop("unique_key", None)
                    await rt.enqueue_many("echo", [payload, {"ok": 1}], **opts)
                else:
                    await rt.enqueue("echo", payload, **opts)
            except ConveyorError:
                pass

    @SETTINGS
    @given(anything, options, st.booleans())
    def fuzz(payload: Any, opts: dict[str, Any], many: bool) -> None:
        on_loop(one, payload, opts, many)

    await anyio.to_thread.run_sync(fuzz)
    assert ran("test_enqueue_accepts") >= 100
    await assert_readable(rt, location)
    await still_serves(rt)


MATCH_OPTIONS = ("queue", "statuses", "created_by", "older_than")


async def test_queue_and_bulk_operations_accept_or_refuse_anything(
    served: Runtime, location: str
) -> None:
    """Pause, resume, and bulk cancel and rerun, through the Runtime and the Client, with
    anything for each argument: done by both or refused by both with the same
    ConveyorError, and the store still reads back whole."""
    rt = served
    calls = st.one_of(
        st.tuples(
            st.sampled_from(["cancel_matching", "rerun_matching"]),
            st.just(()),
            st.fixed_dictionaries(
                {}, optional=dict.fromkeys(MATCH_OPTIONS, anything | st.just("echo"))
            ),
        ),
        st.tuples(
            st.sampled_from(["pause", "resume"]),
            st.tuples(anything | st.just("echo")),
            st.fixed_dictionaries({}, optional={"by": anything}),
        ),
    )
    async with Client(rt.server_url) as client:

        async def one(op: str, args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
            if op == "resume":
                kwargs = {}
            if op != "rerun_matching":
                kwargs.pop("by", None)
            outcomes: list[str] = []
            for caller in (rt, client):
                try:
                    with anyio.fail_after(20):
                        await getattr(caller, op)(*args, **kwargs)
                    outcomes.append("done")
                except ConveyorError as exc:
                    outcomes.append(type(exc).__name__)
            assert outcomes[0] == outcomes[1], (outcomes, op, args, kwargs)

        @SETTINGS
        @given(calls)
        def fuzz(call: tuple[str, tuple[Any, ...], dict[str, Any]]) -> None:
            on_loop(one, *call)

        await anyio.to_thread.run_sync(fuzz)
    assert ran("test_queue_and_bulk") >= 100
    await assert_readable(rt, location)
    await still_serves(rt)


async def test_the_client_refuses_exactly_what_the_runtime_refuses(served: Runtime) -> None:
    # The same enqueue through the Runtime and through the Client ends the same way:
    # stored by both, or refused by both with the same ConveyorError (the Client checks
    # before sending what any runtime would refuse; the server, its sizes and types).
    rt = served
    options = st.fixed_dictionaries({}, optional=OPTION_VALUES)
    async with Client(rt.server_url) as client:

        async def one(payload: Any, opts: dict[str, Any]) -> None:
            outcomes: list[str] = []
            for caller in (rt, client):
                try:
                    with anyio.fail_after(20):
                        await caller.enqueue("echo", payload, **opts)
                    outcomes.append("stored")
                except ConveyorError as exc:
                    outcomes.append(type(exc).__name__)
            assert outcomes[0] == outcomes[1], (outcomes, payload, opts)

        @SETTINGS
        @given(anything, options)
        def fuzz(payload: Any, opts: dict[str, Any]) -> None:
            on_loop(one, payload, opts)

        await anyio.to_thread.run_sync(fuzz)
    assert ran("test_the_client_refuses") >= 100
    await still_serves(rt)


async def test_meta_and_tags_are_stored_as_given_or_refused_naming_the_field(
    served: Runtime, location: str
) -> None:
    """Through the Runtime and the Client alike: meta and tags (and a list filter by
    them) refused with a ValidationError that names the field, or stored and read back
    as given (a repeated tag once), and found by every filter they make: list_jobs on
    both, and GET /api/jobs?tag=...&meta.KEY=..."""
    rt = served
    async with Client(rt.server_url) as client:

        async def one(meta: Any, tags: Any, through_client: bool) -> None:
            caller: Any = client if through_client else rt
            with anyio.fail_after(20):
                refusal = None
                try:
                    job = await caller.enqueue("echo", {}, meta=meta, tags=tags)
                except ValidationError as exc:
                    refusal = str(exc)
                if refusal is not None:
                    assert refusal.startswith(("meta", "tags")), refusal
                    with pytest.raises(ValidationError, match=r"^(meta|tags)"):
                        await caller.list_jobs(meta=meta, tags=tags)
                    return
                assert job.meta == dict(meta or {})
                assert job.tags == list(dict.fromkeys(tags or ()))
                stored = await rt.job(job.id)
                assert (stored.meta, stored.tags) == (job.meta, job.tags)
                # A newer job with neither: the newest match is the job, unless it has
                # neither too (an empty filter).
                newer = await rt.enqueue("echo", {})
                newest = job.id if job.meta or job.tags else newer.id
                for lister in (rt, client):
                    found = await lister.list_jobs(meta=job.meta, tags=job.tags, limit=1)
                    assert [j.id for j in found] == [newest]
                query = [("tag", t) for t in job.tags] + [
                    (f"meta.{k}", v) for k, v in job.meta.items()
                ]
                status, body = await http_get(
                    rt, "/api/jobs?limit=1&" + urllib.parse.urlencode(query)
                )
                assert status == 200, body
                assert [j["id"] for j in body["jobs"]] == [newest]

        @SETTINGS
        @given(meta_values, tag_values, st.booleans())
        def fuzz(meta: Any, tags: Any, through_client: bool) -> None:
            on_loop(one, meta, tags, through_client)

        await anyio.to_thread.run_sync(fuzz)
    assert ran("test_meta_and_tags_are_stored") >= 100
    await assert_readable(rt, location)
    await still_serves(rt)


async def test_list_filters_accept_or_refuse_anything_alike(served: Runtime) -> None:
    """list_jobs with anything for tags and meta: answered by the Runtime and the
    Client, or refused by both with the same ConveyorError."""
    rt = served
    await rt.enqueue("echo", {}, meta={"tenant": "acme"}, tags=["import"])
    async with Client(rt.server_url) as client:

        async def one(kwargs: dict[str, Any]) -> None:
            outcomes: list[str] = []
            for caller in (rt, client):
                try:
                    with anyio.fail_after(20):
                        jobs = await caller.list_jobs(**kwargs)
                    outcomes.append(str(len(jobs)))
                except ConveyorError as exc:
                    outcomes.append(type(exc).__name__)
            assert outcomes[0] == outcomes[1], (outcomes, kwargs)

        @SETTINGS
        @given(
            st.fixed_dictionaries(
                {},
                optional={
                    "tags": tag_values | st.just(["import"]),
                    "meta": meta_values | st.just({"tenant": "acme"}),
                    "queue": st.just("echo") | anything,
                },
            )
        )
        def fuzz(kwargs: dict[str, Any]) -> None:
            on_loop(one, kwargs)

        await anyio.to_thread.run_sync(fuzz)
    assert ran("test_list_filters_accept") >= 100
    await still_serves(rt)


handler_calls = st.one_of(
    st.tuples(st.just("progress"), st.lists(anything, max_size=3)),
    st.tuples(
        st.just("progress_kw"),
        st.fixed_dictionaries(
            {}, optional={"current": anything, "total": anything, "message": anything}
        ),
    ),
    st.tuples(st.just("fail"), anything),
    st.tuples(st.just("return"), anything),
    st.tuples(
        st.just("raise"),
        st.sampled_from(
            [
                ValueError("x" * 100_000),
                Unprintable(),
                RuntimeError("a\x00b\ud800"),
                SystemExit(3),
                KeyError(object()),
            ]
        ),
    ),
)


async def test_whatever_a_handler_does_its_job_ends_and_reads_back(
    served: Runtime, location: str
) -> None:
    rt = served
    counter = iter(range(10**9))

    async def one(call: tuple[str, Any]) -> None:
        key = f"s{next(counter)}"
        SCRIPTS[key] = call
        with anyio.fail_after(20):
            job = await rt.enqueue("scripted", key)
            done = await rt.wait(job.id)
        assert done.status in (JobStatus.COMPLETED, JobStatus.FAILED)
        assert (await rt.job(job.id)).status is done.status

    @SETTINGS
    @given(handler_calls)
    def fuzz(call: tuple[str, Any]) -> None:
        on_loop(one, call)

    await anyio.to_thread.run_sync(fuzz)
    assert ran("test_whatever_a_handler") >= 100
    await assert_readable(rt, location)
    await still_serves(rt)


wire_fields = st.dictionaries(
    st.sampled_from(
        [
            "id",
            "queue",
            "payload",
            "job_id",
            "created_by",
            "priority",
            "delay",
            "at",
            "max_attempts",
            "timeout",
            "unique_key",
            "status",
            "statuses",
            "limit",
            "cursor",
            "since",
            "subscription",
            "older_than",
            "by",
            "meta",
            "tags",
        ]
    ),
    json_values
    | st.dictionaries(near_labels, st.text(max_size=20), max_size=3)
    | st.lists(near_labels, max_size=3)
    | st.integers(min_value=2**63 - 2, max_value=2**64 + 2)
    | st.sampled_from([1e12, -1e12, 1e308, "echo", "scripted", "queued", ["queued"]]),
    max_size=6,
)
wire_ops = st.sampled_from(sorted(OPS))  # every op the server takes


async def test_every_wire_op_answers_whatever_its_fields(served: Runtime, location: str) -> None:
    rt = served
    async with connect(rt.server_url, max_size=None) as ws:

        async def one(message: str) -> None:
            with anyio.fail_after(20):
                await ws.send(message)
                while True:
                    reply = json.loads(await ws.recv())
                    if reply["type"] != "event":
                        break
            assert reply["type"] in ("result", "error"), reply

        @SETTINGS
        @given(
            st.one_of(
                st.builds(lambda op, f: json.dumps({"op": op, **f}), wire_ops, wire_fields),
                st.sampled_from(
                    [
                        "[" * 100_000 + "]" * 100_000,
                        '{"op": "enqueue", "queue": "echo", "payload": '
                        + "[" * 5000
                        + "]" * 5000
                        + "}",
                        '{"op": "enqueue", "queue": "echo", "payload": 1, "delay": 1e12}',
                        '{"op": "list_jobs", "limit": 9223372036854775808}',
                        '{"op": "subscribe", "since": 9223372036854775808}',
                        '{"op": "enqueue", "queue": "echo", "payload": 1, "priority": 1e400}',
                        '{"op": "enqueue", "queue": "echo", "payload": 1, "meta": {"k": 1}}',
                        '{"op": "enqueue", "queue": "echo", "payload": 1, "tags": "import"}',
                        '{"op": "list_jobs", "tags": ["a b"], "meta": {"k": "\\u0000"}}',
                    ]
                ),
            )
        )
        def fuzz(message: str) -> None:
            on_loop(one, message)

        await anyio.to_thread.run_sync(fuzz)
        assert ran("test_every_wire_op") >= 100
        assert ws.close_code is None  # never closed on us (no 1011)
    await assert_readable(rt, location)
    await still_serves(rt)


async def test_http_paths_and_queries_never_fail_the_server(served: Runtime) -> None:
    rt = served
    await rt.enqueue("echo", {"a": 1})
    segment = st.text(
        st.characters(codec="ascii", exclude_characters="#"), max_size=12
    ) | st.sampled_from(["api", "jobs", "queues", "healthz", "metrics", "..", "%00", "%ff"])
    paths = st.lists(segment, max_size=4).map(lambda parts: "/" + "/".join(parts))
    keys = st.sampled_from(["limit", "queue", "status", "cursor", "token", "x"]) | st.sampled_from(
        ["tag", "tag", "meta", "meta.", "meta.tenant", "meta.a b", "meta.é", "meta.meta.x"]
    )
    queries = st.lists(
        st.tuples(
            keys,
            st.text(max_size=12)
            | st.sampled_from(["-1", "0", "1001", "99999999999999999999999", "²", "queued"])
            | st.sampled_from(["import", "acme", "%00", "\x00", "a" * 70, "\ud800"]),
        ),
        max_size=5,
    )

    async def one(path: str, query: list[tuple[str, str]]) -> None:
        quoted = urllib.parse.quote(path, safe="/%")
        encoded = urllib.parse.urlencode(query, errors="surrogatepass")
        target = quoted + ("?" + encoded if query else "")
        with anyio.fail_after(20):
            status, _ = await http_get(rt, target)
        assert status in (200, 400, 404), (target, status)

    known = st.sampled_from(
        ["/api/jobs", "/api/jobs/", "/api/queues", "/api/workers", "/metrics", "/metrics/"]
    )

    @SETTINGS
    @given(paths | known, queries)
    def fuzz(path: str, query: list[tuple[str, str]]) -> None:
        on_loop(one, path, query)

    await anyio.to_thread.run_sync(fuzz)
    assert ran("test_http_paths") >= 100
    await still_serves(rt)


def test_cli_arguments_are_used_or_refused_in_one_line(tmp_path: Path) -> None:
    """``conveyor`` with generated argv: exit 0, 1 or 2, and never a traceback."""
    db = tmp_path / "cli.db"

    async def make() -> None:
        async with Runtime(db, queues=[Echo()]) as rt:
            job = await rt.enqueue("echo", 1)
            await rt.wait(job.id, timeout=10)

    anyio.run(make)
    words = st.sampled_from(
        [
            "jobs",
            "ls",
            "show",
            "cancel",
            "rerun",
            "purge",
            "--db",
            str(db),
            "--url",
            "http://127.0.0.1:1",
            "ws://",
            "nope://x",
            "--limit",
            "0",
            "5000",
            "-1",
            "--status",
            "failed",
            "bogus",
            "--older-than",
            "7d",
            "1e400",
            "x",
            "--all",
            "--json",
            "--queue",
            "\x00",
            "--version",
            "--port",
            "70000",
            "queues",
            "pause",
            "resume",
            "echo",
            "cancel-matching",
            "rerun-matching",
            "--created-by",
            "--by",
            "workers",
            "migrate",
            "--from",
            "--to",
            "--tag",
            "--meta",
            "import",
            "tenant=acme",
            "=x",
            "a b=c",
            "k=",
        ]
    )
    argv_lists = st.lists(words | st.text(max_size=6), max_size=7)

    @settings(max_examples=40, deadline=None, suppress_health_check=list(HealthCheck))
    @given(st.one_of(argv_lists, argv_lists.map(lambda a: ["jobs", "ls", "--db", str(db), *a])))
    def fuzz(argv: list[str]) -> None:
        argv = [a for a in argv if "\x00" not in a]  # an OS cannot pass NUL in argv
        if "demo" in argv or "serve" in argv or "worker" in argv or "watch" in argv:
            return  # long-running commands: tested in test_cli_live
        proc = subprocess.run(
            [sys.executable, "-m", "conveyor", *argv],
            capture_output=True,
            text=True,
            timeout=60,
            cwd=tmp_path,
        )
        assert proc.returncode in (0, 1, 2), (argv, proc.stderr)
        assert "Traceback" not in proc.stderr, (argv, proc.stderr)

    fuzz()


QUEUE_SETTINGS = (
    "name",
    "worker_count",
    "max_attempts",
    "timeout",
    "rate_limit",
    "retry_on",
    "backoff",
    "periodic",
    "periodic_catch_up",
    "periodic_payload",
    "on_startup",
    "on_shutdown",
    "before_run",
    "after_run",
)


def test_queue_settings_are_checked_where_the_class_is_written(tmp_path: Path) -> None:
    """A Queue subclass with any value for any setting: refused at definition with a
    ValidationError naming ``Class.setting``, or a queue a Runtime can be built with."""

    async def handle_item(self: Queue, item: Any) -> None:
        return None

    @SETTINGS
    @given(
        st.dictionaries(
            st.sampled_from(QUEUE_SETTINGS),
            anything
            | st.sampled_from([(5, 1.0), (ValueError,), "*/5 * * * *", 0.5, abs])
            | st.integers(-5, 20_000),
            max_size=3,
        )
    )
    def fuzz(settings_: dict[str, Any]) -> None:
        attrs = {"name": "q", "handle_item": handle_item, **settings_}
        refusal, stage = "", "definition"
        try:
            cls = type("Fuzzed", (Queue,), attrs)
            stage = "construction"
            Runtime(tmp_path / "q.db", queues=[cls()])
        except ConveyorError as exc:
            refusal = str(exc)
        else:
            return
        if stage == "construction":  # only what the class alone cannot know: its payload
            assert "payload" in refusal, refusal
        else:
            assert "Fuzzed." in refusal, refusal

    fuzz()

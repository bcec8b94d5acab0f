"""A job's meta and tags through its life in a real runtime, on both stores: the handler
reads them from the claimed record (where tracing will read its context) on every
attempt, a retry and a rerun (one and many) keep them, and enqueue_many gives each job
the same."""

from __future__ import annotations

import re
from types import MappingProxyType
from typing import Any

import msgspec
import msgspec.structs
import pytest

from conveyor import Job, JobStatus, Limits, Queue, Runtime, ValidationError, current_job
from conveyor.backoff import constant

pytestmark = [pytest.mark.anyio, pytest.mark.timeout(60)]

TRACE = {"traceparent": "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"}
SEEN: list[tuple[int, dict[str, str], list[str]]] = []


class Flaky(Queue):
    """Fails its first attempt of each run, recording what each attempt saw."""

    name = "flaky"
    max_attempts = 2
    backoff = constant(0.01)

    async def handle_item(self, item: Any) -> str:
        job = current_job()
        SEEN.append((job.attempts, job.meta, job.tags))
        if job.attempts == 1:
            raise ConnectionError("first attempt fails")
        return "ok"


async def test_meta_is_read_by_every_attempt_and_kept_by_retries_and_reruns(
    location: str,
) -> None:
    SEEN.clear()
    async with Runtime(location, queues=[Flaky()]) as rt:
        job = await rt.enqueue("flaky", {}, meta=TRACE, tags=["import"])
        done = await rt.wait(job.id, timeout=20)
        assert (done.status, done.attempts) == (JobStatus.COMPLETED, 2)
        assert SEEN == [(1, TRACE, ["import"]), (2, TRACE, ["import"])]
        await rt.rerun(job.id, by="ops")
        again = await rt.wait(job.id, timeout=20)
        assert (again.status, again.meta, again.tags) == (JobStatus.COMPLETED, TRACE, ["import"])
        assert SEEN[2:] == [(1, TRACE, ["import"]), (2, TRACE, ["import"])]

        many = await rt.enqueue_many("flaky", [{}, {}], meta={"tenant": "acme"}, tags=["bulk"])
        for each in many:
            await rt.wait(each.id, timeout=20)
        assert await rt.rerun_matching(queue="flaky", statuses=["completed"]) == 3
        for each in many:
            rerun = await rt.wait(each.id, timeout=20)
            assert (rerun.meta, rerun.tags) == ({"tenant": "acme"}, ["bulk"])
        listed = await rt.list_jobs(tags=["bulk"], meta={"tenant": "acme"})
        assert sorted(j.id for j in listed) == sorted(j.id for j in many)


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"meta": ["tenant", "acme"]}, "meta must be a mapping of str to str, not list"),
        ({"meta": {"": "x"}}, "meta key must be 1 to 64 ASCII letters"),
        ({"meta": {"a b": "x"}}, "meta key must be 1 to 64"),
        ({"meta": {"k" * 65: "x"}}, "meta key must be 1 to 64"),
        ({"meta": {1: "x"}}, "meta key must be a string, not int"),
        ({"meta": {"n": 42}}, "meta['n'] must be a string, not int"),
        ({"meta": {"n": "a\x00b"}}, "meta['n'] contains a NUL character"),
        ({"meta": {"n": "\ud800"}}, "meta['n'] is not valid Unicode"),
        (
            {"meta": {"n": "x" * 200}},
            "meta is 208 bytes of JSON, over the 200-byte limit (Limits.meta_bytes)",
        ),
        ({"tags": "import"}, "tags must be a list of strings, not 'import'"),
        ({"tags": {"import": 1}}, "tags must be a list of strings"),
        ({"tags": ["a", "b", "c", 4]}, "tags[3] must be a string, not int"),
        ({"tags": ["ok", "no way"]}, "tags[1] must be 1 to 64"),
        (
            {"tags": [f"t{n}" for n in range(30)]},
            "tags is 171 bytes of JSON, over the 100-byte limit (Limits.tags_bytes)",
        ),
        ({"tags": iter(lambda: "x", None)}, "tags holds too many tags for the 100-byte limit"),
    ],
)
async def test_what_does_not_fit_is_refused_naming_the_field(
    db_path: Any, options: dict[str, Any], message: str
) -> None:
    limits = Limits(meta_bytes=200, tags_bytes=100)
    async with Runtime(db_path, queues=[Flaky()], workers=False, limits=limits) as rt:
        for enqueue in (rt.enqueue, rt.enqueue_many):
            payload: Any = {} if enqueue is rt.enqueue else [{}]
            with pytest.raises(ValidationError, match=f"^{re.escape(message)}"):
                await enqueue("flaky", payload, **options)  # type: ignore[operator]
        with pytest.raises(ValidationError, match=f"^{re.escape(message)}"):
            await rt.list_jobs(**options)
        assert await rt.list_jobs() == []  # nothing stored


async def test_the_shapes_taken(db_path: Any) -> None:
    async with Runtime(db_path, queues=[Flaky()], workers=False) as rt:
        job = await rt.enqueue(
            "flaky",
            {},
            meta=MappingProxyType({"k": "", "a.b:c/d-e_f": "✓ é\n"}),  # any Mapping
            tags=("b", "a", "b"),
        )
        assert (job.meta, job.tags) == ({"k": "", "a.b:c/d-e_f": "✓ é\n"}, ["b", "a"])
        assert (await rt.job(job.id)).tags == ["b", "a"]  # order kept, the repeat once
        plain = await rt.enqueue("flaky", {}, meta={}, tags=[])
        assert (plain.meta, plain.tags) == ({}, [])


def test_records_without_meta_or_tags_still_decode_and_old_readers_skip_them() -> None:
    """A Job from a server of before (no meta, no tags) decodes with none; one of now,
    read by a reader that knows neither field, decodes too (unknown fields are skipped)."""
    old = {
        "id": "j",
        "queue": "q",
        "status": "queued",
        "payload": {},
        "created_at": "2026-01-01T00:00:00Z",
        "updated_at": "2026-01-01T00:00:00Z",
    }
    job = msgspec.convert(old, Job)
    assert (job.meta, job.tags) == ({}, [])

    class OldJob(msgspec.Struct):
        id: str
        queue: str

    now = msgspec.json.encode(msgspec.structs.replace(job, meta={"k": "v"}, tags=["t"]))
    assert msgspec.json.decode(now, type=OldJob) == OldJob(id="j", queue="q")

"""Bad input gets a typed error naming the problem, and nothing is stored."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

import msgspec
import pytest

from conveyor import (
    ConveyorError,
    JobNotFound,
    Limits,
    NotInJob,
    Queue,
    QueueNotFound,
    Runtime,
    ValidationError,
    check_cancelled,
    current_job,
    fail_job,
    report_progress,
)

pytestmark = pytest.mark.anyio


class TrainingPayload(msgspec.Struct):
    data_id: str
    algo: Literal["random-forest", "mlp"]
    params: dict[str, Any] = {}


class Training(Queue[TrainingPayload]):
    name = "training"

    async def handle_item(self, item: TrainingPayload) -> dict[str, Any]:
        assert isinstance(item, TrainingPayload)
        return {"model": f"{item.algo}:{item.data_id}"}


class Plain(Queue):
    name = "plain"

    async def handle_item(self, item: Any) -> Any:
        return item


def test_queue_payload_type_comes_from_the_subscript() -> None:
    assert Training.payload_type is TrainingPayload
    assert Plain.payload_type is Any


async def test_typed_payload_accepts_struct_or_dict(db_path: Path) -> None:
    async with Runtime(db_path, queues=[Training()]) as rt:
        a = await rt.enqueue("training", TrainingPayload(data_id="d1", algo="mlp"))
        b = await rt.enqueue("training", {"data_id": "d2", "algo": "random-forest"})
        assert a.payload == {"data_id": "d1", "algo": "mlp", "params": {}}
        assert (await rt.wait(a.id, timeout=10)).result == {"model": "mlp:d1"}
        assert (await rt.wait(b.id, timeout=10)).result == {"model": "random-forest:d2"}


@pytest.mark.parametrize(
    ("payload", "field"),
    [
        ({"data_id": 5, "algo": "mlp"}, "$.data_id"),
        ({"data_id": "d", "algo": "svm"}, "$.algo"),
        ({"algo": "mlp"}, "data_id"),
        (TrainingPayload(data_id=1, algo="mlp"), "$.data_id"),  # type: ignore[arg-type]
        ("not an object", "object"),
    ],
)
async def test_invalid_typed_payload_names_the_field_and_stores_nothing(
    db_path: Path, payload: Any, field: str
) -> None:
    async with Runtime(db_path, queues=[Training()], workers=False) as rt:
        with pytest.raises(ValidationError, match=field.replace("$", r"\$")):
            await rt.enqueue("training", payload)
        with pytest.raises(ValidationError):
            await rt.enqueue_many("training", [{"data_id": "ok", "algo": "mlp"}, payload])
        assert await rt.list_jobs() == []


@pytest.mark.parametrize(
    ("payload", "message"),
    [
        ({"when": object()}, "not JSON-serialisable"),
        ({"big": "x" * 2_000}, "over the 1000-byte limit"),
        ({"fn": print}, "not JSON-serialisable"),
    ],
)
async def test_unencodable_or_oversized_payloads_are_refused(
    db_path: Path, payload: Any, message: str
) -> None:
    async with Runtime(
        db_path, queues=[Plain()], workers=False, limits=Limits(payload_bytes=1000)
    ) as rt:
        with pytest.raises(ValidationError, match=message):
            await rt.enqueue("plain", payload)
        assert await rt.list_jobs() == []


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"priority": "high"}, "priority must be an int"),
        ({"priority": True}, "priority must be an int"),
        ({"priority": 2**40}, "priority must be from"),
        ({"created_by": 42}, "created_by must be a string"),
    ],
)
async def test_bad_options_are_refused(db_path: Path, options: Any, message: str) -> None:
    async with Runtime(db_path, queues=[Plain()], workers=False) as rt:
        with pytest.raises(ValidationError, match=message):
            await rt.enqueue("plain", {}, **options)
        assert await rt.list_jobs() == []


async def test_unknown_queue_and_ids(db_path: Path) -> None:
    async with Runtime(db_path, queues=[Plain(), Training()], workers=False) as rt:
        with pytest.raises(QueueNotFound, match="'nope'"):
            await rt.enqueue("nope", {})
        with pytest.raises(QueueNotFound):
            await rt.job_status("nope", "x")
        with pytest.raises(QueueNotFound):
            await rt.list_jobs(queue="nope")
        with pytest.raises(QueueNotFound):
            rt.events(queue="nope")
        for call in (
            rt.job_status("plain", "missing"),
            rt.request_job_cancel("plain", "missing"),
            rt.wait("missing", timeout=5),
            rt.history("missing"),
            rt.rerun("missing"),
        ):
            with pytest.raises(JobNotFound, match="missing"):
                await call
        job = await rt.enqueue("plain", {})
        # A real id, but not of the queue named: not found there.
        with pytest.raises(JobNotFound):
            await rt.job_status("training", job.id)
        with pytest.raises(JobNotFound):
            await rt.request_job_cancel("training", job.id)
        assert (await rt.job_status("plain", job.id)).status == "queued"


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"status": "sleeping"}, "unknown status"),
        ({"limit": 0}, "limit"),
        ({"limit": 10_000}, "limit"),
        ({"cursor": 5}, "cursor"),
    ],
)
async def test_bad_list_arguments(db_path: Path, kwargs: Any, message: str) -> None:
    async with Runtime(db_path, queues=[Plain()], workers=False) as rt:
        with pytest.raises(ValidationError, match=message):
            await rt.list_jobs(**kwargs)


def test_bad_queue_definitions_fail_at_definition_or_construction(db_path: Path) -> None:
    class NoName(Queue):
        async def handle_item(self, item: Any) -> None: ...

    with pytest.raises(ValidationError, match=r"ZeroWorkers\.worker_count must be from 1"):

        class ZeroWorkers(Queue):  # refused where it is written
            name = "zero"
            worker_count = 0

    for bad_name in ("", "a\x00b", "x" * 300, 5):
        with pytest.raises(ValidationError, match=r"Named\.name"):

            class Named(Queue):
                name = bad_name  # type: ignore[assignment]

    class NoHandler(Queue):
        name = "nohandler"

    with pytest.raises(ValidationError, match="name"):
        Runtime(db_path, queues=[NoName()])
    with pytest.raises(ValidationError, match="handle_item"):
        Runtime(db_path, queues=[NoHandler()])
    Runtime(db_path, queues=[NoHandler()], workers=False)  # enqueue-only: no handler needed
    with pytest.raises(ValidationError, match="two queues"):
        Runtime(db_path, queues=[Plain(), Plain()])
    with pytest.raises(ValidationError, match="lease_ttl"):
        Runtime(db_path, lease_ttl=-1)


def test_job_helpers_outside_a_handler_raise() -> None:
    for helper in (check_cancelled, current_job, report_progress):
        with pytest.raises(NotInJob):
            helper()
    with pytest.raises(NotInJob):
        fail_job("x")


def test_every_error_is_a_conveyor_error() -> None:
    import conveyor

    for name in conveyor.__all__:
        obj = getattr(conveyor, name)
        if isinstance(obj, type) and issubclass(obj, BaseException):
            assert issubclass(obj, ConveyorError), name
